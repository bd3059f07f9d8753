"""What scheduling scripts receive, as mappings (LuaPolicy's dict API): one worker, device,
job or model with defaults, any field overridden by keyword."""

from __future__ import annotations

from typing import Any

GiB = 2**30


def worker(wid: str, **kw: Any) -> dict[str, Any]:
    w: dict[str, Any] = {"id": wid, "hive_id": "h1", "model": "llama", "device": "cuda:0",
                         "state": "ready", "load": 0, "vram_free": 10 * GiB, "region": None,
                         "labels": {}}
    return w | kw


def device(key: str, **kw: Any) -> dict[str, Any]:
    hive_id, dev_id = key.split("/")
    d: dict[str, Any] = {"key": key, "hive_id": hive_id, "id": dev_id,
                         "kind": dev_id.split(":")[0], "name": dev_id,
                         "memory_total": 24 * GiB, "memory_free": 20 * GiB, "region": None,
                         "labels": {}, "workers": 0}
    return d | kw


def job(**kw: Any) -> dict[str, Any]:
    return {"model": "llama", "tenant": None, "priority": "interactive", "hive_id": None,
            "device": None, "labels": {}} | kw


def model(**kw: Any) -> dict[str, Any]:
    return {"name": "llama", "size_bytes": 4 * GiB, "tenant": None, "priority": "batch",
            "labels": {}} | kw
