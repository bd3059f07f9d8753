"""What auth + quotas add to the queen's latency: the same queen with them off and on.

Two queens, each with its local hive and an `rbee-fake` worker: "off" has no API token (a
loopback queen: no key check, no quotas, no usage); "on" has a bootstrap token, and requests
carry a tenant's key that has every limit set (requests/min, tokens/min, tokens/day,
concurrency, a monthly budget) on the tenant and on the key, with prices for the model, so
each request is authenticated, books its worst case on two meters, is settled from the
worker's usage and recorded for the usage table. N non-streamed chat completions
(max_tokens=1) go straight to each worker and through each queen, interleaved pair by pair,
the queens taking turns every BLOCK pairs (bench/queen_overhead.py's method), so machine
noise hits both alike.

Target (issue 13): the queen's added p50 with auth + quotas on is at most 0.3 ms more than
with them off.

    .venv/bin/python bench/quotas.py [--quick] [-n 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, median, pct, stop_queen, table, tempdir, verdict
from queen_overhead import BODY, HIVE_TOKEN, WORKER_TOKEN, Conn, in_blocks, row
from tests.support.daemons import Daemon, rbee_env, start_queen

TARGET_MS = 0.3
BOOT = "bench-bootstrap-token"
HIGH = {"requests_per_minute": 10**9, "tokens_per_minute": 10**12, "tokens_per_day": 10**13,
        "concurrent_requests": 10**6, "budget": 1e15}


@dataclass
class Side:
    name: str
    queen: Daemon
    direct: Conn
    via: Conn

    def calls(self) -> list:  # type: ignore[type-arg]
        return [lambda: self.direct.post("/v1/chat/completions", BODY),
                lambda: self.via.post("/v1/chat/completions", BODY)]

    def close(self) -> None:
        self.direct.close()
        self.via.close()
        stop_queen(self.queen)


def fake_side(root: Path, name: str, env: dict[str, str], token: str | None = None,
              key: Callable[[Daemon], str | None] = lambda _q: None) -> Side:
    """A queen (its local hive, an `rbee-fake` worker) started with `env` added: the worker
    called directly beside the queen called with `key(queen)` (None: no key)."""
    full = rbee_env(root / name, RBEE_QUEEN_WORKER_TOKEN=WORKER_TOKEN,
                    RBEE_QUEEN_HIVE_TOKEN=HIVE_TOKEN, **env)
    for var in [k for k in full if k.startswith("OTEL_EXPORTER_OTLP")]:
        del full[var]  # only a side told to export traces does, whatever this shell has set
    queen = start_queen(full)
    try:
        worker_url = _worker(queen, token)
        via = key(queen)
    except BaseException:
        stop_queen(queen)
        raise
    return Side(name, queen, Conn(worker_url, WORKER_TOKEN), Conn(queen.url, via))


def _worker(queen: Daemon, token: str | None) -> str:
    from rbee.client import QueenClient

    with QueenClient(queen.url, token) as client:
        worker_id = client.run("worker_spawn", model="rbee-fake")["worker"]["id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for w in client._http.get("/v1/workers").json():
                if w["id"] == worker_id and w["state"] == "ready":
                    return str(w["url"])
            time.sleep(0.05)
    raise TimeoutError("fake worker did not show up in /v1/workers")


def _tenant_key(queen: Daemon) -> str:
    """A tenant, a user and a key, every limit set on both (high: nothing is refused)."""
    from rbee.client import QueenClient

    with QueenClient(queen.url, BOOT) as client:
        client.admin("POST", "/tenants", {"name": "bench"})
        user = client.admin("POST", "/users", {"tenant": "bench", "name": "bench"})
        made = client.admin("POST", "/keys", {"user": user["id"]})
        client.admin("PUT", "/tenants/bench/limits", HIGH)
        client.admin("PUT", f"/keys/{made['id']}/limits", HIGH)
        client.admin("PUT", "/prices/rbee-fake", {"input_tokens": 1e-6, "output_tokens": 2e-6})
        return str(made["key"])


def start_side(root: Path, name: str) -> Side:
    if name == "on":
        return fake_side(root, name, {"RBEE_QUEEN_API_TOKEN": BOOT}, BOOT, _tenant_key)
    return fake_side(root, name, {})


def print_off_on(sides: list[Side], times: list[list[list[float]]], n: int,
                 what: str, title: str, target_ms: float) -> None:
    """The two tables of an off/on comparison: each queen's latency beside its worker's,
    then what switching `what` on adds, against `target_ms` at p50."""
    rows: list[list[object]] = []
    added: dict[str, tuple[float, float, float]] = {}
    for side, (xs, ys) in zip(sides, times, strict=True):
        diffs = [y - x for x, y in zip(xs, ys, strict=True)]
        added[side.name] = (median(ys) - median(xs), pct(ys, 99) - pct(xs, 99), median(diffs))
        rows += [row(f"{side.name}: direct to worker", xs), row(f"{side.name}: via queen", ys),
                 [f"**{side.name}: added by queen**", added[side.name][0],
                  pct(ys, 90) - pct(xs, 90), added[side.name][1], min(ys) - min(xs), ""]]
    print(table(f"Non-streamed chat completion, rbee-fake, max_tokens=1, {n} interleaved pairs "
                f"per queen, keep-alive; {what} off and on (ms)",
                ["path", "p50", "p90", "p99", "min", "% > 20 ms"], rows))
    more50 = added["on"][0] - added["off"][0]
    paired = added["on"][2] - added["off"][2]
    print(table(f"{title}: what they add (ms)", ["metric", "off", "on", "on - off", "target",
                                                 "result"], [
        ["added p50 (via queen - direct)", added["off"][0], added["on"][0], more50,
         f"<= {target_ms}", verdict(more50 <= target_ms)],
        ["paired difference p50", added["off"][2], added["on"][2], paired, "", ""],
        ["added p99", added["off"][1], added["on"][1], added["on"][1] - added["off"][1],
         "", ""]]))


def run(n: int, warmup: int) -> int:
    sides: list[Side] = []
    with tempdir("rbee-bench-quotas-") as tmp:
        try:
            for name in ("off", "on"):
                sides.append(start_side(tmp, name))
            calls = [side.calls() for side in sides]
            in_blocks(calls, warmup)
            times = in_blocks(calls, n)
        finally:
            for side in sides:
                side.close()
    print_off_on(sides, times, n, "auth + quotas", "Auth + quotas", TARGET_MS)
    print(table("In process: the quota work of one request (µs, best of 3)",
                ["part", "µs"], in_process_costs()))
    return 0


def in_process_costs(number: int = 20_000) -> list[list[object]]:
    """The quota work one request does, measured alone (µs per request)."""
    import timeit

    from rbee.api.quotas import Limits, Prices
    from rbee.core.clock import SystemClock
    from rbee.queen.metering import text_demand, used_in
    from rbee.queen.quotas import Account, Quotas, Used

    seen: list[object] = []
    quotas = Quotas(SystemClock(), lambda *row: seen.append(row))
    account = Account("ten_bench", "key_bench", "bench")
    for scope, id_ in (("tenant", "ten_bench"), ("key", "key_bench")):
        quotas.set_limits(scope, id_, Limits(**HIGH))  # type: ignore[arg-type]
    quotas.set_prices("rbee-fake", Prices(input_tokens=1e-6, output_tokens=2e-6))
    answer = (b'{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"a"},'
              b'"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":1,'
              b'"total_tokens":2}}')
    price = quotas.price_of("rbee-fake")

    def one() -> None:
        charge = quotas.reserve(account, "rbee-fake", text_demand(len(BODY), 1, 1, price))
        charge.settle(used_in(answer) or Used())
        seen.clear()

    def us(fn: object) -> float:
        return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e6  # type: ignore

    return [["demand + reserve (2 meters) + settle + usage row", us(one)],
            ["usage read from the answer (used_in)", us(lambda: used_in(answer))]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="300 pairs instead of 2000")
    ap.add_argument("-n", type=int, default=None, help="measured rounds (default 2000)")
    args = ap.parse_args()
    n = args.n or (300 if args.quick else 2000)
    header("quotas: latency auth + quotas add to the queen (fake engine)", args.quick)
    return run(n, warmup=min(200, n // 4))


if __name__ == "__main__":
    raise SystemExit(main())
