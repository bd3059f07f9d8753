"""Latency the queen adds over calling the worker directly (fake engine, no delay).

One queen per worker transport (RBEE_QUEEN_WORKER_TRANSPORT: httptools, the default, and
aiohttp), each with its local hive and an `rbee-fake` worker. Then N non-streamed chat
completions (max_tokens=1) go straight to each worker and N through its queen on persistent
keep-alive connections: direct and via-queen interleaved request by request (the order flips
every pair), the queens taking turns every BLOCK pairs, so machine noise hits every side
alike and the transports are compared in one run.

Targets: added p50 <= 0.5 ms, added p99 <= 2 ms (for the queen's default transport).

    .venv/bin/python bench/queen_overhead.py [--quick] [-n 2000] [--transport httptools]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import json
import sys
import time
import timeit
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, median, pct, stop_queen, table, tempdir, verdict
from tests.support.daemons import Daemon, rbee_env, start_queen

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Scope

    from rbee.queen.registry import Registry
    from rbee.queen.transport import Upstream

WORKER_TOKEN = "bench-worker-token"
HIVE_TOKEN = "bench-hive-token"
TARGET_P50_MS = 0.5
TARGET_P99_MS = 2.0
SLOW_MS = 20.0  # a response this slow on loopback is a stall (e.g. Nagle + delayed ACK)
TRANSPORTS = ("httptools", "aiohttp")  # QueenSettings.worker_transport; the default first
BLOCK = 100  # pairs one queen gets before the other's turn
BODY = json.dumps({"model": "rbee-fake", "max_tokens": 1, "seed": 1,
                   "messages": [{"role": "user", "content": "hi"}]}).encode()


class Conn:
    """One keep-alive HTTP/1.1 connection; `post`/`get` return elapsed seconds."""

    def __init__(self, base: str, token: str | None = None) -> None:
        u = urlsplit(base)
        self._conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=10)
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def _do(self, method: str, path: str, body: bytes | None) -> float:
        t0 = time.perf_counter()
        self._conn.request(method, path, body=body, headers=self._headers)
        r = self._conn.getresponse()
        data = r.read()
        t1 = time.perf_counter()
        if r.status != 200:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
        return t1 - t0

    def post(self, path: str, body: bytes) -> float:
        return self._do("POST", path, body)

    def get(self, path: str) -> float:
        return self._do("GET", path, None)

    def close(self) -> None:
        self._conn.close()


def spawn_fake_worker(queen: Daemon) -> str:
    """Spawn an rbee-fake worker with the job API; return its URL (from GET /v1/workers)."""
    from rbee.client import QueenClient

    client = QueenClient(queen.url)
    try:
        result = client.run("worker_spawn", model="rbee-fake")
        worker_id = result["worker"]["id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            workers = client._http.get("/v1/workers").json()
            for w in workers:
                if w["id"] == worker_id and w["state"] == "ready":
                    return str(w["url"])
            time.sleep(0.05)
    finally:
        client.close()
    raise TimeoutError("fake worker did not show up in /v1/workers")


def in_blocks(sides: Sequence[Sequence[Callable[[], float]]], n: int
              ) -> list[list[list[float]]]:
    """`interleave` n rounds of each side's calls, the sides taking turns every BLOCK rounds.

    Turns rather than one request each: rotating request by request over two queens and two
    workers (on two cores) measured ~0.1 ms more added latency on every side alike than one
    queen alone (each process idles through the others' requests: colder caches, presumably);
    that time is not the queen's. Turns of BLOCK pairs measure what one queen alone does.
    """
    out: list[list[list[float]]] = [[[] for _ in calls] for calls in sides]
    for block in range(0, n, BLOCK):
        for i in range(len(sides)):
            k = (block // BLOCK + i) % len(sides)
            for mine, times in zip(out[k], interleave(sides[k], min(BLOCK, n - block)),
                                   strict=True):
                mine += times
    return out


def interleave(fns: Sequence[Callable[[], float]], n: int) -> list[list[float]]:
    """n calls of each, one round at a time, rotating which goes first; times in ms."""
    out: list[list[float]] = [[] for _ in fns]
    gc.disable()
    try:
        for i in range(n):
            for j in range(len(fns)):
                k = (i + j) % len(fns)
                out[k].append(fns[k]() * 1e3)
            if i % 500 == 499:
                gc.collect()
    finally:
        gc.enable()
    return out


def row(name: str, xs: list[float]) -> list[object]:
    slow = 100.0 * sum(1 for x in xs if x > SLOW_MS) / len(xs)
    return [name, median(xs), pct(xs, 90), pct(xs, 99), min(xs), f"{slow:.1f}"]


def microbench(fn: Callable[[], object], number: int = 2000) -> str:
    """Best-of-5 mean time of fn in ms, 3 decimals (one step of the queen's hot path)."""
    return f"{min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e3:.3f}"


def in_process_costs(worker_url: str, n: int) -> list[list[object]]:
    """What the queen's hot path is made of, measured in this process."""
    from rbee.api.openai import ChatCompletionRequest
    from rbee.core.clock import SystemClock
    from rbee.models.catalog import parse_ref
    from rbee.queen.registry import Registry
    from rbee.scheduler.routing import RouteRequest, route
    from rbee.web.body import parse_model

    registry = Registry(SystemClock(), 2.0)
    _one_ready_worker(registry, worker_url)
    rows: list[list[object]] = [
        ["parse + validate body (pydantic, in process)",
         microbench(lambda: parse_model(BODY, ChatCompletionRequest, "application/json"))],
        ["parse_ref(model)", microbench(lambda: parse_ref("rbee-fake"))],
        ["registry snapshot + route",
         microbench(lambda: route(registry.snapshot(), RouteRequest(model="rbee-fake")))],
        ["the whole queen app in process, worker answering at once (p50; ASGI call, no "
         "network)", f"{_app_in_process(3 * n):.3f}"],
    ]
    rows += [[name, ms] for name, ms in _upstream_hops(worker_url, n)]
    return rows


def _one_ready_worker(registry: Registry, worker_url: str) -> None:
    from rbee.api.cluster import Device, HiveTelemetry, WorkerInfo
    from rbee.core.states import WorkerState

    w = WorkerInfo(id="wrk-1", hive_id="localhost", model="rbee-fake", model_path="",
                   device="cpu", engine="fake", url=worker_url, state=WorkerState.READY)
    registry.report(HiveTelemetry(
        hive_id="localhost", url="http://127.0.0.1:1", version="0", pid=1,
        devices=[Device(id="cpu", kind="cpu", name="cpu", memory_total=1, memory_free=1)],
        workers=[w]))


class _Instant:
    """A WorkerTransport whose worker answers at once: what is left is the queen app."""

    async def open(self, url: str, body: bytes, headers: Mapping[str, str]) -> Upstream:
        raise NotImplementedError("non-streamed requests only")

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]
                   ) -> tuple[int, bytes]:
        return 200, b'{"object":"chat.completion","choices":[]}'

    async def probe(self, url: str) -> bool:
        return True

    async def close(self) -> None:
        return None


