"""What metrics add to the queen's latency: the same queen with them off and on.

Two queens, each with its local hive and an `rbee-fake` worker, no API token: "off" runs
with RBEE_QUEEN_METRICS=false (no middleware, no hooks, no /metrics), "on" with the
defaults (every request counted, timed, its tokens read, its queue wait and routing
decision observed). N non-streamed chat completions (max_tokens=1) go straight to each
worker and through each queen, interleaved pair by pair, the queens taking turns every
BLOCK pairs (bench/queen_overhead.py's method), so machine noise hits both alike. "on" is
scraped once a second meanwhile, as Prometheus would.

Target (issue 14): metrics add at most 0.05 ms to the queen's p50.

    .venv/bin/python bench/metrics.py [--quick] [-n 2000]
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, table, tempdir
from queen_overhead import in_blocks
from quotas import Side, fake_side, print_off_on

TARGET_MS = 0.05


def start_side(root: Path, name: str) -> Side:
    return fake_side(root, name, {"RBEE_QUEEN_METRICS": "false"} if name == "off" else {})


def scraper(url: str, stop: threading.Event) -> None:
    """Prometheus's share: one scrape a second while the requests run."""
    with httpx.Client(timeout=10) as client:
        while not stop.wait(1.0):
            client.get(f"{url}/metrics").raise_for_status()


def run(n: int, warmup: int) -> int:
    sides: list[Side] = []
    stop = threading.Event()
    with tempdir("rbee-bench-metrics-") as tmp:
        try:
            for name in ("off", "on"):
                sides.append(start_side(tmp, name))
            calls = [side.calls() for side in sides]
            in_blocks(calls, warmup)
            scraping = threading.Thread(target=scraper, args=(sides[1].queen.url, stop))
            scraping.start()
            times = in_blocks(calls, n)
            stop.set()
            scraping.join()
        finally:
            stop.set()
            for side in sides:
                side.close()
    print_off_on(sides, times, n, "metrics", "Metrics", TARGET_MS)
    print(table("In process: the metric work of one request (µs, best of 3)", ["part", "µs"],
                in_process_costs()))
    return 0


def in_process_costs(number: int = 20_000) -> list[list[object]]:
    """What one non-streamed chat request records, measured alone (µs per request)."""
    import timeit

    from rbee.queen.metering import used_in
    from rbee.queen.metrics import QueenMetrics

    metrics = QueenMetrics()
    answer = (b'{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"a"},'
              b'"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":1,'
              b'"total_tokens":2}}')
    route, model = "/v1/chat/completions", "rbee-fake"

    def one() -> None:
        metrics.queue_waited(model, 0.0)
        metrics.decided("route", 2e-5)
        label = metrics.models(model)
        used = used_in(answer)
        assert used is not None
        metrics.used(label, used.prompt_tokens, used.completion_tokens)
        metrics.requests.get(route, label, "200").inc()
        metrics.duration.get(route, label).observe(0.0004)

    def us(fn: object) -> float:
        return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e6  # type: ignore

    return [["queue wait + decision + tokens + request count + duration", us(one)],
            ["one histogram observation (pre-bound child)",
             us(lambda: metrics.duration.get(route, model).observe(0.0004))]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="300 pairs instead of 2000")
    ap.add_argument("-n", type=int, default=None, help="measured rounds (default 2000)")
    args = ap.parse_args()
    n = args.n or (300 if args.quick else 2000)
    header("metrics: latency Prometheus metrics add to the queen (fake engine)", args.quick)
    return run(n, warmup=min(200, n // 4))


if __name__ == "__main__":
    raise SystemExit(main())
