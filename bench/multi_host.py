"""Multi-machine costs: installing a hive over SSH, noticing a dead one, the remote hop.

Machines are network namespaces with their own address, user and real sshd
(tests/support/machines.py; needs root, sshd and iproute2 — scripts/system-deps.sh). The
machines have no route to any package registry, so every install is the offline path:
wheels pushed from this machine. The queen binds 0.0.0.0 (with an API token) and runs its
own local hive too, for the local-vs-remote comparison.

1. Install time on a fresh host (`hive_install` job, start to "registered"): the first
   install may also collect the wheel set into the cache; the others reuse it. Plus a
   re-install of an installed host (same version: only rbee's own wheel is replaced).
2. Dead-hive detection: SIGKILL everything the hive's user runs on the machine, then poll
   the queen until it reports the hive "down"; then `hive_start` until it is "up" again.
   Target: detected within 3 telemetry intervals.
3. Latency of a remote worker vs a local one: non-streamed chat completions (`rbee-fake`,
   max_tokens=1) through the queen, pinned by `hive_id` to the local hive or to a remote
   machine, interleaved pair by pair on keep-alive connections.

    .venv/bin/python bench/multi_host.py [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, median, pct, table, tempdir, verdict
from tests.support.daemons import rbee_env, start_queen
from tests.support.machines import Machine, machines

from rbee.client import QueenClient

TOKEN = "bench-multi-host-token"
INTERVAL = 0.5


def hives_conf(ms: list[Machine]) -> str:
    return "".join(f"Host {m.name}\n  HostName {m.address}\n  User {m.user}\n"
                   f"  IdentityFile {m.identity_file}\n  UserKnownHostsFile {m.known_hosts}\n\n"
                   for m in ms)


def state(client: QueenClient, hive: str) -> str:
    return str(next(h["state"] for h in client.run("hive_list")["hives"] if h["id"] == hive))


def timed(fn: object) -> float:
    assert callable(fn)
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_install(client: QueenClient, ms: list[Machine]) -> None:
    rows = []
    fresh = []
    for i, m in enumerate(ms):
        s = timed(lambda m=m: client.run("hive_install", hive_id=m.name))
        rows.append((f"fresh host {m.name}" + (" (may collect wheels)" if i == 0 else ""), s))
        if i:
            fresh.append(s)
    again = timed(lambda: client.run("hive_install", hive_id=ms[0].name))
    rows.append((f"re-install {ms[0].name} (same version)", again))
    print(table("install a hive over SSH, offline (pushed wheels), seconds",
                ("install", "seconds"), rows))
    print(f"median fresh-host install with cached wheels: {median(fresh):.1f} s\n")


def bench_detection(client: QueenClient, m: Machine, rounds: int) -> None:
    detect, rejoin = [], []
    for _ in range(rounds):
        # land the kill at a random point of the hive's report cycle
        time.sleep(INTERVAL + random.uniform(0, INTERVAL))
        killed = time.perf_counter()
        m.kill_user_processes()
        while state(client, m.name) != "down":
            time.sleep(0.01)
        detect.append(time.perf_counter() - killed)
        rejoin.append(timed(lambda: client.run("hive_start", hive_id=m.name)))
    limit = 3 * INTERVAL
    print(table(f"dead-hive detection (telemetry interval {INTERVAL} s, {rounds} kills)",
                ("measure", "median s", "max s", "max / interval", "target", "result"), [
                    ("SIGKILL → marked down", median(detect), max(detect),
                     max(detect) / INTERVAL, f"≤ {limit} s (3 intervals)",
                     verdict(max(detect) <= limit + 0.1)),
                    ("hive_start → registered again", median(rejoin), max(rejoin), "", "", ""),
                ]))
    print("(detection is measured from the kill; the hive's last report came up to one "
          "interval before it, so 3 intervals after that report is ≤ 3 intervals after "
          "the kill; the +0.1 s allowance is the queen's polling)\n")


def bench_latency(url: str, remote: str, n: int) -> None:
    host, port = url.split("//")[1].split(":")
    conns = {h: http.client.HTTPConnection(host, int(port)) for h in ("localhost", remote)}
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    bodies = {h: json.dumps({"model": "rbee-fake", "max_tokens": 1, "seed": 1, "hive_id": h,
                             "messages": [{"role": "user", "content": "hi"}]}).encode()
              for h in conns}
    samples: dict[str, list[float]] = {h: [] for h in conns}

    def once(h: str) -> float:
        t0 = time.perf_counter()
        conns[h].request("POST", "/v1/chat/completions", bodies[h], headers)
        r = conns[h].getresponse()
        r.read()
        assert r.status == 200, r.status
        return (time.perf_counter() - t0) * 1000

    for h in conns:  # warm up connections on both sides
        for _ in range(50):
            once(h)
    for i in range(n):
        order = ("localhost", remote) if i % 2 else (remote, "localhost")
        for h in order:
            samples[h].append(once(h))
    loc, rem = samples["localhost"], samples[remote]
    diffs = [r - lo for r, lo in zip(rem, loc, strict=True)]
    print(table(f"remote vs local worker through the queen ({n} interleaved pairs, ms)",
                ("worker on", "p50", "p90", "p99"), [
                    ("local hive (loopback)", median(loc), pct(loc, 90), pct(loc, 99)),
                    (f"remote machine {remote} (veth)", median(rem), pct(rem, 90), pct(rem, 99)),
                    ("per-pair difference", median(diffs), pct(diffs, 90), pct(diffs, 99)),
                ]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    header("multi-host", args.quick)
    count = 2 if args.quick else 3
    with tempdir("rbee-bench-mh-") as root, machines(count, root / "machines") as ms:
        env = rbee_env(root, RBEE_QUEEN_HOST="0.0.0.0", RBEE_QUEEN_API_TOKEN=TOKEN,
                       RBEE_QUEEN_TELEMETRY_INTERVAL=str(INTERVAL))
        Path(env["RBEE_QUEEN_HIVES_CONF"]).write_text(hives_conf(ms))
        queen = start_queen(env)
        try:
            with QueenClient(queen.url, TOKEN) as client:
                bench_install(client, ms)
                bench_detection(client, ms[0], 3 if args.quick else 8)
                for hive in ("localhost", ms[1].name):
                    client.run("worker_spawn", model="rbee-fake", hive_id=hive)
                bench_latency(queen.url, ms[1].name, 300 if args.quick else 2000)
        finally:
            queen.stop()


if __name__ == "__main__":
    main()