def _app_in_process(n: int) -> float:
    """p50 of a non-streamed request through the whole queen ASGI app (browser guard, token
    check, body limit, route, admission, routing, relay) in ms; no sockets, no lifespan."""
    from fastapi import FastAPI

    from rbee.queen.app import create_app
    from rbee.queen.services import build_services
    from rbee.queen.settings import QueenSettings

    with tempdir("rbee-bench-app-") as tmp:
        settings = QueenSettings(state_dir=tmp, local_hive=False)
        services = build_services(settings, transport=_Instant())
        _one_ready_worker(services.registry, "http://127.0.0.1:1")
        app = create_app(settings, services)
        assert isinstance(app, FastAPI)
        app.state.services = services  # what the lifespan would do (it also starts loops)
        scope: Scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
                 "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"127.0.0.1:7833"),
                             (b"content-type", b"application/json"),
                             (b"content-length", str(len(BODY)).encode())],
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 7833)}
        try:
            with asyncio.Runner(loop_factory=_new_loop) as runner:
                return median(runner.run(_asgi_requests(app, scope, n))[100:])
        finally:
            services.db.close()


async def _asgi_requests(app: ASGIApp, scope: Scope, n: int) -> list[float]:
    out: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        status = await _asgi_request(app, scope)
        out.append((time.perf_counter() - t0) * 1e3)
        if status != 200:
            raise RuntimeError(f"queen app answered {status}")
    return out


async def _asgi_request(app: ASGIApp, scope: Scope) -> object:
    """One request, its body at once, a client that never hangs up; the status sent."""
    pending: list[Message] = [{"type": "http.request", "body": BODY, "more_body": False}]
    sent: list[object] = []

    async def receive() -> Message:
        if pending:
            return pending.pop()
        await asyncio.Event().wait()  # the disconnect watcher waits here until cancelled
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message.get("status"))

    await app(dict(scope), receive, send)
    return sent[0]


