"""The Engine protocol every adapter implements.

Engines are synchronous and run on a worker thread; the worker bridges them to asyncio.
Cancellation is cooperative: the engine checks `cancel` between tokens.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from rbee.core.kinds import MODEL_KINDS as MODEL_KINDS  # re-exported: engines name it here
from rbee.core.kinds import ModelKind as ModelKind

ProgressFn = Callable[[float, str], None]
ToolMode = Literal["none", "auto", "required"]


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call; `parameters` is normalized by json_schema.check."""

    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True)
class GenerationRequest:
    """One choice to generate. Messages arrive as plain text turns: the worker has already
    written tool calls and tool results into them (engines.tool_format)."""

    kind: Literal["chat", "completion"]
    messages: list[dict[str, str]] = field(default_factory=list)
    prompt: str = ""
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    # None: no logprobs; k: each token's own logprob plus its k most likely alternatives.
    logprobs: int | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_mode: ToolMode = "none"
    tool_name: str | None = None  # tool_choice naming one function: that one is called
    parallel_tool_calls: bool = True
    json_schema: dict[str, Any] | None = None  # the answer must be JSON valid against it

    def calls_tools(self) -> bool:
        return bool(self.tools) and self.tool_mode != "none"


@dataclass(frozen=True)
class SamplingDefaults:
    """A model's own defaults for fields the request leaves out (Ollama's Modelfile PARAMETERs)."""

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    repeat_penalty: float = 1.1


@dataclass(frozen=True)
class TokenLogprob:
    """One sampled token: its bytes, log-probability, and the most likely alternatives."""

    token: bytes
    logprob: float
    top: tuple[tuple[bytes, float], ...] = ()


@dataclass(frozen=True)
class Piece:
    """Streamed text: usually one token's, several when a character spans tokens."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class ToolCallPiece:
    """Part of tool call `index`: its name on the first piece, then its arguments' JSON text
    piece by piece (concatenated, they are the whole arguments object)."""

    index: int
    arguments: str
    name: str | None = None


@dataclass(frozen=True)
class Finish:
    """The last item of every generation."""

    reason: Literal["stop", "length", "cancelled", "tool_calls"]
    prompt_tokens: int
    completion_tokens: int


Output = Piece | ToolCallPiece | Finish


class Engine(Protocol):
    name: str
    kind: Literal["chat"]
    # Whether image content parts can be given (a vision projector is loaded).
    vision: bool
    # Requests it serves at once: the worker runs up to this many `generate` calls at the
    # same time, each on its own thread, and advertises it so the queen admits as many.
    slots: int

    def load(self, progress: ProgressFn) -> None:
        """Load weights; report progress in 0..1 with a stage name."""
        ...

    def generate(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[Output]:
        """Yield Pieces, then exactly one Finish."""
        ...

    def close(self) -> None: ...


class Embedder(Protocol):
    """An embedding model: text to token ids, token ids to unit vectors.

    `tokenize` and `embed` are separate so the worker can check every input against
    `max_tokens` (and count usage) before any of them runs.
    """

    name: str
    kind: Literal["embedding"]
    slots: int
    dimensions: int  # the length of every vector
    max_tokens: int  # the model's window, special tokens included
    vocab_size: int  # token-id inputs must be below it

    def load(self, progress: ProgressFn) -> None: ...

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids as the model reads them (special tokens included)."""
        ...

    def wrap(self, ids: Sequence[int]) -> list[int]:
        """Token ids given by a client (no special tokens) as the model reads them."""
        ...

    def embed(self, batch: Sequence[Sequence[int]]) -> list[list[float]]:
        """One L2-normalised vector of `dimensions` floats per sequence of the batch."""
        ...

    def close(self) -> None: ...


