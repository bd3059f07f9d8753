"""What OpenTelemetry tracing adds to the queen's latency: before it existed, off, and on.

Four queens, each with its local hive and an `rbee-fake` worker, no API token:
"before" runs the code of the commit before tracing was added (`--before`, default the
merge base with main; its src/ exported with `git archive`, first on PYTHONPATH for the
queen, its hive and its worker), "off" this tree with no OTLP endpoint (the default), "on"
this tree with RBEE_QUEEN_OTLP_ENDPOINT set: the queen, its hive and the worker each export
every span over OTLP/HTTP to a receiver in a process of its own (tests/support/otlp.py,
which decodes every request), and "on, 10% sampled" the same with the standard sampler
variables recording one request in ten. The direct calls carry no trace context, so a
worker records nothing for them: "on" via the queen counts the worker's spans too. N
non-streamed chat completions (max_tokens=1) go straight to each worker and through each
queen, interleaved pair by pair, the queens taking turns every BLOCK pairs
(bench/queen_overhead.py's method), so machine noise hits all alike.

Goal: off adds nothing measurable against before; on is reported.

    .venv/bin/python bench/tracing.py [--quick] [-n 2000] [--before REV]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import timeit
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, median, table, tempdir
from queen_overhead import in_blocks, row
from quotas import Side, fake_side

REPO = Path(__file__).resolve().parents[1]
# The standard sampler variables: one request in ten recorded, the rest carry an unsampled
# traceparent (the hive and the worker then record nothing either).
SAMPLED = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
RECEIVER = ("import sys, time\n"
            "from tests.support.otlp import otlp_receiver\n"
            "with otlp_receiver() as r:\n"
            "    print(r.url, flush=True)\n"
            "    sys.stdin.read()\n"  # until the bench closes our stdin
            "    print(len(r.spans), flush=True)\n")


@contextmanager
def receiver() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER], cwd=REPO, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip(), proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def old_src(rev: str, into: Path) -> Path:
    """`rev`'s src/ tree, exported (no checkout: the working tree stays as it is)."""
    tar = subprocess.run(["git", "archive", "--format=tar", rev, "src"], cwd=REPO,
                         capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(into, filter="data")
    return into / "src"


def run(n: int, warmup: int, before: str) -> int:
    sides: list[Side] = []
    with tempdir("rbee-bench-tracing-") as tmp, receiver() as (url, proc):
        old = old_src(before, tmp / "before-tree")
        try:
            for name, extra in (("before", {"PYTHONPATH": str(old)}), ("off", {}),
                                ("on", {"RBEE_QUEEN_OTLP_ENDPOINT": url}),
                                ("on, 10% sampled", {"RBEE_QUEEN_OTLP_ENDPOINT": url,
                                                     **SAMPLED})):
                sides.append(fake_side(tmp, name, extra))
            calls = [side.calls() for side in sides]
            in_blocks(calls, warmup)
            times = in_blocks(calls, n)
        finally:
            for side in sides:
                side.close()  # the daemons flush their last spans on the way out
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        exported = int(proc.stdout.readline() or 0)
    report(sides, times, n, before, exported)
    print(table("In process: one traced request's span work (µs, best of 3)", ["part", "µs"],
                in_process_costs()))
    return 0


def report(sides: list[Side], times: list[list[list[float]]], n: int, before: str,
           exported: int) -> None:
    rows: list[list[object]] = []
    added: dict[str, tuple[float, float]] = {}
    for side, (xs, ys) in zip(sides, times, strict=True):
        diffs = [y - x for x, y in zip(xs, ys, strict=True)]
        added[side.name] = (median(ys) - median(xs), median(diffs))
        rows += [row(f"{side.name}: direct to worker", xs), row(f"{side.name}: via queen", ys)]
    print(table(f"Non-streamed chat completion, rbee-fake, max_tokens=1, {n} interleaved pairs "
                f"per queen, keep-alive (ms); before = {before}",
                ["path", "p50", "p90", "p99", "min", "% > 20 ms"], rows))
    print(table(f"Added by the queen, medians (ms); {exported} spans exported by both 'on' "
                "queens' daemons",
                ["queen", "via - direct, p50", "paired difference p50", "vs before (paired)"],
                [[name, a, d, d - added["before"][1]] for name, (a, d) in added.items()]))


def in_process_costs(number: int = 20_000) -> list[list[object]]:
    """The span work of one request in the queen, alone: its server span, the scheduling
    decision's, the relay's client span and its traceparent (a request admitted at once has
    no admission span); exported to nowhere, through the batch processor's queue."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.trace import SpanKind

    from rbee.tracing.tracer import start_tracing

    class Nowhere(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracing = start_tracing("queen-rbee", exporter=Nowhere())
    tracer = tracing.tracer

    def one() -> None:
        with tracer.start_as_current_span("POST /v1/chat/completions", kind=SpanKind.SERVER,
                                          context=tracing.extract([])):
            with tracing.step("rbee.schedule", {"rbee.model": "rbee-fake"}):
                pass
            client = tracing.client("POST /v1/chat/completions", {"rbee.worker.id": "w"})
            assert client is not None
            client.inject({})
            client.answered(200)
            client.end()

    cost = min(timeit.repeat(one, number=number, repeat=3)) / number * 1e6
    tracing.shutdown()
    return [["server span + schedule span + relay client span + traceparent", cost]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="300 pairs instead of 2000")
    ap.add_argument("-n", type=int, default=None, help="measured rounds (default 2000)")
    ap.add_argument("--before", default=None, help="the revision before tracing "
                    "(default: the merge base of HEAD and main)")
    args = ap.parse_args()
    before = args.before or subprocess.run(
        ["git", "merge-base", "HEAD", "main"], cwd=REPO, capture_output=True, text=True,
        check=True).stdout.strip()[:12]
    n = args.n or (300 if args.quick else 2000)
    header("tracing: latency OpenTelemetry traces add to the queen (fake engine)", args.quick)
    return run(n, warmup=min(200, n // 4), before=before)


if __name__ == "__main__":
    raise SystemExit(main())
