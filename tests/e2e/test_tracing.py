"""Traces from real daemons: a queen, its local hive and a fake-engine worker, exporting over
OTLP/HTTP to a real receiver. One chat request, streamed or not, that starts a worker is one
trace with spans from all three services, each linked to its caller's span."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rbee.client import QueenClient
from tests.support.daemons import Daemon, rbee_env, running_queen, smollm2_path
from tests.support.otlp import Receiver, Span, otlp_receiver

pytestmark = pytest.mark.e2e
CHAT = "POST /v1/chat/completions"
SERVICES = {"queen-rbee", "rbee-hive", "rbee-worker"}
PROMPT = "a private prompt 51c9"
queen_running = contextlib.contextmanager(running_queen)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with otlp_receiver() as r:
        yield r


def _traced_env(tmp_path: Path, receiver: Receiver, **extra: str) -> dict[str, str]:
    # The batch processor's delay (standard OTEL_BSP_*) short: the test waits less.
    return rbee_env(tmp_path, RBEE_QUEEN_OTLP_ENDPOINT=receiver.url,
                    OTEL_BSP_SCHEDULE_DELAY="100", **extra)


def _chat(queen: Daemon, stream: bool, model: str = "rbee-fake") -> str:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 4, "stream": stream}
    got = httpx.post(f"{queen.url}/v1/chat/completions", json=body, timeout=120)
    assert got.status_code == 200, got.text
    if not stream:
        return str(got.json()["choices"][0]["message"]["content"])
    return "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                   for line in got.text.splitlines()
                   if line.startswith("data: {") and '"choices":[{' in line)


def _trace_of(spans: list[Span], trace_id: str) -> list[Span]:
    return [s for s in spans if s.trace_id == trace_id]


# Every span a request that starts a worker makes. Each daemon exports in its own batches,
# and a parent ends (so is exported) after its children: wait for all, not for one.
EXPECTED = {("queen-rbee", "rbee.schedule"), ("queen-rbee", "rbee.place"),
            ("queen-rbee", "POST /v1/workers"), ("queen-rbee", "rbee.worker_start"),
            ("queen-rbee", CHAT), ("rbee-hive", "POST /v1/workers"), ("rbee-worker", CHAT),
            ("rbee-worker", "rbee.generate")}


def _whole_trace(receiver: Receiver, known: set[str]) -> list[Span]:
    """The spans of the one new queen request's trace, once all three services sent every
    span and each span's parent is there."""
    def complete(spans: list[Span]) -> bool:
        roots = [s for s in spans if s.service == "queen-rbee" and s.kind == "server"
                 and s.trace_id not in known]
        if len(roots) != 1:
            return False
        trace = _trace_of(spans, roots[0].trace_id)
        ids = {s.span_id for s in trace}
        return {(s.service, s.name) for s in trace} >= EXPECTED and all(
            s.parent_id in ids for s in trace if s.parent_id)
    spans = receiver.wait_for(complete)
    root = next(s for s in spans if s.service == "queen-rbee" and s.kind == "server"
                and s.trace_id not in known)
    known.add(root.trace_id)
    return _trace_of(spans, root.trace_id)


def _one(spans: list[Span], service: str, name: str, kind: str | None = None) -> Span:
    found = [s for s in spans if s.service == service and s.name == name
             and kind in (None, s.kind)]
    assert len(found) == 1, (service, name, [(s.service, s.name, s.kind) for s in spans])
    return found[0]


