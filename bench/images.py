"""Image requests/s through the queen vs the engine called directly, side by side in one run.

The pipeline is the tiny random Stable Diffusion the tests build (tests/support/
tiny_diffusion.py): its steps are cheap, so what rbee adds (HTTP through queen and worker,
PNG encoding, base64) shows up rather than drowning in denoising time. Direct: a
`DiffusersImageMaker` in this process (1 torch thread), `make()` then the same PNG encoding
the worker does. Through the queen: `client.images.generate` with the official SDK, a worker
with `--threads 1` (RBEE_QUEEN_WORKER_THREADS=1). Same prompt, size, steps and seed; the two
alternate request by request, so load on the machine hits both alike. Requests/s = 1 /
median latency (one request at a time: a diffusers worker paints one picture at a time).

    .venv/bin/python bench/images.py [--quick] [--runs 20] [--size 64] [--steps 4]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, median, pct, stop_queen, table, tempdir

PROMPT = "a red bee on a blue flower"
SEED = 7


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 runs")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--size", type=int, default=64, help="pixels a side")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    runs = 5 if args.quick else args.runs
    header("Images: requests/s through the queen vs the engine directly", args.quick)

    import openai
    from tests.support.daemons import rbee_env, start_queen
    from tests.support.tiny_diffusion import build_tiny_pipeline

    from rbee.api.images import ImageFormat
    from rbee.engines.base import ImageJob, Picture
    from rbee.engines.diffusers_image import DiffusersImageMaker
    from rbee.worker.images import encode

    with tempdir("rbee-bench-img-") as tmp:
        folder = build_tiny_pipeline(tmp / "pipeline")
        maker = DiffusersImageMaker(str(folder), threads=1)
        maker.load(lambda _f, _s: None)
        job = ImageJob(PROMPT, size=(args.size, args.size), steps=args.steps, seed=SEED)
        png: ImageFormat = "png"

        def direct() -> float:
            t0 = time.perf_counter()
            pictures = [p for p in maker.make(job, threading.Event()) if isinstance(p, Picture)]
            encode(pictures[0], png, None)
            return time.perf_counter() - t0

        queen = start_queen(rbee_env(tmp / "rbee", RBEE_QUEEN_WORKER_THREADS="1"))
        try:
            client = openai.OpenAI(base_url=f"{queen.url}/v1", api_key="unused",
                                   max_retries=0, timeout=300)
            model = f"file:{folder}"

            def through_queen() -> float:
                t0 = time.perf_counter()
                result = client.images.generate(
                    model=model, prompt=PROMPT, size=f"{args.size}x{args.size}",
                    extra_body={"steps": args.steps, "seed": SEED})
                assert result.data and result.data[0].b64_json
                return time.perf_counter() - t0

            through_queen()  # the worker's start (torch import, pipeline load) is not timed
            direct()
            ours: list[float] = []
            theirs: list[float] = []
            for _ in range(runs):
                theirs.append(direct())
                ours.append(through_queen())
        finally:
            stop_queen(queen)
        maker.close()

    d, q = median(theirs), median(ours)
    rows = [["engine directly", f"{d * 1e3:.1f}", f"{pct(theirs, 90) * 1e3:.1f}",
             f"{1 / d:.2f}"],
            ["through the queen", f"{q * 1e3:.1f}", f"{pct(ours, 90) * 1e3:.1f}",
             f"{1 / q:.2f}"]]
    print(table(f"{runs} requests each, {args.size}x{args.size} px, {args.steps} steps, n=1, "
                "png", ["path", "median ms", "p90 ms", "requests/s"], rows))
    print(f"through the queen: {d / q * 100:.0f}% of the direct rate "
          f"(+{(q - d) * 1e3:.1f} ms a request)")


if __name__ == "__main__":
    main()
