"""Everything the queen's handlers use, built once at start-up (or handed in by tests)."""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass, field

import httpx

from rbee.core.clock import Clock, SystemClock
from rbee.queen.dispatch import Dispatcher
from rbee.queen.hive_client import HiveClient
from rbee.queen.jobs import JobManager
from rbee.queen.local_hive import HIVE_ID, LocalHive, local_hive_for
from rbee.queen.operations import Operations
from rbee.queen.registry import Registry
from rbee.queen.relay import Relay
from rbee.queen.settings import QueenSettings
from rbee.storage.db import connect
from rbee.storage.jobs import JobStore


@dataclass
class QueenServices:
    settings: QueenSettings
    clock: Clock
    db: sqlite3.Connection
    jobs: JobManager
    registry: Registry
    dispatcher: Dispatcher
    relay: Relay
    http: httpx.AsyncClient
    hive_tokens: dict[str, str] = field(default_factory=dict)
    local_hive: LocalHive | None = None


def build_services(settings: QueenSettings, *, clock: Clock | None = None,
                   http: httpx.AsyncClient | None = None, hive_token: str | None = None,
                   worker_token: str | None = None,
                   local_hive: LocalHive | None = None) -> QueenServices:
    clock = clock or SystemClock()
    http = http or httpx.AsyncClient()  # queen→hive lifecycle calls (not the hot path)
    hive_token = hive_token or secrets.token_urlsafe(32)
    worker_token = worker_token or secrets.token_urlsafe(32)
    db = connect(settings.state_dir / "queen.db")
    registry = Registry(clock, settings.telemetry_interval)
    dispatcher = Dispatcher(registry, HiveClient(http, hive_token),
                            spawn_timeout=settings.spawn_timeout,
                            default_threads=settings.worker_threads)
    relay = Relay(registry, worker_token)
    operations = Operations(registry, dispatcher, relay, settings.default_model)
    jobs = JobManager(JobStore(db), clock, operations.run)
    local = local_hive
    if local is None and settings.local_hive:
        local = local_hive_for(settings, hive_token, worker_token)
    return QueenServices(settings=settings, clock=clock, db=db, jobs=jobs, registry=registry,
                         dispatcher=dispatcher, relay=relay, http=http,
                         hive_tokens={HIVE_ID: hive_token}, local_hive=local)
