"""A stand-in Hugging Face hub on a free loopback port, serving files from a directory.

Enough of the hub for `huggingface_hub.hf_hub_download(..., endpoint=hub.url)`:

    HEAD|GET /{org}/{repo}/resolve/{revision}/{path}
    GET /api/models/{org}/{repo}/revision/{revision}, …/tree/{revision}   (what
        snapshot_download reads to list a whole repository)

`root/org/repo/path` is the file. Answers carry what the client reads (`X-Repo-Commit`,
`ETag`, `Content-Length`, `X-Linked-Etag`, `X-Linked-Size` as the hub sends for LFS files),
GETs honour `Range: bytes=N-[M]` (a resumed download), and misses are 404 with the hub's
`X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`). Every request is
recorded so tests can tell a download from a cache hit.

    with StandInHub(root) as hub:
        hf_hub_download("tiny-org/tiny-llama", "tiny.gguf", endpoint=hub.url, cache_dir=...)
        assert hub.count("GET", "tiny-org/tiny-llama", "tiny.gguf") == 1
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

# Where tests/conftest.py's `hub_root` puts the tiny GGUF.
TINY_REPO, TINY_FILE = "tiny-org/tiny-llama", "tiny.gguf"
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_PIECE = 64 * 1024


@dataclass(frozen=True)
class HubRequest:
    method: str
    repo: str
    revision: str
    filename: str
    range: str | None
    status: int


def commit_of(repo: str) -> str:
    """The (fake) 40-hex commit every revision of `repo` resolves to."""
    return hashlib.sha1(repo.encode()).hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class StandInHub:
    """Serve `root` as a hub. `chunk_delay` seconds pass between 64 KiB pieces of a body
    (a slow link, so a download is observably in progress). `answer_as_hub=False` makes it
    answer 200 without the hub's headers, like a proxy or a wrong HF_ENDPOINT would."""

    def __init__(self, root: Path, *, chunk_delay: float = 0.0) -> None:
        self.root = Path(root)
        self.chunk_delay = chunk_delay
        self.answer_as_hub = True
        self.requests: list[HubRequest] = []
        self._lock = threading.Lock()
        self._etags: dict[Path, tuple[float, int, str]] = {}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.url = ""

    # -- what tests read ---------------------------------------------------------------

    def count(self, method: str, repo: str | None = None, filename: str | None = None,
              status: int | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests
                       if r.method == method and repo in (None, r.repo)
                       and filename in (None, r.filename) and status in (None, r.status))

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> StandInHub:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._sock = sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="off", ws="none",
                                loop="asyncio", http="h11", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="stand-in-hub", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("stand-in hub did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> StandInHub:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- the app -----------------------------------------------------------------------

    def app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        app.add_api_route("/{org}/{name}/resolve/{revision}/{filename:path}", self._resolve,
                          methods=["GET", "HEAD"])
        app.add_api_route("/api/models/{org}/{name}/revision/{revision}", self._info,
                          methods=["GET"])
        app.add_api_route("/api/models/{org}/{name}/tree/{revision}", self._tree,
                          methods=["GET"])
        return app

    async def _tree(self, org: str, name: str, revision: str) -> Response:
        """Every file of a repository (`recursive=true`), as `snapshot_download` lists it."""
        repo_dir = self.root / org / name
        if not repo_dir.is_dir():
            return _error(404, "RepoNotFound", "Repository not found")
        if revision not in ("main", commit_of(f"{org}/{name}")):
            return _error(404, "RevisionNotFound", "Invalid rev id: " + revision)
        files = sorted(p for p in repo_dir.rglob("*") if p.is_file())
        return JSONResponse([{"type": "file", "path": str(p.relative_to(repo_dir)),
                              "size": p.stat().st_size, "oid": self._etag(p)} for p in files])

    async def _info(self, org: str, name: str, revision: str) -> Response:
        """A repository's file list, as `snapshot_download` asks for it (a whole diffusers
        pipeline is a repository, not one file)."""
        repo_dir = self.root / org / name
        if not repo_dir.is_dir():
            return _error(404, "RepoNotFound", "Repository not found")
        if revision not in ("main", commit_of(f"{org}/{name}")):
            return _error(404, "RevisionNotFound", "Invalid rev id: " + revision)
        files = sorted(str(p.relative_to(repo_dir)) for p in repo_dir.rglob("*") if p.is_file())
        return JSONResponse({"id": f"{org}/{name}", "sha": commit_of(f"{org}/{name}"),
                             "siblings": [{"rfilename": f} for f in files]})

    def _etag(self, path: Path) -> str:
        stat = path.stat()
        with self._lock:
            cached = self._etags.get(path)
            if cached is not None and cached[:2] == (stat.st_mtime, stat.st_size):
                return cached[2]
        etag = sha256_of(path)
        with self._lock:
            self._etags[path] = (stat.st_mtime, stat.st_size, etag)
        return etag

    async def _resolve(self, org: str, name: str, revision: str, filename: str,
                       request: Request) -> Response:
        repo = f"{org}/{name}"
        response = self._answer(request, repo, revision, filename)
        with self._lock:
            self.requests.append(HubRequest(request.method, repo, revision, filename,
                                            request.headers.get("range"), response.status_code))
        return response

    def _answer(self, request: Request, repo: str, revision: str, filename: str) -> Response:
        repo_dir = self.root / repo
        if not self.answer_as_hub:
            return Response(b"<html>not a hub</html>", media_type="text/html")
        if not repo_dir.is_dir():
            return _error(404, "RepoNotFound", "Repository not found")
        commit = commit_of(repo)
        if revision not in ("main", commit):
            return _error(404, "RevisionNotFound", "Invalid rev id: " + revision)
        path = (repo_dir / filename).resolve()
        if not path.is_file() or repo_dir.resolve() not in path.parents:
            return _error(404, "EntryNotFound", "Entry not found", commit=commit)
        size = path.stat().st_size
        etag = self._etag(path)
        headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"', "X-Linked-Etag": f'"{etag}"',
                   "X-Linked-Size": str(size), "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        start, end = 0, size - 1
        status = 200
        wanted = request.headers.get("range")
        if wanted is not None:
            m = _RANGE.match(wanted.strip())
            if m is None or int(m.group(1)) >= size:
                return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        return StreamingResponse(self._body(path, start, end), status_code=status,
                                 headers=headers)

    async def _body(self, path: Path, start: int, end: int) -> AsyncIterator[bytes]:
        with path.open("rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0:
                piece = f.read(min(_PIECE, left))
                if not piece:
                    return
                left -= len(piece)
                yield piece
                if self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)


def _error(status: int, code: str, message: str, commit: str | None = None) -> Response:
    headers = {"X-Error-Code": code, "X-Error-Message": message}
    if commit is not None:
        headers["X-Repo-Commit"] = commit
    return Response(f'{{"error": "{message}"}}'.encode(), status_code=status, headers=headers,
                    media_type="application/json")
