"""User scheduling scripts: save, check, activate (hot reload), and dry-run explanations."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

from rbee.core.clock import Clock
from rbee.core.errors import NotFound, RbeeError
from rbee.models.catalog import ModelRef
from rbee.queen.decision import decide
from rbee.queen.dispatch import Dispatcher, Hints
from rbee.queen.policy import SchedulingPolicy, Script
from rbee.queen.registry import Registry
from rbee.scheduler.routing import RouteRequest
from rbee.storage.scripts import ScriptRow, ScriptStore

logger = logging.getLogger(__name__)


class ScriptNotFound(NotFound):
    code = "script_not_found"


class ScriptVersionNotFound(NotFound):
    code = "script_version_not_found"


def _compile(source: str, name: str) -> Script:
    from rbee.scheduler.lua import LuaPolicy  # lupa: loaded when scripts are used

    return LuaPolicy(source, name)


async def compile_script(source: str, name: str) -> Script:
    """A sandboxed Lua policy; raises ScriptInvalid (400) with the Lua error and line.

    Off the event loop: compiling runs the script's top-level code (within its limits)."""
    return await asyncio.to_thread(_compile, source, name)


class Scripts:
    def __init__(self, store: ScriptStore, policy: SchedulingPolicy, clock: Clock) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock
        # One change at a time: each awaits a compile between reading the store and putting
        # a script in force, and a save or delete in that gap would leave the policy running
        # what the store no longer says is in force.
        self._changing = asyncio.Lock()

    async def load_active(self) -> None:
        """At start: the script that was active before a restart is active again."""
        row = self._store.active()
        if row is None:
            return
        try:
            self._policy.use(await compile_script(row.source, row.name))
            logger.info("scheduling script %s active", row.name)
        except RbeeError as exc:
            logger.error("active script %s no longer compiles (%s); built-in policy used",
                         row.name, exc.message)
            self._store.activate(None)

    async def save(self, name: str, source: str, activate: bool, by: str = "unknown"
                   ) -> dict[str, Any]:
        """Store `source` as the script's next version (`by`: the saving key's id)."""
        async with self._changing:
            return await self._save(name, source, activate, by)

    async def _save(self, name: str, source: str, activate: bool, by: str) -> dict[str, Any]:
        script = await compile_script(source, name)  # never store what does not compile
        self._store.save(name, source, self._clock.time(), by)
        if activate:
            self._store.activate(name)
            self._policy.use(script)
        elif self._policy.script is not None and self._policy.script.name == name:
            self._policy.use(script)  # the active one was edited: reload it
        return self.describe(name)

    async def activate(self, name: str | None) -> dict[str, Any]:
        async with self._changing:
            return await self._activate(name)

    async def _activate(self, name: str | None) -> dict[str, Any]:
        if name is None:
            self._store.activate(None)
            self._policy.use(None)
            return {"active": None}
        row = self._require(name)
        script = await compile_script(row.source, row.name)
        self._store.activate(name)
        self._policy.use(script)
        return self.describe(name)

    async def rollback(self, name: str, version: int) -> dict[str, Any]:
        """Put a kept version of `name` back in force and make it the active script."""
        async with self._changing:
            return await self._rollback(name, version)

    async def _rollback(self, name: str, version: int) -> dict[str, Any]:
        self._require(name)
        kept = self._store.version(name, version)
        if kept is None:
            raise ScriptVersionNotFound(f"script {name!r} has no version {version} (see its "
                                        "history)", param="version")
        # Compiled again, not trusted: the sandbox's rules may have tightened since it was saved.
        script = await compile_script(kept.source, name)
        if not self._store.restore(name, version, self._clock.time()):
            raise ScriptVersionNotFound(f"script {name!r} has no version {version}",
                                        param="version")  # dropped meanwhile
        self._policy.use(script)
        return self.describe(name)

    def history(self, name: str) -> dict[str, Any]:
        """The kept versions, newest first: when, by whom, how long (sources: `version`)."""
        row = self._require(name)
        return {"name": name, "version": row.version, "active": self._is_active(name),
                "versions": [{"version": v.version, "saved_at": v.saved_at,
                              "saved_by": v.saved_by, "lines": v.source.count("\n") + 1,
                              "in_force": v.version == row.version}
                             for v in self._store.history(name)]}

    def version(self, name: str, version: int) -> dict[str, Any]:
        """One kept version with its source."""
        self._require(name)
        kept = self._store.version(name, version)
        if kept is None:
            raise ScriptVersionNotFound(f"script {name!r} has no version {version}",
                                        param="version")
        return {"name": name, "version": kept.version, "source": kept.source,
                "saved_at": kept.saved_at, "saved_by": kept.saved_by}

    async def delete(self, name: str) -> dict[str, Any]:
        async with self._changing:
            return self._delete(name)

    def _delete(self, name: str) -> dict[str, Any]:
        self._require(name)
        if self._policy.script is not None and self._policy.script.name == name:
            self._policy.use(None)
        self._store.delete(name)
        return {"name": name, "deleted": True}

    def describe(self, name: str) -> dict[str, Any]:
        row = self._require(name)
        active = self._is_active(name)
        out: dict[str, Any] = {"name": row.name, "active": active, "source": row.source,
                               "updated_at": row.updated_at, "version": row.version}
        if active:
            out["stats"] = self._policy.stats.to_dict()
        return out

    def list(self) -> list[dict[str, Any]]:
        return [{"name": r.name, "active": r.active, "updated_at": r.updated_at,
                 "version": r.version, "lines": r.source.count("\n") + 1}
                for r in self._store.all()]

    def _is_active(self, name: str) -> bool:
        return self._policy.script is not None and self._policy.script.name == name

    def _require(self, name: str) -> ScriptRow:
        row = self._store.get(name)
        if row is None:
            raise ScriptNotFound(f"no script {name!r}", param="name")
        return row


async def explain(dispatcher: Dispatcher, registry: Registry, ref: ModelRef, hints: Hints,
                  script: Script | None = None) -> dict[str, Any]:
    """Where a request for `ref` would go on the live cluster, and why. Changes nothing: the
    same decision the dispatcher executes (`queen.decision`), not executed.

    With `script`, that script decides instead of the active one (a dry run before apply).
    """
    policy = dispatcher.policy
    if script is not None:
        policy = SchedulingPolicy(policy.routing, policy.placement)
        policy.use(script)
    route = RouteRequest(model=ref.name, hive_id=hints.hive_id, device=hints.device,
                         worker_id=hints.worker_id, explain=True)
    place = replace(dispatcher.place_request(ref, hints), explain=True)
    try:
        decision = await decide(policy, registry.snapshot(), route, place, hints.job)
        # Read before the dry run's policy closes: closing forgets its script and counters
        # (a dry run of a script used to answer "script": null).
        applied, disabled = policy.script, policy.stats.disabled
    finally:
        if script is not None:
            policy.close()
    return {**decision.to_dict(), "script": applied.name if applied else None,
            "script_disabled": disabled}
