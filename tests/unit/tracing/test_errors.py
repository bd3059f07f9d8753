"""What a failed or abandoned span says: the error's type only (never its message, which may
name a `file:` model's path), and a client gone is no error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import cast

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from rbee.core.errors import NoCapacity
from rbee.engines.base import Finish, Output, Piece
from rbee.tracing.generation import traced
from rbee.tracing.tracer import Tracing, start_tracing

SECRET = "file:/home/alice/secret/model.gguf"


def tracing() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return start_tracing("queen-rbee", exporter=exporter), exporter


def exported(tracing: Tracing, exporter: InMemorySpanExporter) -> dict[str, object]:
    tracing.shutdown()  # flushes the batch processor
    return {s.name: s for s in exporter.get_finished_spans()}


def test_a_step_that_fails_exports_its_type_never_its_message() -> None:
    t, exporter = tracing()
    with (t.tracer.start_as_current_span("POST /v1/chat/completions", kind=SpanKind.SERVER),
          pytest.raises(NoCapacity), t.step("rbee.place")):
        raise NoCapacity(f"no device can host {SECRET}")
    spans = exported(t, exporter)
    place = spans["rbee.place"]
    assert place.status.status_code is StatusCode.ERROR  # type: ignore[attr-defined]
    assert place.attributes["error.type"] == "NoCapacity"  # type: ignore[attr-defined]
    assert not place.events  # type: ignore[attr-defined]  # no exception event, no stack
    everything = repr([(s.attributes, s.status, s.events)  # type: ignore[attr-defined]
                       for s in spans.values()])
    assert "alice" not in everything


async def test_a_client_hanging_up_mid_generation_is_cancelled_not_an_error() -> None:
    t, exporter = tracing()

    async def outputs() -> AsyncIterator[tuple[int, Output]]:
        yield 0, Piece("Hel")
        yield 0, Piece("lo")
        yield 0, Finish("stop", 3, 2)

    with t.tracer.start_as_current_span("POST /v1/chat/completions", kind=SpanKind.SERVER):
        stream = cast(AsyncGenerator[tuple[int, Output], None],
                      traced(t, outputs(), {"gen_ai.request.model": "m"}))
        assert (await anext(stream))[1] == Piece("Hel")
        await stream.aclose()  # the client went away: GeneratorExit inside
    generate = exported(t, exporter)["rbee.generate"]
    assert generate.status.status_code is not StatusCode.ERROR  # type: ignore[attr-defined]
    assert generate.attributes["rbee.finish_reason"] == "cancelled"  # type: ignore[attr-defined]
    assert generate.attributes["rbee.cancelled"] is True  # type: ignore[attr-defined]


async def test_a_cancelled_step_is_no_error_either() -> None:
    t, exporter = tracing()

    async def waits() -> None:
        with t.tracer.start_as_current_span("POST /v1/chat/completions"), \
                t.step("rbee.admission"):
            await asyncio.sleep(3600)

    task = asyncio.ensure_future(waits())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    admission = exported(t, exporter)["rbee.admission"]
    assert admission.status.status_code is not StatusCode.ERROR  # type: ignore[attr-defined]
