"""Issue 10, points 2-4, against real processes: a queen started the way a user would (its
console script) from a folder holding a hostile `queue.py`, with an API token, a permissive
umask and an older, world-readable state dir. One worker is spawned by a real request."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rbee import __version__
from tests.support.daemons import Daemon, rbee_env, wait_queen

API_TOKEN = "api-s3cret-never-in-children"


@pytest.fixture(scope="module")
def queen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("isolation")
    cwd = root / "cwd"
    cwd.mkdir()
    # Shadows the standard library's `queue` for any process that puts its cwd on sys.path.
    (cwd / "queue.py").write_text(f"open({str(root / 'imported')!r}, 'w').close()\n")
    env = rbee_env(root, RBEE_QUEEN_API_TOKEN=API_TOKEN, RBEE_API_TOKEN=API_TOKEN)
    state = Path(env["RBEE_QUEEN_STATE_DIR"])
    (state / "logs").mkdir(parents=True)
    for folder in (state, state / "logs"):
        folder.chmod(0o755)
    (state / "logs" / "old.log").write_text("an older run's prompts\n")
    (state / "logs" / "old.log").chmod(0o644)
    log = root / "queen.out"
    with log.open("ab") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "queen-rbee")], cwd=cwd,
                                env=env, umask=0o022, stdout=out, stderr=subprocess.STDOUT)
    daemon = Daemon(proc, env["RBEE_QUEEN_URL"], env, log)
    try:
        wait_queen(daemon.url, proc)
        r = httpx.post(f"{daemon.url}/v1/chat/completions", timeout=60,
                       headers={"Authorization": f"Bearer {API_TOKEN}"},
                       json={"model": "rbee-fake", "max_tokens": 3,
                             "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
        yield daemon
    finally:
        daemon.stop()
        assert not daemon.leftovers()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_hive_home_and_logs_are_owner_only(queen: Daemon) -> None:
    state = Path(queen.env["RBEE_QUEEN_STATE_DIR"])
    home = Path(queen.env["RBEE_QUEEN_HIVE_HOME"])
    assert {str(p): mode(p) for p in (state, state / "logs", home, home / "logs")} == {
        str(p): 0o700 for p in (state, state / "logs", home, home / "logs")}
    files = [state / "queen.pid", state / "logs" / "hive-localhost.log",
             state / "logs" / "old.log", *(home / "logs").glob("*.log"),
             *state.glob("queen.db*")]
    assert state / "queen.db" in files and len(list((home / "logs").glob("*.log"))) == 1
    assert {str(p): mode(p) for p in files} == {str(p): 0o600 for p in files}


def test_children_do_not_import_from_the_queens_working_directory(queen: Daemon) -> None:
    # The fixture's request was answered (by a worker the local hive spawned), and no
    # process imported the `queue.py` in the folder the queen was started from.
    names = {" ".join(p.cmdline()) for p in queen.descendants()}
    assert any("rbee.hive" in n for n in names) and any("rbee.worker" in n for n in names)
    assert not (Path(queen.env["RBEE_QUEEN_STATE_DIR"]).parent / "imported").exists()


def test_children_get_their_own_credential_and_no_other(queen: Daemon) -> None:
    environs = {" ".join(p.cmdline()): Path(f"/proc/{p.pid}/environ").read_bytes()
                for p in queen.descendants()}
    hive = next(v for k, v in environs.items() if "rbee.hive" in k).split(b"\0")
    worker = next(v for k, v in environs.items() if "rbee.worker" in k).split(b"\0")
    assert not [v for v in environs.values() if API_TOKEN.encode() in v]
    assert {e.split(b"=")[0] for e in hive if b"TOKEN=" in e} == {
        b"RBEE_HIVE_TOKEN", b"RBEE_HIVE_WORKER_TOKEN"}
    assert {e.split(b"=")[0] for e in worker if b"TOKEN=" in e} == {b"RBEE_WORKER_TOKEN"}


def test_telemetry_does_not_tell_which_hives_exist(queen: Daemon) -> None:
    def report(hive_id: str) -> httpx.Response:
        body = {"hive_id": hive_id, "url": "http://127.0.0.1:1", "version": __version__,
                "pid": 1, "devices": [], "workers": []}
        return httpx.post(f"{queen.url}/v1/hives/telemetry", json=body, timeout=10,
                          headers={"Authorization": "Bearer wrong"})

    known, unknown = report("localhost"), report("no-such-hive")
    assert known.status_code == unknown.status_code == 401
    assert known.json() == unknown.json()
