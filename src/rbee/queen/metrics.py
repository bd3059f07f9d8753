"""The queen's Prometheus metrics: one `CollectorRegistry` per app, never the global one.

What is measured on the request path (counters and histograms) lives here, each labelled
child looked up once and kept (`labels()` costs a microsecond; a dict hit 50 ns). What lives
elsewhere (the registry's hives, workers and devices, the admission queues, the scheduling
script's counters) is read when Prometheus scrapes, by `queen.metrics_collector`, never
copied into gauges on the hot path.

Label values are bounded: routes are route templates (`queen.request_metrics`), models
their public names (a `file:` reference only by its file name) and at most
`MAX_MODEL_LABELS` of them (the rest are "other"), tenants their names, and a rejection's
reason one of `REJECTION_REASONS`. No job, request or worker id is ever a label.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from rbee.models.catalog import public_model
from rbee.queen.quotas import Account, Used

MAX_MODEL_LABELS = 32
OTHER = "other"
# Refusals before an answer starts (queen.request_metrics reads the envelope's code).
REJECTION_REASONS = frozenset({
    "queue_full", "no_capacity", "no_region_capacity", "policy_refused", "consent_required",
    "rate_limit_exceeded", "quota_exceeded", "concurrency_limit_exceeded"})

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0, 300.0)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2, 2.5)
FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.5, 3.0, 6.0, 15.0, 30.0, 60.0)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)
DECISION_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class ModelLabels:
    """Model names to label values: the first `cap` names seen keep their own, later ones
    are "other" (nothing is remembered for them, so hostile names grow nothing)."""

    def __init__(self, cap: int = MAX_MODEL_LABELS,
                 exists: Callable[[str], bool] | None = None) -> None:
        self._known: dict[str, str] = {}
        self._cap = cap
        # Whether a name is a model the queen has (a built-in, or one a worker serves): a
        # request is counted before anyone checked its model, and a client naming 32
        # made-up models must not take every label. None: any name.
        self.exists = exists

    def __call__(self, name: str) -> str:
        found = self._known.get(name)
        if found is not None:
            return found
        if len(self._known) >= self._cap or (self.exists is not None
                                             and not self.exists(name)):
            return OTHER
        label = self._known[name] = public_model(name)
        return label



M = TypeVar("M", bound=MetricWrapperBase)


class _Children(Generic[M]):
    """Labelled children of one family, looked up once per distinct label tuple (bounded:
    every label value is)."""

    def __init__(self, family: M) -> None:
        self._family = family
        self._cache: dict[tuple[str, ...], M] = {}

    def get(self, *values: str) -> M:
        child = self._cache.get(values)
        if child is None:
            child = self._cache[values] = self._family.labels(*values)
        return child


class QueenMetrics:
    """The families the queen records into, and the hooks that record (each a few dict
    hits and one observation)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.models = ModelLabels()
        r = self.registry
        self.requests = _Children(Counter(
            "rbee_requests", "HTTP requests answered, by route template, model and status "
            "(499: the client went away first)", ["route", "model", "status"], registry=r))
        self.duration = _Children(Histogram(
            "rbee_request_duration_seconds", "End-to-end time of a request, until its last "
            "byte was handed to the server", ["route", "model"], buckets=REQUEST_BUCKETS,
            registry=r))
        self.first_token = _Children(Histogram(
            "rbee_time_to_first_token_seconds", "Streamed completions: from the request's "
            "arrival to its first data frame", ["model"], buckets=FIRST_TOKEN_BUCKETS,
            registry=r))
        self.inter_token = _Children(Histogram(
            "rbee_inter_token_latency_seconds", "Streamed completions: time between "
            "consecutive data frames", ["model"], buckets=TOKEN_BUCKETS, registry=r))
        self.prompt_tokens = _Children(Counter(
            "rbee_prompt_tokens", "Prompt (input) tokens, as the engines reported them",
            ["model"], registry=r))
        self.completion_tokens = _Children(Counter(
            "rbee_completion_tokens", "Completion (output) tokens, as the engines reported "
            "them", ["model"], registry=r))
        self.rejections = _Children(Counter(
            "rbee_admission_rejections", "Requests refused before an answer started, by "
            "reason (the error code)", ["reason"], registry=r))
        self.queue_wait = _Children(Histogram(
            "rbee_queue_wait_seconds", "Time admitted requests waited in their model's "
            "queue (0 when a slot was free)", ["model"], buckets=WAIT_BUCKETS, registry=r))
        self.decisions = _Children(Histogram(
            "rbee_scheduler_decision_seconds", "Time the scheduler took to decide (route: "
            "pick a ready worker; place: choose a device for a new one)", ["decision"],
            buckets=DECISION_BUCKETS, registry=r))
        self.loads = _Children(Histogram(
            "rbee_model_load_seconds", "From asking a hive for a worker to the worker being "
            "ready", ["model"], buckets=LOAD_BUCKETS, registry=r))
        self._tenant_requests = _Children(Counter(
            "rbee_tenant_requests", "Requests charged to a tenant", ["tenant"], registry=r))
        self._tenant_tokens = _Children(Counter(
            "rbee_tenant_tokens", "Tokens a tenant used, by direction (in: prompt, out: "
            "completion)", ["tenant", "direction"], registry=r))
        self._tenant_cost = _Children(Counter(
            "rbee_tenant_cost", "Cost units a tenant was charged (at the models' prices)",
            ["tenant"], registry=r))

    def watch(self, collector: Collector) -> None:
        """Add a collector read at scrape time (queen.metrics_collector)."""
        self.registry.register(collector)

    # -- hooks (seams handed to admission, the dispatcher and the quotas)
    def queue_waited(self, model: str, seconds: float) -> None:
        self.queue_wait.get(self.models(model)).observe(seconds)

    def decided(self, decision: str, seconds: float) -> None:
        self.decisions.get(decision).observe(seconds)

    def loaded(self, model: str, seconds: float) -> None:
        self.loads.get(self.models(model)).observe(seconds)

    def rejected(self, reason: str) -> None:
        if reason in REJECTION_REASONS:
            self.rejections.get(reason).inc()

    def used(self, model: str, prompt: int, completion: int) -> None:
        label = self.models(model)
        if prompt:
            self.prompt_tokens.get(label).inc(prompt)
        if completion:
            self.completion_tokens.get(label).inc(completion)

    def charged(self, account: Account, used: Used | None, cost: float) -> None:
        """A tenant's settled request (the quotas' recorder): its usage counters."""
        tenant = account.tenant or account.tenant_id
        self._tenant_requests.get(tenant).inc()
        if used is not None:
            self._tenant_tokens.get(tenant, "in").inc(used.prompt_tokens)
            self._tenant_tokens.get(tenant, "out").inc(used.completion_tokens)
            self._tenant_cost.get(tenant).inc(cost)
