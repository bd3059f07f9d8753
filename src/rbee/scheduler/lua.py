"""User scheduling policies written in Lua 5.4, run in a sandbox (lupa).

A script defines `route(job, workers)` and/or `place(model, devices)` and returns a worker or
device (table or id/key string), or nil for "no opinion, use the built-in policy". Each
`LuaPolicy` owns its own `LuaRuntime`; the trusted half of the sandbox lives in
`lua_helpers.lua` (whitelisted environment, helper lists, instruction budget).

Containment, per call (top-level code included):
- instructions: a count hook on the call's coroutine; once spent, every further instruction
  raises and `pcall` re-raises, so the script cannot catch it. C functions whose cost the hook
  cannot see (patterns, table.insert/remove/sort/concat/unpack, long-string functions) are
  charged against the same budget, and patterns whose worst case exceeds it are refused;
- CPU time: checked at every hook call (every 1,000 instructions), a backstop for single
  instructions whose cost grows with their operands (`..`, `==`, `<` on multi-MiB strings);
- memory: `LuaRuntime(max_memory=...)`, shared by the script's state and the call's inputs.
Inputs cross as flat scalars and become fresh Lua tables for every call, so a script cannot
affect the caller's data; a Python object that slips into the data is inert (lupa's wrapper
is neutered). Scripts see only the whitelist built in lua_helpers.lua.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from itertools import chain
from operator import itemgetter
from typing import Any, Literal

import lupa.lua54 as lupa

from rbee.core.errors import InvalidRequest, NoCapacity, RbeeError

Hook = Literal["route", "place"]

JOB_FIELDS = ("model", "tenant", "priority", "hive_id", "device")
MODEL_FIELDS = ("name", "size_bytes", "tenant", "priority")
WORKER_FIELDS = ("id", "hive_id", "model", "device", "state", "load", "vram_free", "region")
DEVICE_FIELDS = ("key", "hive_id", "id", "kind", "name", "memory_total", "memory_free",
                 "region", "workers")
MAX_SOURCE_BYTES = 256 * 1024
LOG_LINES, LOG_CHARS = 20, 200

_HELPERS = files("rbee.scheduler").joinpath("lua_helpers.lua").read_text(encoding="utf-8")
_LABELS = itemgetter("labels")


class ScriptInvalid(InvalidRequest):
    """The script does not compile, fails at load time, or defines no hook."""

    code = "script_invalid"


class ScriptFailed(RbeeError):
    """A hook call failed: a Lua error, a spent limit, or an invalid answer."""

    code = "script_failed"


class ScriptRefused(NoCapacity):
    """The script answered `false`: none of the candidates may be used (e.g. data residency).
    Unlike nil, this does not fall back to the built-in policy."""

    code = "script_refused"


@dataclass(frozen=True)
class ScriptLimits:
    """What one hook call (and the script's top-level code) may spend."""

    instructions: int = 1_000_000
    memory_bytes: int = 32 * 2**20
    cpu_seconds: float = 0.5  # backstop; process CPU time, checked every 1,000 instructions

    def __post_init__(self) -> None:
        if self.instructions < 1 or self.memory_bytes < 2**20 or self.cpu_seconds <= 0:
            raise ValueError("limits: instructions >= 1, memory_bytes >= 1 MiB, cpu_seconds > 0")


DEFAULT_LIMITS = ScriptLimits()


def _deny_attributes(obj: object, name: object, is_setting: bool) -> object:
    raise AttributeError("Python attributes are not available to scripts")


class _Shape:
    """How one kind of record crosses into Lua: its scalar fields as flat values, in order.

    Flat scalars are about ten times cheaper to convert than `table_from(recursive=True)`,
    and lua_helpers.lua builds the tables inside Lua's error protection. Keys outside the
    data contract are not passed.
    """

    def __init__(self, fields: tuple[str, ...]) -> None:
        self.fields = fields
        self._get = itemgetter(*fields)

    def flat(self, records: Sequence[Mapping[str, Any]]) -> list[Any]:
        try:
            return list(chain.from_iterable(map(self._get, records)))
        except KeyError:  # a missing field is nil
            return [r.get(f) for r in records for f in self.fields]

    @staticmethod
    def labels(records: Sequence[Mapping[str, Any]]) -> list[Any]:
        try:
            return list(map(_LABELS, records))
        except KeyError:
            return [r.get("labels") for r in records]


def _flat_labels(by_id: dict[int, Any], cache: dict[int, tuple[Any, tuple[Any, ...]]]
                 ) -> list[Any]:
    """Distinct labels dicts as: their count, then (id, size, k1, v1, k2, v2...) each.

    `cache` keeps each mapping's flattened form across calls (hives' labels rarely change).
    It holds the mapping itself, so its id cannot be reused by another object while cached;
    label mappings are treated as immutable once passed in.
    """
    out: list[Any] = [len(by_id)]
    for key, labels in by_id.items():
        hit = cache.get(key)
        if hit is None or hit[0] is not labels:
            pairs = labels.items() if labels else ()
            if len(cache) >= _LABEL_CACHE:
                cache.clear()
            hit = cache[key] = (labels, (key, len(pairs), *chain.from_iterable(pairs)))
        out += hit[1]
    return out


_LABEL_CACHE = 4096


_SHAPES: dict[Hook, tuple[_Shape, _Shape]] = {
    "route": (_Shape(JOB_FIELDS), _Shape(WORKER_FIELDS)),
    "place": (_Shape(MODEL_FIELDS), _Shape(DEVICE_FIELDS)),
}


class LuaPolicy:
    """A compiled scheduling script: `route` picks a worker, `place` picks a device.

    Not thread-safe: one call at a time (lupa serialises calls into one runtime anyway).
    """

    def __init__(self, source: str, name: str = "script",
                 limits: ScriptLimits = DEFAULT_LIMITS) -> None:
        self.name = name
        self.limits = limits
        self.last_log: list[str] = []
        self._label_cache: dict[int, tuple[Any, tuple[Any, ...]]] = {}
        if len(source.encode()) > MAX_SOURCE_BYTES:
            raise ScriptInvalid(f"script '{name}': larger than {MAX_SOURCE_BYTES} bytes")
        self._lua: Any = lupa.LuaRuntime(
            register_eval=False, register_builtins=False, unpack_returned_tuples=True,
            attribute_filter=_deny_attributes, max_memory=limits.memory_bytes)
        with self._unlimited():
            entry = self._lua.execute(_HELPERS, self._config(), object())
            self._prepare: Any = entry["prepare"]
            self._decide: Any = entry["decide"]
            entry["stage"](source, name)
        try:
            status, text, has_route, has_place, *self.last_log = self._run(entry["compile"])
        except ScriptFailed as exc:
            raise ScriptInvalid(exc.message) from exc
        if status != "ok":
            raise ScriptInvalid(f"script '{name}': {self._reason(status, text)}")
        self.has_route: bool = has_route
        self.has_place: bool = has_place
        self._defined = {"route": has_route, "place": has_place}
        if not (has_route or has_place):
            raise ScriptInvalid(f"script '{name}' defines neither route(job, workers) "
                                "nor place(model, devices)")

    def route(self, job: Mapping[str, Any], workers: Sequence[Mapping[str, Any]]) -> str | None:
        """The id of the worker the script picks among `workers`, or None (no opinion)."""
        return self._call("route", job, workers)

    def place(self, model: Mapping[str, Any], devices: Sequence[Mapping[str, Any]]) -> str | None:
        """The `key` of the device the script picks among `devices`, or None (no opinion)."""
        return self._call("place", model, devices)

    def route_rows(self, job: Mapping[str, Any], rows: Sequence[Sequence[Any]],
                   labels: Sequence[Mapping[str, str]]) -> str | None:
        """`route` for callers holding rows already (values in WORKER_FIELDS order, and each
        row's labels): skips building a dict per worker on the hot path."""
        return self._send("route", job, len(rows), list(labels),
                          list(chain.from_iterable(rows)))

    def place_rows(self, model: Mapping[str, Any], rows: Sequence[Sequence[Any]],
                   labels: Sequence[Mapping[str, str]]) -> str | None:
        """`place` with rows in DEVICE_FIELDS order (see `route_rows`)."""
        return self._send("place", model, len(rows), list(labels),
                          list(chain.from_iterable(rows)))

    def _call(self, hook: Hook, head: Mapping[str, Any],
              items: Sequence[Mapping[str, Any]]) -> str | None:
        if not self._defined[hook]:
            return None
        item_shape = _SHAPES[hook][1]
        return self._send(hook, head, len(items), item_shape.labels(items),
                          item_shape.flat(items))

    def _send(self, hook: Hook, head: Mapping[str, Any], n: int, labels: list[Any],
              flat_items: list[Any]) -> str | None:
        if not self._defined[hook]:
            return None
        head_shape = _SHAPES[hook][0]
        label_ids = list(map(id, labels))
        head_labels = head.get("labels")
        # one Lua table per distinct labels dict: workers of a hive usually share theirs
        by_id = dict(zip(label_ids, labels, strict=True))
        by_id[id(head_labels)] = head_labels
        self.last_log = []
        with self._unlimited():
            try:
                self._prepare(hook, n, *_flat_labels(by_id, self._label_cache),
                              id(head_labels), *head_shape.flat((head,)), *label_ids,
                              *flat_items)
            except (lupa.LuaError, OverflowError) as exc:  # a NaN label key, an int >= 2**63
                raise ScriptFailed(f"script '{self.name}': inputs not convertible: "
                                   f"{str(exc).splitlines()[0]}") from exc
        status, text, *self.last_log = self._run(self._decide)
        if status == "refuse":
            raise ScriptRefused(f"script '{self.name}' refused all {n} candidate(s) "
                                f"for this {hook}")
        if status != "ok":
            raise ScriptFailed(f"script '{self.name}': {self._reason(status, text)}")
        return None if text is None else str(text)

    @contextmanager
    def _unlimited(self) -> Iterator[None]:
        """Lift the memory cap while Python data crosses into Lua.

        lupa pushes arguments and fills `table_from` tables outside any protected call, where
        a failed allocation makes Lua abort the whole process ("PANIC: unprotected error").
        Only trusted code runs here; the script runs in `_run`, under the cap, where the
        inputs count against it.
        """
        self._lua.set_max_memory(0)
        try:
            yield
        finally:
            self._lua.set_max_memory(self.limits.memory_bytes)

    def _run(self, entry: Any) -> tuple[Any, ...]:
        """Call an argument-less entry point under the memory cap (it allocates only inside
        Lua's protection); errors outside the script's coroutine become ScriptFailed."""
        try:
            return tuple(entry())
        except lupa.LuaMemoryError as exc:
            raise ScriptFailed(f"script '{self.name}': {self._reason('memory', None)}") from exc
        except lupa.LuaError as exc:
            raise ScriptFailed(f"script '{self.name}': {str(exc).splitlines()[0]}") from exc

    def _reason(self, status: str, text: str | None) -> str:
        limits = self.limits
        reasons = {
            "budget": f"instruction budget exhausted ({limits.instructions})",
            "time": f"CPU time limit ({limits.cpu_seconds:g} s) exceeded",
            "memory": f"memory limit ({limits.memory_bytes / 2**20:g} MiB) exceeded",
        }
        return reasons.get(status, text or "unknown error")

    def _config(self) -> Any:
        return self._lua.table_from({
            "instructions": self.limits.instructions,
            "step": min(self.limits.instructions, 1000),
            "cpu_seconds": self.limits.cpu_seconds,
            "log_lines": LOG_LINES,
            "log_chars": LOG_CHARS,
            "max_results": 10_000,
            "max_pattern": 256,
            "max_pcalls": 100,
            "job_fields": list(JOB_FIELDS),
            "model_fields": list(MODEL_FIELDS),
            "worker_fields": list(WORKER_FIELDS),
            "device_fields": list(DEVICE_FIELDS),
        }, recursive=True)
