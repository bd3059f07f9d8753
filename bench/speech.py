"""Speech with the built-in Piper voice (piper-joe): time to first audio and real-time factor,
the engine called in-process vs the worker called directly vs the queen, side by side.

Each run speaks the same three sentences as raw `pcm` (no encoder: the cost measured is
synthesis and transport) and reads the stream as it comes. Time to first audio (TTFA) is
request to the first audio byte; the real-time factor (RTF) is the whole answer's time over
the audio's duration (below 1: faster than real time). Paths alternate run by run.

Targets: via queen TTFA within 20 ms of the engine's; via queen RTF <= 1.1x the engine's.

    .venv/bin/python bench/speech.py [--quick] [--runs 15]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, median, pct, stop_queen, table, tempdir, verdict
from tests.support.daemons import rbee_env, start_queen

MODEL = "piper-joe"
WORKER_TOKEN = "bench-worker-token"
PCM_RATE = 24_000  # OpenAI's pcm: 24 kHz 16-bit mono
TEXT = ("The queen routes every request to a worker. The worker speaks it aloud, one sentence "
        "at a time. Nothing leaves this machine.")
TTFA_SLACK_MS = 20.0
RTF_RATIO = 1.1
Run = tuple[float, float]  # (seconds to the first audio, real-time factor)


def http_run(http: httpx.Client, path_headers: dict[str, str]) -> Run:
    body = {"model": MODEL, "voice": "joe", "input": TEXT, "response_format": "pcm"}
    start = time.perf_counter()
    first = 0.0
    size = 0
    with http.stream("POST", "/v1/audio/speech", json=body, headers=path_headers) as r:
        r.raise_for_status()
        for chunk in r.iter_raw():
            if chunk and not size:
                first = time.perf_counter() - start
            size += len(chunk)
    total = time.perf_counter() - start
    return first, total / (size / 2 / PCM_RATE)


def engine_run(speak: Callable[[], object], rate: int) -> Run:
    start = time.perf_counter()
    first = 0.0
    size = 0
    for chunk in speak():  # type: ignore[attr-defined]
        if not size:
            first = time.perf_counter() - start
        size += len(chunk)
    total = time.perf_counter() - start
    return first, total / (size / 2 / rate)


def run(runs: int) -> int:
    from rbee.engines.piper import PiperSpeaker
    from rbee.models.catalog import builtin_path

    weights = builtin_path(MODEL)
    if weights is None:
        print("SKIP: piper-joe is not installed (scripts/install.sh installs it)")
        return 0
    engine = PiperSpeaker(str(weights))
    engine.load(lambda _f, _s: None)
    never = threading.Event()
    results: dict[str, list[Run]] = {"engine in-process": [], "worker direct": [],
                                     "via queen": []}
    with tempdir("rbee-bench-speech-") as tmp:
        queen = start_queen(rbee_env(tmp, RBEE_QUEEN_WORKER_TOKEN=WORKER_TOKEN))
        try:
            with httpx.Client(base_url=queen.url, timeout=120) as via:
                http_run(via, {})  # loads the worker
                (worker,) = [w for w in via.get("/v1/workers").json()
                             if w["state"] == "ready"]
                with httpx.Client(base_url=worker["url"], timeout=120) as direct:
                    auth = {"Authorization": f"Bearer {WORKER_TOKEN}"}
                    paths: dict[str, Callable[[], Run]] = {
                        "engine in-process": lambda: engine_run(
                            lambda: engine.speak(TEXT, "joe", 1.0, never), engine.sample_rate),
                        "worker direct": lambda: http_run(direct, auth),
                        "via queen": lambda: http_run(via, {}),
                    }
                    for measure in paths.values():
                        measure()  # warm-up
                    for i in range(runs):
                        order = list(paths.items())
                        for name, measure in order if i % 2 == 0 else order[::-1]:
                            results[name].append(measure())
        finally:
            stop_queen(queen)
            engine.close()
    rows = []
    for name, values in results.items():
        ttfa = [v[0] * 1000 for v in values]
        rtf = [v[1] for v in values]
        rows.append([name, median(ttfa), pct(ttfa, 90),
                     *(f"{x:.3f}" for x in (median(rtf), min(rtf), max(rtf)))])
    print(table(f"Speech, {MODEL}, three sentences as pcm, {runs} alternating runs",
                ["path", "TTFA ms (median)", "TTFA p90", "RTF (median)", "RTF min", "RTF max"],
                rows))
    ttfa_added = median([v[0] for v in results["via queen"]]) * 1000 - median(
        [v[0] for v in results["engine in-process"]]) * 1000
    rtf_ratio = median([v[1] for v in results["via queen"]]) / median(
        [v[1] for v in results["engine in-process"]])
    print(table("Targets", ["metric", "measured", "target", "result"], [
        ["via queen TTFA - engine TTFA (medians)", f"{ttfa_added:.1f} ms",
         f"<= {TTFA_SLACK_MS:g} ms", verdict(ttfa_added <= TTFA_SLACK_MS)],
        ["via queen RTF / engine RTF (medians)", f"{rtf_ratio:.2f}x", f"<= {RTF_RATIO:g}x",
         verdict(rtf_ratio <= RTF_RATIO)]]))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 runs per path")
    ap.add_argument("--runs", type=int, default=None)
    args = ap.parse_args()
    header("speech: engine vs worker vs queen", args.quick)
    return run(args.runs or (3 if args.quick else 15))


if __name__ == "__main__":
    sys.exit(main())
