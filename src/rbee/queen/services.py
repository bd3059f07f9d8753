"""Everything the queen's handlers use, built once at start-up (or handed in by tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from rbee.core.clock import Clock, SystemClock
from rbee.models.catalog import BUILTINS, ModelRef, parse_ref
from rbee.queen.admission import Admission
from rbee.queen.audit import AuditLog, seal_key
from rbee.queen.consent import Consents
from rbee.queen.credentials import Credentials, HiveCredentials
from rbee.queen.dispatch import Dispatcher
from rbee.queen.erased import Erased
from rbee.queen.fleet import Fleet
from rbee.queen.gdpr import Gdpr, Holdings
from rbee.queen.hive_client import HiveClient
from rbee.queen.identity import KeyRing
from rbee.queen.jobs import JobManager
from rbee.queen.liveness import Liveness
from rbee.queen.local_hive import HIVE_ID, LocalHive, local_hive_for
from rbee.queen.metrics import QueenMetrics
from rbee.queen.metrics_collector import ClusterCollector, ClusterSources
from rbee.queen.operations import Operations
from rbee.queen.policy import SchedulingPolicy
from rbee.queen.quotas import Account, Quotas, Recorder, Used
from rbee.queen.receipts import ReceiptSigner
from rbee.queen.registry import Registry
from rbee.queen.relay import Relay
from rbee.queen.scripts import Scripts
from rbee.queen.settings import QueenSettings
from rbee.queen.speak_job import SpeakRunner
from rbee.queen.supervision import HiveSupervisor, hang_after
from rbee.queen.transcribe_job import TranscribeRunner
from rbee.queen.transport import AiohttpTransport, Deadlines, WorkerTransport
from rbee.queen.transport_httptools import HttptoolsTransport
from rbee.queen.usage import UsageLog, day_of
from rbee.queen.video_job import VideoRunner
from rbee.queen.videos import Videos
from rbee.queen.watchdog import IdleTTL, Watchdog
from rbee.storage.artifacts import ArtifactStore
from rbee.storage.audit import AuditStore
from rbee.storage.db import Database, connect
from rbee.storage.gdpr import GdprStore
from rbee.storage.hives import HiveStore
from rbee.storage.identity import IdentityStore
from rbee.storage.jobs import JobStore
from rbee.storage.quotas import QuotaStore
from rbee.storage.responses import ResponseStore
from rbee.storage.scripts import ScriptStore

if TYPE_CHECKING:
    from rbee.tracing.tracer import Tracing


@dataclass
class QueenServices:
    settings: QueenSettings
    clock: Clock
    db: Database
    jobs: JobManager
    registry: Registry
    dispatcher: Dispatcher
    relay: Relay
    http: httpx.AsyncClient
    fleet: Fleet
    watchdog: Watchdog
    admission: Admission
    scripts: Scripts
    operations: Operations
    liveness: Liveness
    responses: ResponseStore
    keys: KeyRing
    artifacts: ArtifactStore
    videos: Videos
    audit: AuditLog
    quotas: Quotas
    usage: UsageLog
    gdpr: Gdpr
    credentials: Credentials = field(default_factory=Credentials)
    local_hive: LocalHive | None = None
    hive_supervisor: HiveSupervisor | None = None  # restarts local_hive when it dies
    metrics: QueenMetrics | None = None  # None: metrics are off (settings.metrics)
    tracing: Tracing | None = None  # None: tracing is off (docs/tracing.md)


def build_services(settings: QueenSettings, *, clock: Clock | None = None,
                   http: httpx.AsyncClient | None = None, hive_token: str | None = None,
                   worker_token: str | None = None,
                   local_hive: LocalHive | None = None,
                   transport: WorkerTransport | None = None,
                   tracing: Tracing | None = None) -> QueenServices:
    clock = clock or SystemClock()
    metrics = QueenMetrics() if settings.metrics else None
    http = http or httpx.AsyncClient()  # queen→hive lifecycle calls (not the hot path)
    local_creds = HiveCredentials.new()
    local_creds = HiveCredentials(hive_token or local_creds.token,
                                  worker_token or local_creds.worker_token)
    credentials = Credentials()
    credentials.set(HIVE_ID, local_creds)
    db = connect(settings.state_dir / "queen.db")
    audit_store = AuditStore(db)
    audit_store.key = seal_key(settings.audit_key(), next_seq=lambda: audit_store.head()[0] + 1)
    erased = Erased()  # people erased while this queen runs (queen.erased)
    audit = AuditLog(audit_store, clock, archive_dir=settings.audit_archives(), erased=erased,
                     retention=settings.audit_retention_days * 86400.0)
    registry = Registry(clock, settings.telemetry_interval,
                        memory_budget=int(settings.memory_budget) if settings.memory_budget
                        else None, unconfirmed_ttl=settings.spawn_timeout)
    if metrics is not None:  # a model label only for models the queen has (queen.metrics)
        metrics.models.exists = lambda name: name in BUILTINS or registry.serves(name)
    hives = HiveClient(http, credentials, tracing)
    policy = SchedulingPolicy(settings.routing_policy, settings.placement_policy)
    keys = KeyRing(IdentityStore(db), clock, settings.api_token)
    dispatcher = Dispatcher(registry, hives, spawn_timeout=settings.spawn_timeout,
                            default_threads=settings.worker_threads, policy=policy,
                            estimator=estimate_bytes,
                            keep_warm_models=frozenset(parse_ref(m).name
                                                       for m in settings.keep_warm),
                            gpu_overhead=GPU_CONTEXT_BYTES, residency=keys.regions_of,
                            observer=metrics, tracing=tracing)
    admission = Admission(clock, max_queue=settings.max_queue, capacity=registry.ready_slots,
                          on_admit=metrics.queue_waited if metrics is not None else None,
                          tracing=tracing)
    deadlines = deadlines_for(settings)
    if transport is None:  # queen→worker, every call
        transport = (HttptoolsTransport(deadlines) if settings.worker_transport == "httptools"
                     else AiohttpTransport(deadlines))
    relay = Relay(registry, credentials, transport, deadlines, tracing)
    liveness = Liveness(registry, relay.calls, transport, clock,
                        interval=settings.liveness_interval, timeout=settings.liveness_timeout)
    fleet = Fleet(settings, registry, credentials, HiveStore(db), hives, clock,
                  traces=tracing.endpoint if tracing is not None else None)
    scripts = Scripts(ScriptStore(db), policy, clock)
    usage = UsageLog(QuotaStore(db), erased)
    quotas = quotas_for(usage, clock, metrics)
    # Binary results (videos) live beside the database, under the same retention rules.
    artifacts = ArtifactStore(settings.state_dir / "artifacts", clock)
    runner = (registry, dispatcher, relay, admission, artifacts, settings, quotas)
    operations = Operations(registry, dispatcher, relay, fleet, admission, scripts,
                            settings.default_model, video=VideoRunner(*runner),
                            artifacts=artifacts, speak=SpeakRunner(*runner),
                            transcribe=TranscribeRunner(*runner), quotas=quotas)
    job_store = JobStore(db)
    jobs = JobManager(job_store, clock, operations.run, on_finish=audit.job)
    gdpr_store = GdprStore(db)
    gdpr = Gdpr(Holdings(IdentityStore(db), job_store, gdpr_store, artifacts, usage),
                keys=keys, jobs=jobs, audit=audit, consents=Consents(gdpr_store),
                signer=ReceiptSigner(settings.state_dir / "gdpr-receipt.key"), clock=clock,
                quotas=quotas, erased=erased)
    local = local_hive
    if local is None and settings.local_hive:
        local = local_hive_for(settings, local_creds.token, local_creds.worker_token,
                               tracing.endpoint if tracing is not None else None)
    supervisor = None
    if local is not None:
        supervisor = HiveSupervisor(local, clock, on_exit=lambda: registry.suspect(HIVE_ID),
                                    silent_for=lambda: registry.seen_ago(HIVE_ID),
                                    hang_after=hang_after(settings.telemetry_interval))
    watchdog = Watchdog(registry, dispatcher, settings.telemetry_interval, admission=admission,
                        idle_ttl=IdleTTL(settings.idle_ttl, settings.model_ttl))
    if metrics is not None:  # what lives elsewhere is read when Prometheus scrapes
        metrics.watch(ClusterCollector(ClusterSources(
            registry, admission, policy, dispatcher, idle_unloads=lambda: watchdog.unload_count,
            model_label=metrics.models)))
    return QueenServices(settings=settings, clock=clock, db=db, jobs=jobs, registry=registry,
                         dispatcher=dispatcher, relay=relay, http=http, fleet=fleet,
                         watchdog=watchdog,
                         admission=admission, scripts=scripts, operations=operations,
                         liveness=liveness, responses=ResponseStore(db), audit=audit,
                         keys=keys,
                         artifacts=artifacts,
                         videos=Videos(jobs, artifacts, settings, clock),
                         quotas=quotas, usage=usage, gdpr=gdpr,
                         credentials=credentials, local_hive=local,
                         hive_supervisor=supervisor, metrics=metrics, tracing=tracing)


def quotas_for(usage: UsageLog, clock: Clock, metrics: QueenMetrics | None = None) -> Quotas:
    """Quotas from the stored limits and prices, today's and this month's use; each settled
    request goes to the usage table and, with metrics, to its tenant's counters."""
    record: Recorder = usage.record
    if metrics is not None:
        def record(account: Account, model: str, used: Used | None, cost: float,
                   now: float) -> None:
            usage.record(account, model, used, cost, now)
            metrics.charged(account, used, cost)

    quotas = Quotas(clock, record)
    now = clock.time()
    today = day_of(now)
    quotas.load(usage.store.all_limits(), usage.store.all_prices(),
                usage.store.totals_since(today, today[:8] + "01"), now)
    return quotas


def deadlines_for(settings: QueenSettings) -> Deadlines:
    return Deadlines(connect=settings.worker_connect_timeout,
                     first_byte=settings.worker_first_byte_timeout,
                     idle=settings.worker_idle_timeout, response=settings.worker_response_timeout,
                     probe=min(settings.liveness_interval, settings.liveness_timeout))


GPU_CONTEXT_BYTES = 512 * 2**20  # = models.estimate.ACCELERATOR_CONTEXT_BYTES (not imported:
# that module loads gguf/numpy, which the queen defers until a first placement)


def estimate_bytes(ref: ModelRef) -> int:
    """What a new worker of `ref` is expected to take (GGUF metadata when we can read it)."""
    from rbee.models.estimate import estimate_ref  # reads gguf/numpy: only when placing

    return estimate_ref(ref).total_bytes
