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
Inputs cross as flat scalars. A candidate's static fields (and its hive's labels) are kept in
the runtime between calls and re-sent only when they change (`_Kept`); each call passes slots
and live fields. The script gets records that read through to the kept fields, handed out
again while unwritten and replaced once written, so a script's writes end with its call and
never reach the caller's data (see "Inputs" in lua_helpers.lua). A Python object that slips
into the data is inert (lupa's wrapper is neutered). Scripts see only the whitelist built in
lua_helpers.lua.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib.resources import files
from itertools import chain
from operator import itemgetter
from typing import Any, Literal

import lupa.lua54 as lupa

from rbee.core.errors import InvalidRequest, NoCapacity, PolicyRefused, RbeeError

Hook = Literal["route", "place"]

# The tenant's use in the current windows (queen.quotas.Quotas.usage_of): nil for a request
# that is nobody's (the queen's own admin).
USAGE_FIELDS = ("requests_minute", "tokens_minute", "tokens_day", "cost_month", "budget_left")
JOB_FIELDS = ("model", "tenant", "priority", "hive_id", "device", *USAGE_FIELDS)
MODEL_FIELDS = ("name", "kind", "size_bytes", "tenant", "priority", *USAGE_FIELDS)
# Candidates' fields in two halves: static ones, kept in the Lua runtime between calls, and live
# ones, passed with every call (see "Inputs" in lua_helpers.lua).
WORKER_STATIC = ("id", "hive_id", "model", "kind", "device", "region", "slots")
WORKER_LIVE = ("state", "load", "vram_free")
DEVICE_STATIC = ("key", "hive_id", "id", "kind", "name", "memory_total", "region")
DEVICE_LIVE = ("memory_free", "workers")
MAX_SOURCE_BYTES = 256 * 1024
LOG_LINES, LOG_CHARS = 20, 200
KEPT_RECORDS = 4096  # static records kept per hook before they are all dropped and re-sent

_HELPERS = files("rbee.scheduler").joinpath("lua_helpers.lua").read_text(encoding="utf-8")

Labels = Mapping[str, str] | None
Row = tuple[tuple[Any, ...], tuple[Any, ...], Labels]
"""A candidate as `route_rows`/`place_rows` take it: (static fields, live fields, labels)."""


class ScriptInvalid(InvalidRequest):
    """The script does not compile, fails at load time, or defines no hook; `line` is the
    script's line the Lua error names, when it names one (an editor marks it)."""

    code = "script_invalid"

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message, param="source")
        self.line = line


def _error_line(text: str | None, name: str) -> int | None:
    """The line in a Lua error about chunk `name` ("name:3: unexpected symbol ...")."""
    if text is None or not text.startswith(f"{name}:"):
        return None
    number = text[len(name) + 1:].partition(":")[0]
    return int(number) if number.isdigit() else None


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


def _getter(fields: tuple[str, ...]) -> Any:
    """Fields of a mapping as a tuple (itemgetter of one field returns it bare)."""
    get = itemgetter(*fields)
    return get if len(fields) > 1 else lambda record: (get(record),)


class _Shape:
    """How mappings (the dict API) become rows; a missing field is nil."""

    def __init__(self, static: tuple[str, ...], live: tuple[str, ...]) -> None:
        self.static, self.live = static, live
        self._static, self._live = _getter(static), _getter(live)

    def rows(self, records: Sequence[Mapping[str, Any]]) -> list[Row]:
        try:
            return [(self._static(r), self._live(r), r["labels"]) for r in records]
        except KeyError:
            return [(tuple(r.get(f) for f in self.static), tuple(r.get(f) for f in self.live),
                     r.get("labels")) for r in records]


_SHAPES: dict[Hook, tuple[tuple[str, ...], _Shape]] = {
    "route": (JOB_FIELDS, _Shape(WORKER_STATIC, WORKER_LIVE)),
    "place": (MODEL_FIELDS, _Shape(DEVICE_STATIC, DEVICE_LIVE)),
}


