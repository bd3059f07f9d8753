"""Embeddings/s with the built-in all-MiniLM-L6-v2: the engine called in-process, the worker
called directly, and the queen — side by side in one run.

Two workloads, each run in alternating rounds (the order flips every round):

* batch: one client sends 64 sentences per request, back to back (indexing a corpus);
* concurrent: 16 clients send one sentence each, back to back (a RAG service's queries).

The engine row calls `OnnxEmbedder.tokenize` + `embed` in this process with the same inputs
(for the concurrent workload, 16 threads), so it is what the model does with no HTTP at all.
The HTTP rows ask for `encoding_format=base64`, the official SDK's default.

Target: via queen >= 95% of the engine's embeddings/s (batch workload).

    .venv/bin/python bench/embeddings.py [--quick] [--rounds 5] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, median, stop_queen, table, tempdir, verdict
from tests.support.daemons import rbee_env, start_queen

MODEL = "all-minilm-l6-v2"
WORKER_TOKEN = "bench-worker-token"
TARGET = 0.95
CLIENTS = 16
SENTENCES = [f"Sentence {i}: the queen routes every request to a worker on some machine, "
             f"and the hive keeps {i % 7 + 1} models warm." for i in range(64)]


async def http_rate(url: str, headers: dict[str, str], batch: list[str], clients: int,
                    seconds: float) -> float:
    """Embeddings per second of `clients` closed-loop clients sending `batch` each time."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    body = {"model": MODEL, "input": batch, "encoding_format": "base64"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                 timeout=60) as http:
        done = 0
        end = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal done
            while time.perf_counter() < end:
                r = await http.post("/v1/embeddings", json=body)
                r.raise_for_status()
                done += len(r.json()["data"])

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return done / (time.perf_counter() - start)


def engine_rate(embed: Callable[[list[str]], object], batch: list[str], clients: int,
                seconds: float) -> float:
    done = 0
    lock = threading.Lock()
    end = time.perf_counter() + seconds

    def client() -> None:
        nonlocal done
        while time.perf_counter() < end:
            embed(batch)
            with lock:
                done += len(batch)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done / (time.perf_counter() - start)


def run(rounds: int, seconds: float) -> int:
    from rbee.engines.onnx_embedding import OnnxEmbedder
    from rbee.models.catalog import builtin_path, builtin_tokenizer_path

    weights, tokenizer = builtin_path(MODEL), builtin_tokenizer_path(MODEL)
    if weights is None or tokenizer is None:
        print("SKIP: all-minilm-l6-v2 is not installed (scripts/install.sh installs it)")
        return 0
    engine = OnnxEmbedder(str(weights), str(tokenizer))
    engine.load(lambda _f, _s: None)

    def embed(texts: list[str]) -> object:
        return engine.embed(engine.tokenize(texts))

    workloads = {"batch (64 sentences, 1 client)": (SENTENCES, 1),
                 f"concurrent (1 sentence, {CLIENTS} clients)": (SENTENCES[:1], CLIENTS)}
    rates: dict[tuple[str, str], list[float]] = {}
    with tempdir("rbee-bench-embed-") as tmp:
        queen = start_queen(rbee_env(tmp, RBEE_QUEEN_WORKER_TOKEN=WORKER_TOKEN))
        try:
            with httpx.Client(base_url=queen.url, timeout=120) as http:
                http.post("/v1/embeddings", json={"model": MODEL, "input": "warm"}
                          ).raise_for_status()
                (worker,) = [w for w in http.get("/v1/workers").json()
                             if w["state"] == "ready"]
            paths: dict[str, Callable[[list[str], int, float], float]] = {
                "engine in-process": lambda b, c, s: engine_rate(embed, b, c, s),
                "worker direct": lambda b, c, s: asyncio.run(http_rate(
                    worker["url"], {"Authorization": f"Bearer {WORKER_TOKEN}"}, b, c, s)),
                "via queen": lambda b, c, s: asyncio.run(http_rate(queen.url, {}, b, c, s)),
            }
            for batch, clients in workloads.values():  # warm every path once
                for measure in paths.values():
                    measure(batch, clients, 0.5)
            for i in range(rounds):
                order = list(paths.items())
                for workload, (batch, clients) in workloads.items():
                    for name, measure in order if i % 2 == 0 else order[::-1]:
                        rates.setdefault((workload, name), []).append(
                            measure(batch, clients, seconds))
        finally:
            stop_queen(queen)
            engine.close()
    rows = []
    for workload in workloads:
        base = median(rates[(workload, "engine in-process")])
        for name in ("engine in-process", "worker direct", "via queen"):
            values = rates[(workload, name)]
            rows.append([workload, name, median(values), min(values), max(values),
                         f"{median(values) / base:.2f}x"])
    print(table(f"Embeddings/s, {MODEL} (int8 ONNX), {rounds} alternating rounds of "
                f"{seconds:g} s", ["workload", "path", "embeddings/s (median)", "min", "max",
                                   "vs engine"], rows))
    batch_key = next(iter(workloads))
    ratio = median(rates[(batch_key, "via queen")]) / median(rates[(batch_key,
                                                                      "engine in-process")])
    print(table("Targets", ["metric", "measured", "target", "result"], [
        ["via queen / engine in-process, batch workload", f"{ratio:.2f}x", f">= {TARGET:.2f}x",
         verdict(ratio >= TARGET)]]))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 round of 1.5 s per path")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None)
    args = ap.parse_args()
    header("embeddings: engine vs worker vs queen", args.quick)
    return run(args.rounds or (1 if args.quick else 5),
               args.seconds or (1.5 if args.quick else 3.0))


if __name__ == "__main__":
    sys.exit(main())