def _new_loop() -> asyncio.AbstractEventLoop:
    """The queen's event loop: uvloop when it imports (rbee.web.serve), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _upstream_hops(worker_url: str, n: int) -> list[tuple[str, float]]:
    """The queen's upstream hop, several ways, on the loop the queen runs (uvloop)."""
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        relay = runner.run(_transport_hops(worker_url, n))
        aio = runner.run(_aiohttp_hop(worker_url, n))
        raw = runner.run(_raw_hop(worker_url, n))
    ours = [(f"worker round trip via the queen's {name} transport + its deadline scope, as "
             "the Relay (p50; interleaved)", median(xs)) for name, xs in relay.items()]
    return [*ours,
            ("worker round trip via a bare aiohttp.ClientSession, no deadline (p50)",
             median(aio)),
            ("worker round trip via bare asyncio streams, same loop (p50; floor)", median(raw))]


async def _transport_hops(worker_url: str, n: int) -> dict[str, list[float]]:
    """The upstream hop exactly as `Relay` makes it for a non-streamed request: the call
    tracked for liveness, under its deadline scope, through each of the queen's transports,
    one request each in turn (the order rotates), so both see the same noise."""
    from rbee.queen.calls import Calls
    from rbee.queen.transport import AiohttpTransport, Deadlines, WorkerTransport
    from rbee.queen.transport_httptools import HttptoolsTransport

    transports: dict[str, WorkerTransport] = {"httptools": HttptoolsTransport(Deadlines()),
                                              "aiohttp": AiohttpTransport(Deadlines())}
    names = list(transports)
    calls = Calls()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {WORKER_TOKEN}"}
    url = worker_url + "/v1/chat/completions"
    loop = asyncio.get_running_loop()
    out: dict[str, list[float]] = {name: [] for name in names}
    try:
        for i in range(n + 50):
            for j in range(len(names)):
                name = names[(i + j) % len(names)]
                t0 = time.perf_counter()
                call = calls.add("w", url)
                async with call.waiting(loop.time() + 600.0):
                    await transports[name].post(url, BODY, headers)
                calls.untrack(call)
                if i >= 50:
                    out[name].append((time.perf_counter() - t0) * 1e3)
    finally:
        for transport in transports.values():
            await transport.close()
    return out


async def _aiohttp_hop(worker_url: str, n: int) -> list[float]:
    """The upstream hop through a bare keep-alive aiohttp.ClientSession (AiohttpTransport's
    connector settings, no deadline scope): POST the raw body, read it, release the
    connection back to the pool; what AiohttpTransport costs without rbee around it."""
    import aiohttp

    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {WORKER_TOKEN}"}
    connector = aiohttp.TCPConnector(limit=1024, limit_per_host=256, keepalive_timeout=30.0)
    timeout = aiohttp.ClientTimeout(total=None, connect=10.0, sock_connect=10.0)
    out: list[float] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     auto_decompress=False) as session:
        url = worker_url + "/v1/chat/completions"
        for i in range(n + 50):
            t0 = time.perf_counter()
            r = await session.post(url, data=BODY, headers=headers)
            _ = await r.read()
            r.release()
            if i >= 50:
                out.append((time.perf_counter() - t0) * 1e3)
    return out


async def _raw_hop(worker_url: str, n: int) -> list[float]:
    """The same upstream request over a bare asyncio keep-alive stream: the hop's floor."""
    u = urlsplit(worker_url)
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {u.netloc}\r\n"
            f"Authorization: Bearer {WORKER_TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n").encode()
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    out: list[float] = []
    try:
        for i in range(n + 50):
            t0 = time.perf_counter()
            writer.write(head + BODY)
            response_head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in response_head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if i >= 50:
                out.append((time.perf_counter() - t0) * 1e3)
    finally:
        writer.close()
    return out


@dataclass
class Side:
    """One queen (with one worker transport) and its worker, each on a kept connection."""

    transport: str
    queen: Daemon
    worker_url: str
    direct: Conn
    via: Conn

    def calls(self) -> list[Callable[[], float]]:
        return [lambda: self.direct.post("/v1/chat/completions", BODY),
                lambda: self.via.post("/v1/chat/completions", BODY)]


def start_side(root: Path, transport: str) -> Side:
    env = rbee_env(root / transport, RBEE_QUEEN_WORKER_TOKEN=WORKER_TOKEN,
                   RBEE_QUEEN_HIVE_TOKEN=HIVE_TOKEN, RBEE_QUEEN_WORKER_TRANSPORT=transport)
    queen = start_queen(env)
    try:
        worker_url = spawn_fake_worker(queen)
    except BaseException:
        stop_queen(queen)
        raise
    return Side(transport, queen, worker_url, Conn(worker_url, WORKER_TOKEN), Conn(queen.url))