class _Kept:
    """lua.py's ledger of one hook's static records kept in the Lua runtime.

    A record's slot is keyed by its static fields and its labels' content (as a token), so
    a new telemetry report with the same values reuses it, and a change to either makes a
    new slot; stale slots are dropped wholesale once `KEPT_RECORDS` is passed. A labels
    mapping's token is found by its identity first (`by_identity`, which holds the mapping so
    its id cannot be reused while remembered), so a mapping must not change in place once
    passed (the registry's telemetry objects never do: each report brings new ones).
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.slots: dict[tuple[int, tuple[Any, ...]], int] = {}
        self.tokens: dict[tuple[tuple[str, str], ...], int] = {}
        self.by_identity: dict[int, tuple[Labels, int]] = {}
        # slots by the identity of (static tuple, labels), for callers that reuse their
        # tuples while nothing changed: no hashing of fields on the way
        self.by_static: dict[int, tuple[tuple[Any, ...], Labels, int]] = {}
        self.last_token = 0
        self.reset = True  # the runtime drops what it kept before the next call's upserts

    def encode(self, rows: Sequence[Row]) -> tuple[list[Any], list[Any]]:
        """`prepare`'s first arguments for these rows (the reset flag and upserts), and each
        candidate's slot and live fields, candidate after candidate, for `feed`. Raises
        TypeError for an unhashable static field."""
        if len(self.slots) + len(rows) > max(KEPT_RECORDS, 2 * len(rows)):
            self.clear()
        if len(self.by_identity) > KEPT_RECORDS or len(self.by_static) > 2 * KEPT_RECORDS:
            self.by_identity.clear()  # only memos: the runtime is unaffected
            self.by_static.clear()
        known = self.by_static.get
        slots = [hit[2] if (hit := known(id(static))) is not None and hit[0] is static
                 and hit[1] is labels else None for static, _, labels in rows]
        new_labels: list[tuple[int, tuple[Any, ...]]] = []
        new_records: list[tuple[Any, ...]] = []
        if None in slots:
            for j, slot in enumerate(slots):
                if slot is None:
                    static, _, labels = rows[j]
                    key = (self._token(labels, new_labels), static)
                    slot = slots[j] = self._keep(key, new_records)
                    self.by_static[id(static)] = (static, labels, slot)
        upserts: list[Any] = [self.reset, len(new_labels)]
        for token, pairs in new_labels:
            upserts += (token, len(pairs), *chain.from_iterable(pairs))
        upserts.append(len(new_records))
        upserts += chain.from_iterable(new_records)
        self.reset = False
        return upserts, list(chain.from_iterable(
            [(slot, *live) for slot, (_, live, _) in zip(slots, rows, strict=True)]))

    def _token(self, labels: Labels, new_labels: list[tuple[int, tuple[Any, ...]]]) -> int:
        """The token of these labels' content; new ones are added to `new_labels`."""
        hit = self.by_identity.get(id(labels))
        if hit is not None and hit[0] is labels:
            return hit[1]
        pairs = tuple(labels.items()) if labels else ()
        try:
            token = self.tokens.get(pairs)
        except TypeError:  # an unhashable value: not shared (the conversion makes it inert)
            token = None
        if token is None:
            self.last_token = token = self.last_token + 1
            new_labels.append((token, pairs))
            with suppress(TypeError):
                self.tokens[pairs] = token
        self.by_identity[id(labels)] = (labels, token)
        return token

    def _keep(self, key: tuple[int, tuple[Any, ...]], new_records: list[tuple[Any, ...]]
              ) -> int:
        slot = self.slots.get(key)  # the same record twice in one call
        if slot is None:
            slot = self.slots[key] = len(self.slots) + 1
            new_records.append((slot, key[0], *key[1]))
        return slot


