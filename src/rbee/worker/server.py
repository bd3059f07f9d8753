"""`rbee-worker` / `python -m rbee.worker`: load one model, serve it."""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
from pathlib import Path

from rbee.api.cluster import WorkerEvent
from rbee.core.errors import RbeeError
from rbee.core.private import private_umask
from rbee.engines.base import SamplingDefaults
from rbee.engines.registry import EngineOptions, build_engine
from rbee.tracing.daemon import endpoint_or_exit, tracing_for
from rbee.web.auth import refuse_open_listener
from rbee.web.listener import load_settings
from rbee.web.serve import serve
from rbee.worker.app import create_app
from rbee.worker.events import EventPipe
from rbee.worker.runtime import Runtime
from rbee.worker.settings import WorkerSettings
from rbee.worker.transcription import Limits


def main(argv: list[str] | None = None) -> None:
    settings = load_settings(WorkerSettings, sys.argv[1:] if argv is None else argv, "rbee-worker")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    private_umask()  # also when started on its own: whatever an engine writes stays private
    # onnxruntime otherwise writes a device id for its telemetry under ~/.cache/Microsoft on
    # import: nothing of a worker's is written outside rbee's own directories.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    # The token comes through the environment, never argv (argv is world-readable in ps).
    token = settings.token or os.environ.get("RBEE_WORKER_TOKEN") or None
    refuse_open_listener(_bound_host(settings.fd) or settings.host, token, "rbee-worker")
    traces = endpoint_or_exit("rbee-worker", os.environ)  # its hive's, inherited
    options = EngineOptions(
        model_path=settings.model_path, kind=settings.kind,
        tokenizer_path=settings.tokenizer_path, device=settings.device, threads=settings.threads,
        context_length=settings.context_length,
        fake_tokens_per_second=settings.fake_tokens_per_second,
        fake_load_seconds=settings.fake_load_seconds, fake_fail_after=settings.fake_fail_after,
        fake_sentence_seconds=settings.fake_sentence_seconds,
        fake_speech_gate=settings.fake_speech_gate,
        fake_segment_seconds=settings.fake_segment_seconds,
        fake_step_seconds=settings.fake_step_seconds,
        slots=settings.slots,
        defaults=SamplingDefaults(temperature=settings.temperature, top_p=settings.top_p,
                                  top_k=settings.top_k, repeat_penalty=settings.repeat_penalty),
    )
    events = EventPipe(settings.events_fd) if settings.events_fd is not None else None
    try:
        engine = build_engine(settings.engine, options)
    except RbeeError as exc:  # say why to the hive (its user sees it), not only in our log
        if events is not None:
            events.send(WorkerEvent(event="failed", stage="failed", error=exc.message))
        raise
    runtime = Runtime(engine, stall_after=settings.stall_timeout,
                      on_event=events.send if events else None)
    if settings.fd is not None:
        _listen(settings.fd)
    uploads = Limits(Path(settings.upload_dir or tempfile.gettempdir()),
                     settings.max_upload_bytes, settings.max_audio_seconds)
    tracing = tracing_for("rbee-worker", traces, instance=settings.worker_id)
    app = create_app(runtime, model=settings.model, token=token, max_n=settings.max_n,
                     uploads=uploads, tracing=tracing, stall_limit=settings.stall_limit)
    serve(app, host=settings.host, port=settings.port, fd=settings.fd,
          parent_pid=settings.parent_pid, limits=settings)


def _bound_host(fd: int | None) -> str | None:
    """The address of the socket a hive handed us: that, not --host, is what we listen on."""
    if fd is None:
        return None
    # dup: the socket object must not close the inherited fd when it is collected.
    with socket.socket(fileno=os.dup(fd)) as sock:
        return str(sock.getsockname()[0])


def _listen(fd: int) -> None:
    """Listen on the hive's socket now, before the engine loads.

    "ready" goes out the moment the engine is loaded, which may be before uvicorn listens
    (it starts after the app's start-up): a connection made then must wait in the backlog
    until uvicorn accepts it, not be refused. uvicorn's own listen() later only resizes it.
    """
    with socket.socket(fileno=os.dup(fd)) as sock:
        sock.listen(socket.SOMAXCONN)
