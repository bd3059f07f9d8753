"""Engine names to constructors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rbee.core.errors import InvalidRequest
from rbee.engines.base import Engine, SamplingDefaults


@dataclass(frozen=True)
class EngineOptions:
    model_path: str
    device: str = "cpu"
    threads: int | None = None
    context_length: int = 2048
    fake_tokens_per_second: float = 0.0
    fake_load_seconds: float = 0.0
    fake_fail_after: int | None = None
    defaults: SamplingDefaults = field(default_factory=SamplingDefaults)


def _llama(o: EngineOptions) -> Engine:
    from rbee.engines.llama_cpp import LlamaCppEngine

    return LlamaCppEngine(
        o.model_path, device=o.device, threads=o.threads, context_length=o.context_length,
        defaults=o.defaults,
    )


def _fake(o: EngineOptions) -> Engine:
    from rbee.engines.fake import FakeEngine

    return FakeEngine(
        tokens_per_second=o.fake_tokens_per_second, load_seconds=o.fake_load_seconds,
        fail_after=o.fake_fail_after,
    )


ENGINES: dict[str, Callable[[EngineOptions], Engine]] = {"llama_cpp": _llama, "fake": _fake}


def build_engine(name: str, options: EngineOptions) -> Engine:
    try:
        factory = ENGINES[name]
    except KeyError:
        raise InvalidRequest(f"unknown engine {name!r}; known: {sorted(ENGINES)}") from None
    return factory(options)
