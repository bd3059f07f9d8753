"""Throughput at concurrency 32 against a worker that serves 32 at once: queen vs direct.

A queen with its local hive; its workers inherit RBEE_WORKER_SLOTS=32, so the one
`rbee-fake` worker (100 tokens/s per request, max_tokens 16: ~0.16 s an answer) serves 32
requests at once and advertises 32 slots. 32 closed-loop clients each send non-streamed
`/v1/completions` for a fixed time, alternately straight to the worker and through the
queen; throughput is answers per second over the round. The queen admits the sum of its
workers' slots, so it should pass on about what the worker serves alone (before, with one
admission slot per worker, it passed on 0.40-1.02x of it).

Target: via-queen answers/s >= 90% of direct.

    .venv/bin/python bench/batching.py [--quick] [--rounds 3] [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, median, stop_queen, table, tempdir, verdict
from tests.support.daemons import Daemon, rbee_env, start_queen

WORKER_TOKEN = "bench-worker-token"
SLOTS = 32
CONCURRENCY = 32
MAX_TOKENS = 16
TARGET_RATIO = 0.90
BODY = {"model": "rbee-fake", "prompt": "bees", "max_tokens": MAX_TOKENS}


async def closed_loop(url: str, headers: dict[str, str], seconds: float) -> tuple[float, int]:
    """(answers per second, errors) of CONCURRENCY clients asking back to back."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                 timeout=60) as http:
        answered = errors = 0
        end = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal answered, errors
            while time.perf_counter() < end:
                r = await http.post("/v1/completions", json=BODY)
                if r.status_code == 200:
                    answered += 1
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
        return answered / (time.perf_counter() - start), errors


def worker_url(queen: Daemon) -> tuple[str, int]:
    with httpx.Client(base_url=queen.url, timeout=60) as http:
        r = http.post("/v1/completions", json={**BODY, "max_tokens": 1})  # loads the worker
        r.raise_for_status()
        (worker,) = [w for w in http.get("/v1/workers").json() if w["state"] == "ready"]
    return str(worker["url"]), int(worker["slots"])


def run(rounds: int, seconds: float) -> int:
    direct: list[float] = []
    via: list[float] = []
    errors = 0
    with tempdir("rbee-bench-batch-") as tmp:
        env = rbee_env(tmp, RBEE_QUEEN_WORKER_TOKEN=WORKER_TOKEN,
                       RBEE_WORKER_SLOTS=str(SLOTS), RBEE_WORKER_FAKE_TOKENS_PER_SECOND="100")
        queen = start_queen(env)
        try:
            url, slots = worker_url(queen)
            wh = {"Authorization": f"Bearer {WORKER_TOKEN}"}
            asyncio.run(closed_loop(url, wh, 1.0))  # warm-up both paths
            asyncio.run(closed_loop(queen.url, {}, 1.0))
            for i in range(rounds):
                order = [("direct", url, wh), ("via", queen.url, {})]
                for name, target, headers in order if i % 2 == 0 else order[::-1]:
                    rate, failed = asyncio.run(closed_loop(target, headers, seconds))
                    (direct if name == "direct" else via).append(rate)
                    errors += failed
        finally:
            stop_queen(queen)
    ratio = median(via) / median(direct)
    print(table(f"Non-streamed /v1/completions, rbee-fake (100 tok/s, max_tokens "
                f"{MAX_TOKENS}), worker advertising {slots} slots, {CONCURRENCY} clients, "
                f"{rounds} alternating rounds of {seconds:g} s",
                ["path", "answers/s (median)", "min", "max"],
                [["direct to worker", median(direct), min(direct), max(direct)],
                 ["via queen", median(via), min(via), max(via)]]))
    print(table("Targets", ["metric", "measured", "target", "result"], [
        ["via-queen / direct, answers/s (ratio of medians)", f"{ratio:.2f}x",
         f">= {TARGET_RATIO:.2f}x", verdict(ratio >= TARGET_RATIO)],
        ["errors (non-200 answers)", errors, "0", verdict(errors == 0)],
    ]))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s per path")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None)
    args = ap.parse_args()
    header("batching: queen vs direct at concurrency 32, 32-slot worker", args.quick)
    return run(args.rounds or (1 if args.quick else 3), args.seconds or (2.0 if args.quick
                                                                          else 4.0))


if __name__ == "__main__":
    sys.exit(main())
