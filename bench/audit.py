"""What the audit log costs: per request on the queen's hot path, per entry, and to verify.

1. The whole queen app in process (the `queen_overhead.py` setup: ASGI call, a worker that
   answers at once), audit on (the real AuditLog, its writer task running in the same loop
   and writing to SQLite on a thread) vs audit off (`record` does nothing), interleaved
   request by request so machine noise hits both alike.
2. `record()` on the caller's thread (what a request pays), and durable entries per second:
   the writer's batches vs one transaction per entry (what batching buys).
3. `verify` and the offline verifier: entries per second (7 years of entries must verify).

Target: audit adds <= 0.05 ms to a request's p50 (issue 13's goal: auth + quota + audit
together <= 0.3 ms).

    .venv/bin/python bench/audit.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, median, pct, table, tempdir, verdict
from queen_overhead import BODY, _asgi_request, _Instant, _new_loop, _one_ready_worker

from rbee.core.clock import SystemClock
from rbee.queen.audit import Actor, AuditLog, Inference
from rbee.storage.audit import AuditStore, Pending
from rbee.storage.db import connect

TARGET_MS = 0.05


class Silent(AuditLog):
    """Audit off: the same calls, nothing recorded."""

    def record(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        return None


def _app(tmp: Path, audit_on: bool) -> tuple[Any, Any]:
    from rbee.queen.app import create_app
    from rbee.queen.services import build_services
    from rbee.queen.settings import QueenSettings

    settings = QueenSettings(state_dir=tmp, local_hive=False)
    services = build_services(settings, transport=_Instant())
    if not audit_on:
        services.audit = Silent(AuditStore(services.db), SystemClock(), archive_dir=tmp)
    _one_ready_worker(services.registry, "http://127.0.0.1:1")
    app = create_app(settings, services)
    app.state.services = services  # type: ignore[attr-defined]
    return app, services


SCOPE: dict[str, Any] = {
    "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
    "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
    "query_string": b"", "root_path": "",
    "headers": [(b"host", b"127.0.0.1:7833"), (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY)).encode())],
    "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 7833)}


async def _interleaved(on: Any, off: Any, services: Any, n: int
                       ) -> tuple[list[float], list[float]]:
    writer = asyncio.create_task(services.audit.run())
    sides: tuple[list[float], list[float]] = ([], [])
    for i in range(n):
        order = (0, 1) if i % 2 else (1, 0)  # flip who goes first every pair
        for which in order:
            t0 = time.perf_counter()
            await _asgi_request((on, off)[which], SCOPE)
            sides[which].append((time.perf_counter() - t0) * 1e3)
    await services.audit.close(writer)
    return sides


def per_request(n: int) -> tuple[list[list[object]], float, int]:
    with tempdir("rbee-bench-audit-") as tmp:
        (tmp / "on").mkdir()
        (tmp / "off").mkdir()
        on, on_svc = _app(tmp / "on", True)
        off, off_svc = _app(tmp / "off", False)
        try:
            with asyncio.Runner(loop_factory=_new_loop) as runner:
                with_audit, without = runner.run(_interleaved(on, off, on_svc, n))
            recorded = on_svc.db.query_one("SELECT COUNT(*) FROM audit_log")[0]
        finally:
            on_svc.db.close()
            off_svc.db.close()
    skip = min(200, n // 5)  # warm-up
    with_audit, without = with_audit[skip:], without[skip:]
    added = median(with_audit) - median(without)
    rows: list[list[object]] = [
        ["audit off", median(without), pct(without, 99), "-"],
        ["audit on (recorded, written by the writer)", median(with_audit),
         pct(with_audit, 99), added]]
    return rows, added, recorded


def per_entry(n: int) -> list[list[object]]:
    facts = Inference(path="/v1/chat/completions", model="rbee-fake", outcome="ok",
                      started=0.0, ended=0.001, stream=False, status=200, worker_id="w1",
                      hive_id="localhost", usage={"prompt_tokens": 9, "completion_tokens": 1})
    alice = Actor(tenant_id="acme", user_id="alice", key_fingerprint="sha256:abc")
    with tempdir("rbee-bench-audit-") as tmp:
        log = AuditLog(AuditStore(connect(tmp / "a.db")), SystemClock(), archive_dir=tmp)
        t0 = time.perf_counter()
        for _ in range(n):
            log.inference(facts, actor=alice)
        record_us = (time.perf_counter() - t0) / n * 1e6
        t0 = time.perf_counter()
        log.flush_now()
        batched = n / (time.perf_counter() - t0)
        store = AuditStore(connect(tmp / "b.db"))
        one = Pending(at=time.time(), action="inference", outcome="ok", tenant="acme",
                      person="alice", personal={"user_id": "alice"}, details=facts.details())
        m = max(200, n // 20)
        t0 = time.perf_counter()
        for _ in range(m):
            store.append([one])
        single = m / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        verdict_ = asyncio.run(log.verify())
        verify_rate = verdict_.entries / (time.perf_counter() - t0)
        lines: list[str] = []

        async def export() -> None:
            lines.extend([chunk async for chunk in log.export()])

        asyncio.run(export())
        from rbee.core.audit_chain import verify_export

        text = "".join(lines).splitlines(keepends=True)
        t0 = time.perf_counter()
        offline = verify_export(text)
        offline_rate = offline.entries / (time.perf_counter() - t0)
        assert verdict_.ok and offline.ok
    return [["record() on the caller's thread", f"{record_us:.2f} µs/entry", "-"],
            ["durable, one transaction per entry", f"{single:,.0f} entries/s", "1.0x"],
            ["durable, the writer's batches", f"{batched:,.0f} entries/s",
             f"{batched / single:.0f}x"],
            ["verify (queen, SQLite)", f"{verify_rate:,.0f} entries/s", "-"],
            ["verify_export (offline, JSON lines)", f"{offline_rate:,.0f} entries/s", "-"]]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    header("audit log cost", args.quick)
    n = 1000 if args.quick else 4000
    rows, added, recorded = per_request(n)
    print(table(f"non-streamed chat completion through the queen app, {n} interleaved pairs "
                "(ms)", ("side", "p50", "p99", "added p50"), rows))
    print(f"entries recorded by the audit-on queen: {recorded}\n")
    print(table("per entry", ("what", "rate", "vs unbatched"),
                per_entry(20_000 if args.quick else 100_000)))
    ok = added <= TARGET_MS
    print(f"added p50 {added:.3f} ms (target <= {TARGET_MS} ms): {verdict(ok)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
