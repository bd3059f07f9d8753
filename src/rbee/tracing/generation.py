"""The worker's generation span: one per request, from its first token asked to its last.

Only counts are recorded (tokens in and out, choices, how it finished): never the prompt or
the text. A streamed answer's span ends when its stream does (finished, cut, or hung up).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

from rbee.engines.base import Finish, Output
from rbee.tracing.tracer import Tracing, errored

T = TypeVar("T")


async def traced(tracing: Tracing, items: AsyncIterator[tuple[T, Output]],
                 attributes: dict[str, str]) -> AsyncIterator[tuple[T, Output]]:
    """`items` (each choice's outputs in turn), under a `rbee.generate` span."""
    span = tracing.child("rbee.generate", attributes)
    if span is None:  # no traced request around it (cannot happen behind TracedRequests)
        async for item in items:
            yield item
        return
    prompt = completion = choices = 0
    reason = "cancelled"  # a hang-up closes us before any Finish
    try:
        async for item in items:
            output = item[1]
            if isinstance(output, Finish):
                # The prompt is the same for every choice: counted once, as usage does.
                prompt = output.prompt_tokens
                completion += output.completion_tokens
                choices += 1
                reason = output.reason
            yield item
    except BaseException as exc:  # a hang-up (GeneratorExit) stays "cancelled", no error
        errored(span, exc)
        raise
    finally:
        span.set_attributes({"gen_ai.usage.input_tokens": prompt,
                             "gen_ai.usage.output_tokens": completion,
                             "rbee.choices": choices, "rbee.finish_reason": reason})
        span.end()
