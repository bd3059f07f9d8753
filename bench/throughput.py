"""Throughput and tail latency under concurrency: through the queen vs the worker directly.

A queen with its local hive spawns one `rbee-fake` worker that takes a fixed time per answer
(`--tokens` tokens at `--tps` tokens/s, one answer at a time, as a llama.cpp worker serves).
For each concurrency level (1, 8, 64, 256, 1,024 clients, each sending its next request as soon
as the last one is answered) the same closed loop runs for `--seconds` against the worker
directly and through the queen, alternating which goes first. The queen's `max_queue` is set to
1,024 so every level stays within the queue bound: no request may get 429 (issue 10.13's goal,
with queen throughput at 1,024 at least 80 % of its throughput at 64).

    .venv/bin/python bench/throughput.py [--quick] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, median, pct, table, tempdir, verdict
from queen_overhead import WORKER_TOKEN, spawn_fake_worker
from tests.support.daemons import rbee_env, start_queen

LEVELS = (1, 8, 64, 256, 1024)
MAX_QUEUE = 1024
TARGET_KEEP = 0.80  # queen throughput at 1,024 / at 64


async def closed_loop(url: str, clients: int, seconds: float, body: dict[str, object],
                      token: str | None = None) -> tuple[float, list[float], Counter[int]]:
    """`clients` loops for `seconds`: (answers/s, latencies in ms, count per status).

    Counted over the last two thirds of the run (a steady state: every client's first request
    queued at once at the start), requests still running at the end are waited for and not
    counted (at 1,024 clients one round of the loop takes seconds)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     headers=headers) as http:
        # open every connection first: connection set-up is not what is measured
        await asyncio.gather(*(http.get(url.rsplit("/v1/", 1)[0] + "/health")
                               for _ in range(min(clients, 64))))
        start = time.perf_counter()
        counted_from, end = start + seconds / 3, start + seconds
        answers = 0

        async def client() -> None:
            nonlocal answers
            while (started := time.perf_counter()) < end:
                async with http.post(url, json=body) as r:
                    await r.read()
                    done = time.perf_counter()
                    if counted_from <= done <= end:
                        statuses[r.status] += 1
                        if r.status == 200:
                            answers += 1
                            latencies.append((done - started) * 1000)

        await asyncio.gather(*(client() for _ in range(clients)))
    return answers / (end - counted_from), latencies, statuses


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--tps", type=float, default=2000.0, help="fake worker tokens/s")
    ap.add_argument("--tokens", type=int, default=4, help="tokens per answer")
    args = ap.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 6.0)
    header("throughput", args.quick)
    body = {"model": "rbee-fake", "max_tokens": args.tokens, "seed": 1,
            "messages": [{"role": "user", "content": "hi"}]}
    rows = []
    by_level: dict[int, float] = {}
    refused = 0
    with tempdir("rbee-bench-tp-") as root:
        env = rbee_env(root, RBEE_QUEEN_MAX_QUEUE=str(MAX_QUEUE),
                       RBEE_QUEEN_WORKER_TOKEN=WORKER_TOKEN,
                       RBEE_WORKER_FAKE_TOKENS_PER_SECOND=str(args.tps))
        queen = start_queen(env)
        try:
            worker_url = spawn_fake_worker(queen)
            targets = {"direct": (f"{worker_url}/v1/chat/completions", WORKER_TOKEN),
                       "queen": (f"{queen.url}/v1/chat/completions", None)}
            for i, clients in enumerate(LEVELS):
                order = ("direct", "queen") if i % 2 == 0 else ("queen", "direct")
                got = {}
                for side in order:
                    url, token = targets[side]
                    got[side] = asyncio.run(closed_loop(url, clients, seconds, body, token))
                rps_d, lat_d, _ = got["direct"]
                rps_q, lat_q, st_q = got["queen"]
                by_level[clients] = rps_q
                refused += st_q.get(429, 0)
                other = sum(n for s, n in st_q.items() if s not in (200, 429))
                rows.append((clients, rps_d, rps_q, f"{100 * rps_q / rps_d:.0f} %",
                             median(lat_d), pct(lat_d, 99), median(lat_q), pct(lat_q, 99),
                             st_q.get(429, 0), other))
        finally:
            queen.stop()
    print(table(f"closed loop, {seconds:g} s per level and side, one 1-slot fake worker "
                f"({args.tokens} tokens at {args.tps:g} tok/s), queen max_queue {MAX_QUEUE}",
                ("clients", "direct req/s", "queen req/s", "queen/direct", "direct p50 ms",
                 "direct p99 ms", "queen p50 ms", "queen p99 ms", "queen 429", "queen other"),
                rows))
    keep = by_level[1024] / by_level[64]
    print(f"queen throughput at 1,024 / at 64: {100 * keep:.0f} % (target ≥ "
          f"{100 * TARGET_KEEP:.0f} %): {verdict(keep >= TARGET_KEEP)}")
    print(f"429 within the queue bound: {refused} (target 0): {verdict(refused == 0)}")


if __name__ == "__main__":
    main()