def _check_links(trace: list[Span]) -> None:
    assert {s.service for s in trace} == SERVICES
    server = _one(trace, "queen-rbee", CHAT, "server")
    assert server.parent_id == "" and server.attributes["http.response.status_code"] == 200
    by_id = {s.span_id: s for s in trace}
    for span in trace:  # every other span's parent is in the same trace
        assert span is server or span.parent_id in by_id, span
    schedule = _one(trace, "queen-rbee", "rbee.schedule")
    place = _one(trace, "queen-rbee", "rbee.place")
    spawn = _one(trace, "queen-rbee", "POST /v1/workers", "client")
    hive = _one(trace, "rbee-hive", "POST /v1/workers", "server")
    relay = _one(trace, "queen-rbee", CHAT, "client")
    worker = _one(trace, "rbee-worker", CHAT, "server")
    generate = _one(trace, "rbee-worker", "rbee.generate")
    assert schedule.parent_id == server.span_id
    assert place.parent_id == schedule.span_id and spawn.parent_id == place.span_id
    assert hive.parent_id == spawn.span_id
    assert not [s for s in trace if s.name == "rbee.admission"]  # admitted at once
    assert _one(trace, "queen-rbee", "rbee.worker_start").parent_id == schedule.span_id
    assert relay.parent_id == server.span_id and worker.parent_id == relay.span_id
    assert generate.parent_id == worker.span_id
    assert 0 < generate.attributes["gen_ai.usage.output_tokens"] <= 4  # a model may stop
    assert generate.attributes["gen_ai.usage.input_tokens"] > 0
    assert hive.attributes["rbee.worker.id"] == worker_id(trace)
    assert not any(s.error for s in trace)


def worker_id(trace: list[Span]) -> str:
    return str(_one(trace, "queen-rbee", "rbee.schedule").attributes["rbee.worker.id"])


def _stop_worker(queen: Daemon, worker: str) -> None:
    with QueenClient(queen.url) as client:
        client.run("worker_stop", worker_id=worker)


def test_a_request_is_one_trace_across_queen_hive_and_worker(
        tmp_path: Path, receiver: Receiver) -> None:
    known: set[str] = set()
    with queen_running(_traced_env(tmp_path, receiver)) as queen:
        answers = []
        for stream in (False, True):  # each starts a worker: the hive takes part
            answers.append(_chat(queen, stream))
            trace = _whole_trace(receiver, known)
            _check_links(trace)
            # the fake engine always writes max_tokens
            assert _one(trace, "rbee-worker", "rbee.generate").attributes[
                "gen_ai.usage.output_tokens"] == 4
            _stop_worker(queen, worker_id(trace))
        # Nothing of the request's content in any span the receiver got.
        dumped = json.dumps([s.attributes for s in receiver.snapshot()])
        for text in (PROMPT, *[a for a in answers if len(a) > 3]):
            assert text not in dumped


def test_off_the_receiver_gets_nothing(tmp_path: Path, receiver: Receiver) -> None:
    """No endpoint configured (OTEL_* unset): queen, hive and worker export nothing."""
    env = {k: v for k, v in rbee_env(tmp_path, OTEL_BSP_SCHEDULE_DELAY="100").items()
           if not k.startswith("OTEL_EXPORTER_OTLP")}
    with queen_running(env) as queen:
        _chat(queen, stream=False)
        _chat(queen, stream=True)
        time.sleep(1.0)  # ten batch delays: anything exported would have arrived
    assert receiver.posts == 0 and receiver.snapshot() == []


@pytest.mark.model
def test_a_real_model_s_trace(tmp_path: Path, receiver: Receiver) -> None:
    if smollm2_path() is None:
        pytest.fail("SmolLM2 is not installed (scripts/install.sh fetches it)")
    known: set[str] = set()
    with queen_running(_traced_env(tmp_path, receiver)) as queen:
        _chat(queen, stream=True, model="smollm2-135m-instruct")
        trace = _whole_trace(receiver, known)
        _check_links(trace)
        assert _one(trace, "rbee-worker", "rbee.generate").attributes["rbee.model"] == \
            "smollm2-135m-instruct"


def test_spans_still_pending_are_exported_when_the_daemons_stop(
        tmp_path: Path, receiver: Receiver) -> None:
    """A batch delay longer than the test: only the flush on the way out exports them."""
    env = _traced_env(tmp_path, receiver)
    env["OTEL_BSP_SCHEDULE_DELAY"] = "600000"
    with queen_running(env) as queen:
        _chat(queen, stream=True)
        time.sleep(0.5)
        assert receiver.snapshot() == []  # nothing exported yet
    trace = _whole_trace(receiver, set())
    _check_links(trace)