class Speaker(Protocol):
    """A text-to-speech model: text to 16-bit mono PCM, one sentence at a time.

    `speak` yields each sentence's samples as soon as they are made, so the worker can send
    the first audio before the last sentence is synthesised; it stops between sentences once
    `cancel` is set.
    """

    name: str
    kind: Literal["speech"]
    slots: int
    sample_rate: int  # Hz of the samples `speak` yields
    voices: tuple[str, ...]  # the voices it speaks with; the first is the default

    def load(self, progress: ProgressFn) -> None: ...

    def speak(self, text: str, voice: str, speed: float,
              cancel: threading.Event) -> Iterator[bytes]:
        """Little-endian int16 mono samples at `sample_rate`, one chunk per sentence;
        `speed` 2.0 is twice as fast (OpenAI's meaning)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds from the audio's start
    end: float


@dataclass(frozen=True)
class Segment:
    """One stretch of transcribed speech, as Whisper cuts it."""

    id: int
    start: float  # seconds
    end: float
    text: str  # with its leading space, as Whisper writes it
    seek: int = 0  # where its 30-second window starts, in 10 ms frames (Whisper's unit)
    tokens: tuple[int, ...] = ()
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    words: tuple[Word, ...] = ()
    language: str = ""  # ISO-639-1, as asked for or detected


@dataclass(frozen=True)
class TranscriptionOptions:
    task: Literal["transcribe", "translate"] = "transcribe"
    language: str | None = None  # ISO-639-1; None: the model detects it
    prompt: str | None = None  # earlier text, to carry its spelling and style
    temperature: float = 0.0  # 0: greedy, with the engine's own fallback ladder
    words: bool = False  # word timestamps
    vad: bool = False  # cut at silences first (voice activity detection)


class Transcriber(Protocol):
    """A speech-to-text model: 16 kHz mono samples to segments of text.

    `transcribe` yields each segment as soon as it is decoded, so a stream can send text
    before the whole file is done; it stops between segments once `cancel` is set.
    """

    name: str
    kind: Literal["transcription"]
    slots: int
    # The languages it reads (ISO-639-1); a one-language model (Whisper's .en models)
    # translates nothing: its "translation" of English speech is the transcription.
    languages: tuple[str, ...]

    def load(self, progress: ProgressFn) -> None: ...

    def transcribe(self, samples: bytes, options: TranscriptionOptions,
                   cancel: threading.Event) -> Iterator[Segment]:
        """`samples`: little-endian int16 mono at TRANSCRIPTION_RATE (16 kHz, Whisper's own)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Picture:
    """A decoded picture: 8-bit RGB (`mode` "RGB") or greyscale ("L") rows, no padding."""

    width: int
    height: int
    pixels: bytes
    mode: Literal["RGB", "L"] = "RGB"


@dataclass(frozen=True)
class ImageJob:
    """The images one request asks for. `size` None: the pipeline's default. An edit has
    `image` and `mask` (white where to paint, black where the image stays), both of the
    image's size."""

    prompt: str
    n: int = 1
    size: tuple[int, int] | None = None
    steps: int | None = None
    seed: int | None = None
    negative_prompt: str | None = None
    guidance_scale: float | None = None
    image: Picture | None = None
    mask: Picture | None = None


@dataclass(frozen=True)
class ImageStep:
    """Progress: image `index` (of the request's n) finished denoising step `step` of
    `steps`."""

    index: int
    step: int
    steps: int


class ImageMaker(Protocol):
    """A text-to-image model (a diffusers pipeline): pictures from a prompt, step by step.

    `make` yields an ImageStep after each denoising step and a Picture when each image is
    done (n pictures in order); it stops at the next step once `cancel` is set.
    """

    name: str
    kind: Literal["image"]
    slots: int
    can_edit: bool  # whether an inpainting pipeline exists for the model (images.edit)

    def load(self, progress: ProgressFn) -> None: ...

    def default_size(self) -> tuple[int, int]: ...

    def make(self, job: ImageJob, cancel: threading.Event) -> Iterator[ImageStep | Picture]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class VideoSpec:
    """One video to make: `frames` RGB frames of `width`×`height`, written as an MP4 at `fps`
    to `out` (the worker's name for it; the engine writes only there)."""

    prompt: str
    width: int
    height: int
    frames: int
    fps: int
    steps: int
    out: str
    seed: int | None = None
    negative_prompt: str | None = None


@dataclass(frozen=True)
class VideoStep:
    """Denoising step `step` (1-based) of `steps` is done; step 0: the video was started."""

    step: int
    steps: int


class VideoMaker(Protocol):
    """A text-to-video model. `make` yields VideoStep(0, steps) as it starts (the worker's
    answer begins then: a long first step is not a silent one), one after each denoising step,
    and returns once the MP4 is whole at `spec.out`; once `cancel` is set it stops at the end
    of the current step and returns without writing the file."""

    name: str
    kind: Literal["video"]
    slots: int

    def load(self, progress: ProgressFn) -> None: ...

    def make(self, spec: VideoSpec, cancel: threading.Event) -> Iterator[VideoStep]: ...

    def close(self) -> None: ...


TRANSCRIPTION_RATE = 16_000  # Hz of the samples a Transcriber takes
AnyEngine = Engine | Embedder | Speaker | Transcriber | ImageMaker | VideoMaker
DEFAULT_MAX_TOKENS = 256
MAX_SLOTS = 1024  # a bound on what any worker may advertise (and a user may ask for)
