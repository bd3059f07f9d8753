"""What each job operation does. Each returns the job's result (also sent as `result`)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from pydantic import BaseModel

from rbee.api.cluster import WorkerInfo
from rbee.api.images import MEDIA_TYPES
from rbee.api.jobs import (
    EmbedOp,
    ExplainRequest,
    HiveGetOp,
    HiveInstallOp,
    HiveListOp,
    HiveRefreshOp,
    HiveStartOp,
    HiveStatusOp,
    HiveStopOp,
    HiveUninstallOp,
    ImageOp,
    InferOp,
    ModelGetOp,
    ModelListOp,
    ScriptActivateOp,
    ScriptDeleteOp,
    ScriptGetOp,
    ScriptHistoryOp,
    ScriptListOp,
    ScriptRollbackOp,
    ScriptSaveOp,
    ScriptTestOp,
    SpeakOp,
    SshTestOp,
    StatusOp,
    TranscribeOp,
    VideoOp,
    WorkerListOp,
    WorkerSpawnOp,
    WorkerStopOp,
)
from rbee.core.errors import WorkerUnavailable, WorkerUnreachable
from rbee.models.catalog import (
    ALIASES,
    BUILTINS,
    DEFAULT_EMBEDDING_MODEL,
    builtin_path,
    parse_ref,
    require_kind,
)
from rbee.queen.admission import Admission
from rbee.queen.dispatch import Dispatcher, Hints, placement_hints
from rbee.queen.failover import with_failover
from rbee.queen.fleet import Fleet
from rbee.queen.job_runner import job_slot
from rbee.queen.jobs import JobContext
from rbee.queen.policy import JobFacts
from rbee.queen.quotas import Quotas, Used
from rbee.queen.registry import Registry
from rbee.queen.relay import Relay
from rbee.queen.scripts import Scripts, compile_script, explain
from rbee.queen.speak_job import SpeakRunner
from rbee.queen.transcribe_job import TranscribeRunner
from rbee.queen.video_job import VideoRunner
from rbee.storage.artifacts import ArtifactStore

Result = dict[str, Any] | None


class Operations:
    def __init__(self, registry: Registry, dispatcher: Dispatcher, relay: Relay, fleet: Fleet,
                 admission: Admission, scripts: Scripts, default_model: str,
                 video: VideoRunner | None = None,
                 artifacts: ArtifactStore | None = None,
                 speak: SpeakRunner | None = None,
                 transcribe: TranscribeRunner | None = None,
                 quotas: Quotas | None = None) -> None:
        self._admission = admission
        self._artifacts = artifacts
        self._quotas = quotas
        self._registry = registry
        self._dispatcher = dispatcher
        self._relay = relay
        self._fleet = fleet
        self._default_model = default_model
        self._table: dict[type[BaseModel], Callable[[JobContext, Any],
                                                    Awaitable[Result] | Result]] = {
            InferOp: self.infer, EmbedOp: self.embed, ImageOp: self.image,
            StatusOp: self.status,
            WorkerSpawnOp: self.worker_spawn, WorkerListOp: self.worker_list,
            WorkerStopOp: self.worker_stop,
            ModelListOp: self.model_list, ModelGetOp: self.model_get,
            HiveListOp: self.hive_list, HiveGetOp: self.hive_get,
            HiveStatusOp: lambda ctx, op: fleet.status(op.hive_id, ctx),
            SshTestOp: lambda ctx, op: fleet.ssh_test(op.hive_id, ctx),
            HiveInstallOp: lambda ctx, op: fleet.install(op.hive_id, ctx),
            HiveUninstallOp: lambda ctx, op: fleet.uninstall(op.hive_id, ctx),
            HiveStartOp: lambda ctx, op: fleet.start(op.hive_id, ctx),
            HiveStopOp: lambda ctx, op: fleet.stop(op.hive_id, ctx),
            HiveRefreshOp: lambda ctx, op: fleet.refresh(op.hive_id, ctx),
            ScriptSaveOp: lambda ctx, op: scripts.save(op.name, op.source, op.activate,
                                                       _saved_by(ctx)),
            ScriptGetOp: lambda ctx, op: (scripts.describe(op.name) if op.version is None
                                          else scripts.version(op.name, op.version)),
            ScriptHistoryOp: lambda ctx, op: scripts.history(op.name),
            ScriptRollbackOp: lambda ctx, op: scripts.rollback(op.name, op.version),
            ScriptListOp: lambda ctx, op: {"scripts": scripts.list()},
            ScriptDeleteOp: lambda ctx, op: scripts.delete(op.name),
            ScriptActivateOp: lambda ctx, op: scripts.activate(op.name),
            ScriptTestOp: lambda ctx, op: self.explain(op),
        }
        if video is not None:
            self._table[VideoOp] = video.run
        if speak is not None:
            self._table[SpeakOp] = speak.run
        if transcribe is not None:
            self._table[TranscribeOp] = transcribe.run

    async def run(self, ctx: JobContext, op: BaseModel) -> Result:
        result = self._table[type(op)](ctx, op)
        return await result if inspect.isawaitable(result) else result

    async def explain(self, req: ExplainRequest) -> dict[str, Any]:
        ref = parse_ref(req.model or self._default_model)
        hints = Hints(hive_id=req.hive_id, device=req.device, mode=req.placement,
                      job=JobFacts(tenant=req.tenant, priority=req.priority))
        script = await compile_script(req.source, "dry-run") if req.source else None
        return await explain(self._dispatcher, self._registry, ref, hints, script)

    async def infer(self, ctx: JobContext, op: InferOp) -> Result:
        ref = require_kind(parse_ref(op.model or self._default_model), "chat")
        hints = placement_hints(op)
        started = time.perf_counter()
        body: dict[str, Any] = {
            "model": ref.name, "messages": op.chat_messages(), "stream": True,
            "stream_options": {"include_usage": True}, **op.chat_fields()}
        sent = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        calls = ToolCalls()
        logprobs: list[Any] = []
        usage: dict[str, int] = {}
        finish = None

        async def attempt(worker: WorkerInfo) -> WorkerInfo:
            nonlocal first, usage, finish, sent
            ctx.narrate("infer", f"{ref.name} on {worker.id} ({worker.hive_id} {worker.device})")
            sent = time.perf_counter()
            try:
                async with contextlib.aclosing(self._relay.stream_events(worker, body)) as chunks:
                    async for chunk in chunks:
                        if chunk.get("usage"):
                            usage = chunk["usage"]
                        for choice in chunk.get("choices", ()):
                            delta = choice.get("delta", {})
                            text = delta.get("content")
                            if text:
                                first = first or time.perf_counter()
                                ctx.token(text, len(parts))
                                parts.append(text)
                            calls.add(delta.get("tool_calls"))
                            logprobs.extend((choice.get("logprobs") or {}).get("content") or ())
                            finish = choice.get("finish_reason") or finish
            except WorkerUnreachable as exc:
                if parts or calls:  # output already went out: no silent restart mid-answer
                    raise WorkerUnavailable(f"{exc.message} (mid-stream)") from exc
                raise
            return worker

        async with self._slot(ctx, ref.name, op.priority, lambda: _used(usage)):
            worker = await with_failover(self._dispatcher, self._registry, ref, hints, ctx,
                                         attempt)
        end = time.perf_counter()
        decode = end - (first or end)
        n = usage.get("completion_tokens", len(parts))
        for call in calls.done():
            fn = call["function"]
            ctx.narrate("tool_call", f"{fn['name']}({fn['arguments']})", actor="worker")
        return {
            "text": "".join(parts), "model": ref.name, "worker_id": worker.id,
            "finish_reason": finish, "usage": usage,
            **({"tool_calls": calls.done()} if calls else {}),
            **({"logprobs": logprobs} if op.logprobs else {}),
            "timings": {
                "ttft_ms": round(((first or end) - sent) * 1000, 2),
                "queue_ms": round((sent - started) * 1000, 2),
                "total_ms": round((end - started) * 1000, 2),
                "tokens_per_s": round((n - 1) / decode, 2) if n > 1 and decode > 0 else None,
            },
        }

    async def embed(self, ctx: JobContext, op: EmbedOp) -> Result:
        ref = require_kind(parse_ref(op.model or DEFAULT_EMBEDDING_MODEL), "embedding")
        hints = placement_hints(op)
        body: dict[str, Any] = {"model": ref.name, "input": op.input, "encoding_format": "float"}
        if op.dimensions is not None:
            body["dimensions"] = op.dimensions
        started = time.perf_counter()
        sent = started

        async def attempt(worker: WorkerInfo) -> tuple[WorkerInfo, dict[str, Any]]:
            nonlocal sent
            ctx.narrate("embed", f"{ref.name} on {worker.id} ({worker.hive_id} {worker.device})")
            sent = time.perf_counter()
            return worker, await self._relay.call_json(worker, "/v1/embeddings", body)

        answer: dict[str, Any] = {}
        async with self._slot(ctx, ref.name, op.priority,
                              lambda: _used(answer.get("usage") or {})):
            worker, answer = await with_failover(self._dispatcher, self._registry, ref, hints,
                                                 ctx, attempt)
        end = time.perf_counter()
        data = answer.get("data") or []
        return {"model": ref.name, "worker_id": worker.id,
                "dimensions": len(data[0]["embedding"]) if data else 0,
                "data": [{"index": d["index"], "embedding": d["embedding"]} for d in data],
                "usage": answer.get("usage", {}),
                "timings": {"queue_ms": round((sent - started) * 1000, 2),
                            "embed_ms": round((end - sent) * 1000, 2),
                            "total_ms": round((end - started) * 1000, 2)}}

    async def image(self, ctx: JobContext, op: ImageOp) -> Result:
        """Pictures, with a `progress` event after every denoising step of each."""
        ref = require_kind(parse_ref(op.model), "image")
        hints = placement_hints(op)
        body = {**op.fields(), "model": ref.name, "stream": True}
        started = time.perf_counter()
        sent = started
        images: list[dict[str, Any]] = []
        steps = 0

        async def attempt(worker: WorkerInfo) -> WorkerInfo:
            nonlocal sent, steps
            ctx.narrate("image", f"{ref.name} on {worker.id} ({worker.hive_id} {worker.device})")
            sent = time.perf_counter()
            events = self._relay.stream_events(worker, body, path="/v1/images/generations")
            try:
                async with contextlib.aclosing(events) as stream:
                    async for event in stream:
                        if event.get("type") == "image_generation.completed":
                            images.append(await self._store_image(ctx, event, len(images)))
                        else:
                            steps += _image_progress(ctx, event, op.n)
            except WorkerUnreachable as exc:
                if images:  # pictures were made: not painted all over again elsewhere
                    raise WorkerUnavailable(f"{exc.message} (mid-stream)") from exc
                raise
            return worker

        # Pictures are charged by the count (pipelines report no usage): those made.
        async with self._slot(ctx, ref.name, op.priority, lambda: Used(images=len(images))):
            worker = await with_failover(self._dispatcher, self._registry, ref, hints, ctx,
                                         attempt)
        end = time.perf_counter()
        return {"model": ref.name, "worker_id": worker.id, "images": images, "steps": steps,
                "timings": {"queue_ms": round((sent - started) * 1000, 2),
                            "paint_ms": round((end - sent) * 1000, 2),
                            "total_ms": round((end - started) * 1000, 2)}}
    def _slot(self, ctx: JobContext, model: str, priority: str,
              used: Callable[[], Used | None]) -> contextlib.AbstractAsyncContextManager[None]:
        return job_slot(self._admission, self._quotas, ctx, model, priority, used)

    async def _store_image(self, ctx: JobContext, event: dict[str, Any], index: int
                           ) -> dict[str, Any]:
        """A finished picture into the artifact store, owned by the job (deleted with it,
        under the same retention): the result and the job's stream name it, never carry it."""
        if self._artifacts is None:
            raise WorkerUnavailable("this queen has no artifact store for the pictures")
        fmt = event.get("output_format")
        if fmt not in MEDIA_TYPES:
            raise WorkerUnavailable(f"the worker sent a picture of format {fmt!r}")
        try:
            data = base64.b64decode(event.get("b64_json") or "", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise WorkerUnavailable(f"the worker's picture is not base64: {exc}") from exc

        async def once() -> AsyncIterator[bytes]:
            yield data

        artifact = await self._artifacts.put(
            once(), media_type=MEDIA_TYPES[fmt], owner=ctx.job_id,
            filename=f"{ctx.job_id}-{index + 1}.{fmt}")
        ctx.narrate("image", f"picture {index + 1} stored: {artifact.url}")
        return {"index": index, "size": event.get("size"), "output_format": fmt,
                "artifact_id": artifact.id, "url": artifact.url, "bytes": artifact.bytes,
                "media_type": artifact.media_type}

    async def status(self, ctx: JobContext, op: StatusOp) -> Result:
        snap = self._registry.snapshot()
        return {
            "hives": [{"id": h.id, "url": h.url, "up": h.up,
                       "devices": [d.model_dump() for d in h.devices]} for h in snap.hives],
            "workers": [w.model_dump(mode="json") | {"inflight": self._registry.inflight(w.id)}
                        for w in self._registry.listed_workers()],
        }

    async def worker_spawn(self, ctx: JobContext, op: WorkerSpawnOp) -> Result:
        ref = parse_ref(op.model or self._default_model)
        hints = Hints(hive_id=op.hive_id, device=op.device, threads=op.threads,
                      slots=op.slots, mode=op.placement, keep_warm=op.keep_warm)
        info = await self._dispatcher.spawn(ref, hints, ctx, engine=op.engine)
        ready = await self._dispatcher.wait_ready(info, ctx)
        return {"worker": ready.model_dump(mode="json")}

    async def worker_list(self, ctx: JobContext, op: WorkerListOp) -> Result:
        workers = [w for w in self._registry.listed_workers()
                   if op.hive_id in (None, w.hive_id)]
        return {"workers": [w.model_dump(mode="json") for w in workers]}

    async def worker_stop(self, ctx: JobContext, op: WorkerStopOp) -> Result:
        ctx.narrate("worker_stop", f"stopping {op.worker_id}")
        stopped = await self._dispatcher.stop(op.worker_id)
        return {"worker": stopped.model_dump(mode="json")}

    async def hive_list(self, ctx: JobContext, op: HiveListOp) -> Result:
        return {"hives": self._fleet.list()}

    async def hive_get(self, ctx: JobContext, op: HiveGetOp) -> Result:
        entry = self._fleet.entries().get(op.hive_id)
        if entry is None and op.hive_id not in self._registry.hive_ids():
            self._fleet.entry(op.hive_id)  # raises HiveNotFound naming the configured hives
        return {"hive": self._fleet.describe(op.hive_id, entry)}

    async def model_list(self, ctx: JobContext, op: ModelListOp) -> Result:
        return {"models": model_entries(self._registry)}

    async def model_get(self, ctx: JobContext, op: ModelGetOp) -> Result:
        ref = parse_ref(op.model)
        workers = [w.model_dump(mode="json") for w in self._registry.workers()
                   if w.model == ref.name]
        entry: dict[str, Any] = {"id": ref.name, "source": ref.source, "engine": ref.engine,
                                 "kind": ref.kind, "workers": workers}
        if ref.source == "builtin":
            path = builtin_path(ref.name)
            entry |= {"description": BUILTINS[ref.name].description,
                      "installed": path is not None or BUILTINS[ref.name].package is None,
                      "path": str(path) if path else None,
                      "aliases": sorted(a for a, t in ALIASES.items() if t == ref.name)}
        return {"model": entry}


def model_entries(registry: Registry) -> list[dict[str, Any]]:
    """Built-ins plus every model some worker serves, with the workers serving it."""
    entries: dict[str, dict[str, Any]] = {}
    for name, b in BUILTINS.items():
        entries[name] = {"id": name, "source": "builtin", "engine": b.engine, "kind": b.kind,
                         "description": b.description, "workers": 0}
    for w in registry.workers():
        entry = entries.setdefault(w.model, {"id": w.model, "source": parse_ref(w.model).source,
                                             "engine": w.engine, "kind": w.kind,
                                             "description": "", "workers": 0})
        entry["workers"] += 1
    return list(entries.values())


def _image_progress(ctx: JobContext, event: dict[str, Any], n: int) -> int:
    """A worker's step event published as the job's progress; 1 if it was one."""
    if isinstance(event.get("step"), int) and isinstance(event.get("steps"), int):
        index = int(event.get("image_index", 0))
        ctx.progress("denoising", (index * event["steps"] + event["step"]) / (n * event["steps"]),
                     image=index, step=event["step"], steps=event["steps"])
        return 1
    return 0


class ToolCalls:
    """Tool calls assembled from streamed `delta.tool_calls` pieces, by their index: the
    first piece brings the id and name, the next ones pieces of the arguments."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def __bool__(self) -> bool:
        return bool(self._calls)

    def add(self, pieces: list[dict[str, Any]] | None) -> None:
        for piece in pieces or ():
            call = self._calls.setdefault(int(piece.get("index", 0)), {
                "id": "", "type": "function", "function": {"name": "", "arguments": ""}})
            call["id"] = piece.get("id") or call["id"]
            fn = piece.get("function") or {}
            call["function"]["name"] += fn.get("name") or ""
            call["function"]["arguments"] += fn.get("arguments") or ""

    def done(self) -> list[dict[str, Any]]:
        return [self._calls[i] for i in sorted(self._calls)]


def _saved_by(ctx: JobContext) -> str:
    """Who saved a script version, as its history shows it: the key's id, never the key."""
    return ctx.actor.key_fingerprint or "unknown"


def _used(usage: Mapping[str, Any]) -> Used:
    return Used(prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0))