def run(n: int, warmup: int, transports: Sequence[str]) -> int:
    sides: list[Side] = []
    with tempdir("rbee-bench-qo-") as tmp:
        try:
            for transport in transports:
                sides.append(start_side(tmp, transport))
            calls = [side.calls() for side in sides]
            in_blocks(calls, warmup)
            times = in_blocks(calls, n)
            first = sides[0]
            hx, hq = interleave([lambda: first.direct.get("/health"),
                                 lambda: first.via.get("/health")], min(200, n))
            parts = in_process_costs(first.worker_url, min(200, n))
        finally:
            for side in sides:
                side.direct.close()
                side.via.close()
                stop_queen(side.queen)
    results = {side.transport: (xs, ys) for side, (xs, ys) in zip(sides, times, strict=True)}
    report(n, results, hx, hq, parts)
    return 0


def report(n: int, results: dict[str, tuple[list[float], list[float]]], hx: list[float],
           hq: list[float], parts: list[list[object]]) -> None:
    rows: list[list[object]] = []
    added: dict[str, tuple[float, float, float]] = {}  # p50, p99, paired difference p50
    for transport, (xs, ys) in results.items():
        diffs = [y - x for x, y in zip(xs, ys, strict=True)]
        added[transport] = (median(ys) - median(xs), pct(ys, 99) - pct(xs, 99), median(diffs))
        rows += [row(f"{transport}: direct to worker", xs),
                 row(f"{transport}: via queen", ys),
                 [f"**{transport}: added by queen**", added[transport][0],
                  pct(ys, 90) - pct(xs, 90), added[transport][1], min(ys) - min(xs), ""],
                 [f"{transport}: paired difference (queen - direct)", median(diffs),
                  pct(diffs, 90), pct(diffs, 99), min(diffs), ""]]
    print(table(f"Non-streamed chat completion, rbee-fake, max_tokens=1, {n} interleaved "
                f"pairs per queen, keep-alive, one queen per worker transport, turns of {BLOCK} "
                "pairs (ms)",
                ["path", "p50", "p90", "p99", "min", f"% > {SLOW_MS:.0f} ms"], rows))
    print(table("Targets", ["transport", "metric", "measured (ms)", "target (ms)", "result"], [
        row for transport, (add50, add99, _) in added.items() for row in (
            [transport, "added p50 (p50 via queen - p50 direct)", add50,
             f"<= {TARGET_P50_MS}", verdict(add50 <= TARGET_P50_MS)],
            [transport, "added p99 (p99 via queen - p99 direct)", add99,
             f"<= {TARGET_P99_MS}", verdict(add99 <= TARGET_P99_MS)])]))
    if len(added) > 1:
        base, *others = added
        print(table(f"Side by side (same run): each transport against {base}",
                    ["transport", "added p50", "paired difference p50", "added p99",
                     f"added p50 / {base}'s"], [
                        [t, added[t][0], added[t][2], added[t][1],
                         f"{added[t][0] / added[base][0]:.2f}"]
                        for t in [base, *others]]))
    print(table("Breakdown (estimates; HTTP rows are p50 round trips from this client)",
                ["component", "ms"], [
                    ["GET /health on worker (HTTP round trip, no work)", median(hx)],
                    ["GET /health on queen (HTTP round trip, no work)", median(hq)],
                    ["POST chat completion on worker (= direct p50)",
                     median(next(iter(results.values()))[0])],
                    *[[name, ms] for name, ms in parts],
                ]))
    if median(hx) > SLOW_MS:
        print(f"NOTE: the hive-spawned worker answers even GET /health in {median(hx):.0f} ms "
              f"(the queen: {median(hq):.1f} ms).\nThat looks like Nagle's algorithm meeting "
              "delayed ACKs again: the worker's inherited socket (--fd)\nmust reach uvicorn as "
              "a TCP socket with TCP_NODELAY (rbee.web.serve, fixed in 81c5cec); a response\n"
              "written as headers + body otherwise waits ~40 ms for an ACK. The difference "
              "above is then noise.\n")
    print("The queen's added time is roughly: one more HTTP server pass (uvicorn/httptools "
          "on uvloop, with\nrbee's connection deadlines, then FastAPI's middleware: body "
          "limit, bearer check) + body\nparse/validate + route + one upstream hop through "
          "the Relay's transport under its deadline\n+ the disconnect watch around a "
          "non-streamed request, minus what the direct client's\nloopback round trip "
          "already counts.\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="300 pairs instead of 2000")
    ap.add_argument("-n", type=int, default=None, help="measured rounds (default 2000)")
    ap.add_argument("--transport", choices=TRANSPORTS, action="append",
                    help="the queen's worker transport(s) to measure (default: all, "
                         "interleaved)")
    args = ap.parse_args()
    n = args.n or (300 if args.quick else 2000)
    header("queen_overhead: latency the queen adds (fake engine)", args.quick)
    return run(n, warmup=min(200, n // 4), transports=args.transport or TRANSPORTS)


if __name__ == "__main__":
    sys.exit(main())
