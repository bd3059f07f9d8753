"""llama.cpp adapter (GGUF) through llama-cpp-python.

We format chat prompts ourselves with the GGUF's embedded template so that we know the
exact prompt token count for `usage`, and run the token loop ourselves (llama_decode.py):
grammar-constrained sampling, logprobs and exact token counts need it.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from typing import Any, Literal

from rbee.core.errors import EngineError, InvalidRequest
from rbee.engines.base import (
    DEFAULT_MAX_TOKENS,
    GenerationRequest,
    Output,
    ProgressFn,
    SamplingDefaults,
)
from rbee.engines.llama_decode import Decoder, grammar_for
from rbee.engines.llama_sampler import Sampling, TokenSampler, resolve
from rbee.engines.tool_format import split_calls, system_prompt, with_tools

# Used when a GGUF carries no chat template (ChatML, what SmolLM2 and many others use).
_CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def default_threads() -> int:
    """Physical cores minus one for the engine (the daemons need a core), at least one.

    llama.cpp's own default evaluates prompts on every logical core; on a small or busy
    machine that collapses throughput (measured: bench/engine_overhead.py).
    """
    import psutil

    return max(1, (psutil.cpu_count(logical=False) or 1) - 1)


def gpu_layers_for(device: str) -> int:
    """All layers on the accelerator for cuda/metal; none on the CPU."""
    return 0 if device == "cpu" else -1


class LlamaCppEngine:
    name = "llama_cpp"
    kind: Literal["chat"] = "chat"
    vision = False  # no multimodal projector is loaded (see docs: mmproj)
    slots = 1  # llama-cpp-python's Llama is not thread-safe: one generation at a time

    def __init__(
        self, model_path: str, *, device: str = "cpu", threads: int | None = None,
        context_length: int = 2048, defaults: SamplingDefaults | None = None,
    ) -> None:
        self._path = model_path
        self._device = device
        self._threads = threads or default_threads()
        self._ctx = context_length
        self._defaults = defaults or SamplingDefaults()
        self._llm: Any = None
        self._format: Any = None
        self._snapshot: Any = None
        self._preamble: list[int] = []
        self._preamble_intact = False

    def load(self, progress: ProgressFn) -> None:
        progress(0.05, "importing llama.cpp")
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as exc:  # pragma: no cover - install problem
            raise EngineError(f"llama-cpp-python is not installed: {exc}") from exc
        progress(0.2, "loading weights")
        try:
            self._llm = Llama(
                model_path=self._path, n_ctx=self._ctx, n_threads=self._threads,
                n_threads_batch=self._threads, n_gpu_layers=gpu_layers_for(self._device),
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"llama.cpp could not load {self._path}: {exc}") from exc
        meta: dict[str, str] = self._llm.metadata
        template = meta.get("tokenizer.chat_template") or _CHATML
        eos = self._token_text(meta.get("tokenizer.ggml.eos_token_id"))
        bos = self._token_text(meta.get("tokenizer.ggml.bos_token_id"))
        self._format = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        progress(0.9, "evaluating the chat preamble")
        self._snapshot = self._cache_preamble()
        progress(1.0, "ready")

    def _cache_preamble(self) -> Any:
        """Evaluate what every chat prompt starts with (often a default system prompt) once.

        Each request restores this state instead of starting empty: warm and cold requests
        then split the prompt the same way, so a seeded request answers the same on both,
        and the preamble is never evaluated twice.
        """
        one = self._tokens(self._format(messages=[{"role": "user", "content": "a"}]).prompt)
        two = self._tokens(self._format(messages=[{"role": "user", "content": "b"}]).prompt)
        common = 0
        for x, y in zip(one, two, strict=False):
            if x != y:
                break
            common += 1
        self._llm.reset()
        self._preamble = one[:common] if common > 1 else []
        if self._preamble:
            self._llm.eval(self._preamble)
        self._preamble_intact = True
        return self._llm.save_state()

    def _rewind(self, tokens: list[int]) -> None:
        """Leave exactly the cached preamble in the KV cache before a new prompt.

        Cheap path: the cache still holds the preamble (the last prompt began with it), so
        cutting `n_tokens` back makes llama.cpp drop everything after it. Otherwise restore the
        saved state (~20 ms): a prompt that diverged inside the preamble overwrote part of it.
        """
        pre = self._preamble
        starts = tokens[: len(pre)] == pre
        if starts and self._preamble_intact:
            self._llm.n_tokens = min(self._llm.n_tokens, len(pre))
        elif not pre or tokens[:1] != pre[:1]:
            self._llm.n_tokens = 0  # shares nothing with the preamble: start empty, no restore
        else:
            self._llm.load_state(self._snapshot)
        self._preamble_intact = starts

    def _tokens(self, text: str) -> list[int]:
        tokens: list[int] = self._llm.tokenize(text.encode(), add_bos=True, special=True)
        return tokens

    def _token_text(self, token_id: str | None) -> str:
        if token_id is None:
            return ""
        raw: bytes = self._llm.detokenize([int(token_id)], special=True)
        return raw.decode("utf-8", errors="ignore")

    def _prompt(self, request: GenerationRequest) -> tuple[str, list[str]]:
        if request.kind == "completion":
            return request.prompt, list(request.stop)
        messages = request.messages
        if request.calls_tools():
            prompt = system_prompt(request.tools, request.tool_name,
                                   request.tool_mode == "required")
            messages = with_tools(messages, prompt)
        formatted = self._format(messages=messages)
        extra = formatted.stop if isinstance(formatted.stop, list) else [formatted.stop]
        return formatted.prompt, [*request.stop, *[s for s in extra if s]]

    def generate(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[Output]:
        if self._llm is None:
            raise EngineError("engine not loaded")
        prompt, stop = self._prompt(request)
        tokens = self._tokens(prompt)
        if len(tokens) + 1 > self._ctx:
            raise EngineError(f"prompt of {len(tokens)} tokens exceeds the context of "
                              f"{self._ctx}")
        if any(not 0 <= t < self._llm.n_vocab() for t in request.logit_bias):
            raise InvalidRequest(f"logit_bias names a token id outside this model's "
                                 f"vocabulary (0..{self._llm.n_vocab() - 1})",
                                 param="logit_bias")
        # Start from the cached preamble, never from the previous request's cache: llama.cpp's
        # prefix reuse would make a seeded request answer differently warm than cold.
        self._rewind(tokens)
        sampler = TokenSampler(self._llm._model, self._llm.ctx, self._sampling(request),
                               grammar_for(request))
        try:
            outputs = Decoder(self._llm, sampler, stop, request.logprobs).run(
                tokens, self._limit(request, len(tokens)), cancel)
            yield from split_calls(outputs) if request.calls_tools() else outputs
        finally:
            sampler.close()

    def _limit(self, request: GenerationRequest, prompt_tokens: int) -> int:
        return min(request.max_tokens or DEFAULT_MAX_TOKENS, self._ctx - prompt_tokens)

    def _sampling(self, request: GenerationRequest) -> Sampling:
        temperature, top_p, top_k = resolve(self._defaults, request.temperature,
                                            request.top_p, request.top_k)
        # No seed: a fresh one (llama-cpp-python derives it from the last, which repeats the
        # same "random" answers after every restart). 0xFFFFFFFF means "random" to llama.cpp.
        seed = secrets.randbits(32) if request.seed is None else request.seed % 2**32
        return Sampling(temperature=temperature, top_p=top_p, top_k=top_k,
                        repeat_penalty=self._defaults.repeat_penalty,
                        presence_penalty=request.presence_penalty,
                        frequency_penalty=request.frequency_penalty,
                        seed=min(seed, 0xFFFFFFFE), logit_bias=request.logit_bias)

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None