class LuaPolicy:
    """A compiled scheduling script: `route` picks a worker, `place` picks a device.

    Not thread-safe: one call at a time (lupa serialises calls into one runtime anyway).
    """

    def __init__(self, source: str, name: str = "script",
                 limits: ScriptLimits = DEFAULT_LIMITS) -> None:
        self.name = name
        self.limits = limits
        self.last_log: list[str] = []
        self._kept: dict[Hook, _Kept] = {"route": _Kept(), "place": _Kept()}
        if len(source.encode()) > MAX_SOURCE_BYTES:
            raise ScriptInvalid(f"script '{name}': larger than {MAX_SOURCE_BYTES} bytes")
        self._lua: Any = lupa.LuaRuntime(
            register_eval=False, register_builtins=False, unpack_returned_tuples=True,
            attribute_filter=_deny_attributes, max_memory=limits.memory_bytes)
        with self._unlimited():
            entry = self._lua.execute(_HELPERS, self._config(), object())
            self._prepare: Any = entry["prepare"]
            self._feed: Any = entry["feed"]
            self._decide: Any = entry["decide"]
            entry["stage"](source, name)
        try:
            status, text, has_route, has_place, *self.last_log = self._run(entry["compile"])
        except ScriptFailed as exc:
            raise ScriptInvalid(exc.message) from exc
        if status != "ok":
            raise ScriptInvalid(f"script '{name}': {self._reason(status, text)}",
                                line=_error_line(text, name))
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

    def route_rows(self, job: Mapping[str, Any], rows: Sequence[Row]) -> str | None:
        """`route` for callers holding rows already: (WORKER_STATIC values, WORKER_LIVE values,
        labels) per worker. Skips building a dict per worker on the hot path."""
        return self._send("route", job, rows)

    def place_rows(self, model: Mapping[str, Any], rows: Sequence[Row]) -> str | None:
        """`place` with (DEVICE_STATIC, DEVICE_LIVE, labels) rows (see `route_rows`)."""
        return self._send("place", model, rows)

    def _call(self, hook: Hook, head: Mapping[str, Any],
              items: Sequence[Mapping[str, Any]]) -> str | None:
        if not self._defined[hook]:
            return None
        return self._send(hook, head, _SHAPES[hook][1].rows(items))

    def _send(self, hook: Hook, head: Mapping[str, Any], rows: Sequence[Row]) -> str | None:
        if not self._defined[hook]:
            return None
        kept = self._kept[hook]
        head_labels = head.get("labels") or {}
        self.last_log = []
        with self._unlimited():
            try:
                upserts, candidates = kept.encode(rows)
                per = self._prepare(hook, len(rows), *upserts, len(head_labels),
                                    *chain.from_iterable(head_labels.items()),
                                    *map(head.get, _SHAPES[hook][0]))
                # candidates go in chunks of named parameters: no table per call in Lua
                width = 1 + len(_SHAPES[hook][1].live)  # slot and live fields
                for start in range(0, len(rows), per):
                    self._feed(hook, start + 1,
                               *candidates[start * width:(start + per) * width])
            except (lupa.LuaError, OverflowError, TypeError) as exc:
                # a NaN label key, an int >= 2**63, an unhashable field: whatever the runtime
                # kept for this hook may be half-updated, so all of it is sent again next time
                kept.clear()
                raise ScriptFailed(f"script '{self.name}': inputs not convertible: "
                                   f"{str(exc).splitlines()[0]}") from exc
        status, text, *self.last_log = self._run(self._decide)
        if status == "deny":  # {refuse = "reason"}: this request, for its tenant
            raise PolicyRefused(f"refused by scheduling script '{self.name}': {text}")
        if status == "refuse":
            raise ScriptRefused(f"script '{self.name}' refused all {len(rows)} candidate(s) "
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
            "worker_static": list(WORKER_STATIC),
            "worker_live": list(WORKER_LIVE),
            "device_static": list(DEVICE_STATIC),
            "device_live": list(DEVICE_LIVE),
        }, recursive=True)
