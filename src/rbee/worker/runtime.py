"""The worker's engine, its loading state, and the thread bridge to asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TypeVar

from rbee.api.cluster import WorkerEvent
from rbee.core.clock import Clock, SystemClock
from rbee.core.detached import run_detached
from rbee.core.errors import EngineError, WorkerUnavailable, WrongModelKind
from rbee.core.states import WorkerState
from rbee.engines.base import (
    AnyEngine,
    Embedder,
    Engine,
    GenerationRequest,
    ImageJob,
    ImageMaker,
    ImageStep,
    Output,
    Picture,
    Segment,
    Speaker,
    Transcriber,
    TranscriptionOptions,
    VideoMaker,
    VideoSpec,
    VideoStep,
)
from rbee.worker.batcher import Batcher

logger = logging.getLogger(__name__)
T = TypeVar("T")
_END = object()
EventSink = Callable[[WorkerEvent], None]  # load events to whoever started us (the hive)


def _no_events(_: WorkerEvent) -> None:
    return None


class Runtime:
    """Owns one engine. Up to `engine.slots` generations run at once (each on its own
    thread); others wait their turn."""

    def __init__(self, engine: AnyEngine, *, clock: Clock | None = None,
                 stall_after: float = 120.0, on_event: EventSink | None = None) -> None:
        self.engine = engine
        self._on_event = on_event or _no_events
        self.state = WorkerState.STARTING
        self.progress = 0.0
        self.stage = "starting"
        self.error: str | None = None
        self.load = 0
        self.slots = engine.slots
        self._engine_slots = threading.BoundedSemaphore(self.slots)
        self._clock = clock or SystemClock()
        self._stall_after = stall_after
        self._last_output = self._clock.monotonic()  # while busy: when the engine last spoke
        self._batcher = Batcher(self._embed_now)

    def stalled_for(self) -> float | None:
        """Seconds the engine has produced nothing while requests wait on it, once that is
        past `stall_after` (None otherwise). A stuck engine leaves the HTTP side answering, so
        /health says so and the queen's liveness takes the worker out of routing."""
        if self.load == 0:
            return None
        silent = self._clock.monotonic() - self._last_output
        return silent if silent > self._stall_after else None

    def _on_progress(self, fraction: float, stage: str) -> None:
        # On the engine's loading thread: the sink must be (EventPipe is) thread-safe.
        self.progress = min(1.0, max(0.0, fraction))
        self.stage = stage
        self._on_event(WorkerEvent(event="progress", progress=self.progress, stage=stage))

    async def load_engine(self) -> None:
        self.state = WorkerState.LOADING
        try:
            # Loading cannot be cancelled: on a thread the worker's exit does not wait for
            # (core.detached), so a SIGTERM mid-load ends the worker and frees its memory.
            await run_detached(lambda: self.engine.load(self._on_progress), name="load-engine")
        except Exception as exc:
            self.state = WorkerState.CRASHED
            self.error = str(exc) or type(exc).__name__
            logger.error("model failed to load: %s", exc)
            self._on_event(WorkerEvent(event="failed", progress=self.progress, stage="failed",
                                       error=self.error))
            return
        self.state = WorkerState.READY
        self._on_event(WorkerEvent(event="ready", progress=1.0, stage="ready",
                                   slots=self.slots))

    def require_ready(self) -> None:
        """Raise before a response starts: once a stream's headers are out, the queen can no
        longer fail over to another worker."""
        if self.state is not WorkerState.READY:
            raise WorkerUnavailable(f"worker is {self.state.value}: {self.stage}")

    def generator(self) -> Engine:
        """The engine, when it generates text (a 400 for another kind of model)."""
        if self.engine.kind != "chat":
            raise _wrong_kind(self.engine.kind, "does not chat or complete text")
        return self.engine

    def embedder(self) -> Embedder:
        """The engine, when it makes embeddings (a 400 for another kind of model)."""
        if self.engine.kind != "embedding":
            raise _wrong_kind(self.engine.kind, "makes no embeddings")
        return self.engine

    def speaker(self) -> Speaker:
        """The engine, when it speaks (a 400 for another kind of model)."""
        if self.engine.kind != "speech":
            raise _wrong_kind(self.engine.kind, "does not speak")
        return self.engine

    def transcriber(self) -> Transcriber:
        """The engine, when it transcribes (a 400 for another kind of model)."""
        if self.engine.kind != "transcription":
            raise _wrong_kind(self.engine.kind, "does not transcribe or translate audio")
        return self.engine

    def video_maker(self) -> VideoMaker:
        """The engine, when it makes videos (a 400 for another kind of model)."""
        if self.engine.kind != "video":
            raise _wrong_kind(self.engine.kind, "makes no videos")
        return self.engine

    async def embed(self, sequences: list[list[int]]) -> list[list[float]]:
        """The request's vectors; requests that come together share one engine call."""
        self.embedder()
        self.require_ready()
        if self.load == 0:
            self._last_output = self._clock.monotonic()
        self.load += 1
        try:
            return await self._batcher.embed(sequences)
        finally:
            self.load -= 1

    async def _embed_now(self, sequences: list[list[int]]) -> list[list[float]]:
        """One call of the embedder, on a thread, in one of its slots."""
        embedder = self.embedder()

        def run() -> list[list[float]]:
            with self._engine_slots:
                return embedder.embed(sequences)

        try:
            return await asyncio.to_thread(run)
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(f"engine failed: {exc}") from exc
        finally:
            self._last_output = self._clock.monotonic()

    def generate(self, request: GenerationRequest) -> AsyncIterator[Output]:
        """Stream the engine's output; closing this iterator cancels the generation."""
        def start() -> Callable[[threading.Event], Iterable[Output]]:
            engine = self.generator()
            self.require_ready()
            return lambda cancel: engine.generate(request, cancel)

        return self._on_thread("generate", start)

    def image_maker(self) -> ImageMaker:
        """The engine, when it makes images (a 400 for another kind of model)."""
        if self.engine.kind != "image":
            raise _wrong_kind(self.engine.kind, "makes no images")
        return self.engine

    def images(self, job: ImageJob) -> AsyncIterator[ImageStep | Picture]:
        """Each denoising step's progress, and each picture when it is done; closing this
        iterator stops the pipeline at its next step."""
        def start() -> Callable[[threading.Event], Iterable[ImageStep | Picture]]:
            maker = self.image_maker()
            self.require_ready()
            return lambda cancel: maker.make(job, cancel)

        return self._on_thread("images", start)

    def speak(self, text: str, voice: str, speed: float) -> AsyncIterator[bytes]:
        """The samples of each sentence as it is made; closing this iterator stops the
        engine after its current sentence."""
        def start() -> Callable[[threading.Event], Iterable[bytes]]:
            speaker = self.speaker()
            self.require_ready()
            return lambda cancel: speaker.speak(text, voice, speed, cancel)

        return self._on_thread("speak", start)

    def transcribe(self, samples: bytes, options: TranscriptionOptions
                   ) -> AsyncIterator[Segment]:
        """Each segment as it is decoded; closing this iterator stops the engine after its
        current segment."""
        def start() -> Callable[[threading.Event], Iterable[Segment]]:
            transcriber = self.transcriber()
            self.require_ready()
            return lambda cancel: transcriber.transcribe(samples, options, cancel)

        return self._on_thread("transcribe", start)

    def make_video(self, spec: VideoSpec) -> AsyncIterator[VideoStep]:
        """Each denoising step as it ends; the MP4 is whole at `spec.out` when this ends.
        Closing this iterator stops the engine at the end of its current step."""
        def start() -> Callable[[threading.Event], Iterable[VideoStep]]:
            maker = self.video_maker()
            self.require_ready()
            return lambda cancel: maker.make(spec, cancel)

        return self._on_thread("video", start)

    async def _on_thread(self, name: str,
                         start: Callable[[], Callable[[threading.Event], Iterable[T]]]
                         ) -> AsyncIterator[T]:
        """The items an engine call makes on its own thread (within the engine's slots),
        handed to asyncio as they come. `start` runs at the first item asked for (a worker
        not ready refuses then); closing this iterator sets the call's cancel event."""
        produce_items = start()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()

        def send(item: object) -> None:
            # A cancelled call may finish its item after the loop closed (shutdown):
            # nobody is listening any more, which is fine.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def produce() -> None:
            try:
                with self._engine_slots:
                    for item in produce_items(cancel):
                        send(item)
                        if cancel.is_set():
                            break
            except Exception as exc:
                send(exc)
            finally:
                send(_END)

        if self.load == 0:  # idle until now: the silence starts here, not at the last answer
            self._last_output = self._clock.monotonic()
        self.load += 1
        threading.Thread(target=produce, name=name, daemon=True).start()
        try:
            while (item := await queue.get()) is not _END:
                self._last_output = self._clock.monotonic()
                if isinstance(item, EngineError):
                    raise item
                if isinstance(item, Exception):
                    raise EngineError(f"engine failed: {item}") from item
                yield item  # type: ignore[misc]
        finally:
            cancel.set()
            self.load -= 1

    def close(self) -> None:
        self.engine.close()


# Where each kind of model is served, for the 400 a request of another kind gets.
_ENDPOINTS = {"chat": ("a chat model", "/v1/chat/completions"),
              "embedding": ("an embedding model", "/v1/embeddings"),
              "speech": ("a speech model", "/v1/audio/speech"),
              "transcription": ("a transcription model", "/v1/audio/transcriptions"),
              "image": ("an image model", "/v1/images/generations"),
              "video": ("a video model", "/v1/videos")}


def _wrong_kind(kind: str, refusal: str) -> WrongModelKind:
    what, endpoint = _ENDPOINTS[kind]
    return WrongModelKind(f"this worker's model is {what}; it {refusal}: use {endpoint}",
                          param="model")
