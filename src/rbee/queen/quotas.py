"""Quotas and rate limits: reserve a request's worst case before dispatch, settle its real use.

Everything here runs on the queen's event loop and never awaits between checking a limit and
booking against it, so concurrent requests cannot both see the same room: 100 requests against
a limit of 10 admit exactly 10 (LiteLLM's #18730 checks, then awaits, then books).

Windows are fixed, not sliding: a UTC minute, a UTC day and a UTC calendar month (the budget).
A fixed window is a few integers per tenant and key, costs O(1) per request, and its reset time
is exact (what `x-ratelimit-reset-*` and `Retry-After` say); its known cost is that a burst at
a minute's end and another at the next minute's start may together reach twice the per-minute
rate. Requests per minute and tokens per minute are in-memory only (a restart forgives the
current minute); tokens per day and the month's cost restart from the usage table.

A request books its worst case (`Demand`: the prompt's estimated tokens + max tokens, the
worst cost) on its tenant's meter and its key's; at completion the engines' own counts
(`Used`) replace it. A request whose output was not bounded (no max_tokens) books the
engine's default and may settle above it: a running answer is never cut for a token limit,
the next request is refused instead. A request that never reached a worker gives its tokens
and cost back (it still counts as a request).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rbee.api.quotas import Limits, ModelPrices, Prices, Scope
from rbee.core.clock import Clock
from rbee.core.errors import RbeeError

MINUTE, DAY = 60, 86_400


class QuotaExceeded(RbeeError):
    """A limit of the caller's tenant or key refuses this request (429; Retry-After and the
    x-ratelimit-* headers say when it would fit)."""

    http_status = 429
    openai_type = "rate_limit_error"

    def __init__(self, message: str, *, code: str, retry_after: float,
                 headers: dict[str, str], param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.code = code
        self.retry_after = retry_after
        self.headers = headers


@dataclass(frozen=True)
class Demand:
    """A request's worst case, booked before it is dispatched."""

    tokens: int = 0
    cost: float = 0.0


@dataclass(frozen=True)
class Used:
    """What the engine says a request used."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    audio_seconds: float = 0.0
    images: int = 0
    video_seconds: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def cost(self, prices: Prices | None) -> float:
        if prices is None:
            return 0.0
        return (self.prompt_tokens * prices.input_tokens
                + self.completion_tokens * prices.output_tokens
                + self.audio_seconds * prices.audio_seconds + self.images * prices.images
                + self.video_seconds * prices.video_seconds)


@dataclass(frozen=True)
class Account:
    """Whose meters a request books on: its tenant's and its key's."""

    tenant_id: str
    key_id: str
    tenant: str | None = None


@dataclass
class Meter:
    """One tenant's or key's counters in the current windows."""

    limits: Limits = field(default_factory=Limits)
    minute: int = -1
    requests: int = 0  # this minute
    tokens: int = 0  # this minute
    day: int = -1
    day_tokens: int = 0
    month: int = -1
    month_cost: float = 0.0
    active: int = 0  # requests in flight

    def roll(self, minute: int, day: int, month: int) -> None:
        if minute != self.minute:
            self.minute, self.requests, self.tokens = minute, 0, 0
        if day != self.day:
            self.day, self.day_tokens = day, 0
        if month != self.month:
            self.month, self.month_cost = month, 0.0


@dataclass(frozen=True)
class Windows:
    now: float
    minute: int
    day: int
    month: int
    month_end: float

    @classmethod
    def at(cls, now: float, last: Windows | None = None) -> Windows:
        """The windows `now` falls in; within `last`'s minute, its calendar part is reused
        (a datetime per minute, not per request)."""
        minute = int(now // MINUTE)
        if last is not None and last.minute == minute:
            return cls(now, minute, last.day, last.month, last.month_end)
        d = dt.datetime.fromtimestamp(now, dt.UTC)
        nxt = dt.datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=dt.UTC)
        return cls(now, minute, int(now // DAY), d.year * 12 + d.month - 1, nxt.timestamp())

    def minute_left(self) -> float:
        return (self.minute + 1) * MINUTE - self.now

    def day_left(self) -> float:
        return (self.day + 1) * DAY - self.now


class Charge:
    """One admitted request's booking. `settle` (its real use) or `refund` (it never reached a
    worker) end it; either is idempotent, and the first one wins."""

    def __init__(self, quotas: Quotas, account: Account, model: str, demand: Demand,
                 meters: tuple[Meter, ...], windows: Windows, headers: dict[str, str]) -> None:
        self._quotas = quotas
        self.account = account
        self.model = model
        self.demand = demand
        self._meters = meters
        self._windows = windows
        self.headers = headers  # x-ratelimit-* for the answer (empty: the key has no limits)
        self.done = False

    def settle(self, used: Used | None) -> None:
        """`used` None: the engine's count never arrived (a stream cut or abandoned): the
        worst case booked stays booked, and the usage row counts the request only."""
        if self.done:
            return
        self.done = True
        self._quotas._settle(self, used)

    def refund(self) -> None:
        if self.done:
            return
        self.done = True
        self._quotas._settle(self, Used(), record=False)

    def book(self, tokens: int, cost: float) -> None:
        """Move this request's booking by (tokens, cost), in the windows it was booked in."""
        now = self._windows
        for m in self._meters:
            if m.minute == now.minute:
                m.tokens += tokens
            if m.day == now.day:
                m.day_tokens += tokens
            if m.month == now.month:
                m.month_cost += cost

    def release(self) -> None:
        for m in self._meters:
            m.active -= 1


Recorder = Callable[[Account, str, Used | None, float, float], None]


class Quotas:
    """Limits and meters per tenant and key; prices per model. Loop-only state."""

    def __init__(self, clock: Clock, record: Recorder) -> None:
        self._clock = clock
        self._record = record  # (account, model, used, cost, now): the usage table's row
        self._meters: dict[tuple[Scope, str], Meter] = {}
        self._prices: dict[str, Prices] = {}
        self._seed: dict[tuple[Scope, str], tuple[int, int, int, float]] = {}
        self._held: dict[str, Charge] = {}  # job id -> its charge, until the job runs
        self._windows: Windows | None = None  # the last request's

    def _now(self) -> Windows:
        self._windows = Windows.at(self._clock.time(), self._windows)
        return self._windows

    # -- set-up and admin (on the loop)
    def load(self, limits: Iterable[tuple[Scope, str, Limits]], prices: Iterable[ModelPrices],
             totals: Iterable[tuple[str, str, int, float]], now: float) -> None:
        """Start from the stored limits, prices and today's/this month's usage."""
        w = Windows.at(now)
        for scope, id_, tokens, cost in totals:
            self._seed[(scope, id_)] = (w.day, tokens, w.month, cost)  # type: ignore[index]
        for scope, id_, lim in limits:
            self.meter(scope, id_).limits = lim
        for p in prices:
            self._prices[p.model] = Prices(**p.model_dump(exclude={"model"}))

    def set_limits(self, scope: Scope, id_: str, limits: Limits) -> None:
        self.meter(scope, id_).limits = limits  # the next request sees them

    def limits(self, scope: Scope, id_: str) -> Limits:
        found = self._meters.get((scope, id_))
        return found.limits if found else Limits()

    def set_prices(self, model: str, prices: Prices | None) -> None:
        if prices is None:
            self._prices.pop(model, None)
        else:
            self._prices[model] = prices

    def prices(self, model: str) -> Prices | None:
        return self._prices.get(model)

    def price_of(self, model: str) -> Callable[[int, int, float], float]:
        """(input tokens, output tokens, audio seconds) -> cost, at `model`'s prices."""
        prices = self._prices.get(model)
        return lambda i, o, a: Used(i, o, a).cost(prices)

    def meter(self, scope: Scope, id_: str) -> Meter:
        found = self._meters.get((scope, id_))
        if found is None:
            found = self._meters[(scope, id_)] = Meter()
            seed = self._seed.pop((scope, id_), None)
            if seed is not None:
                found.day, found.day_tokens, found.month, found.month_cost = seed
        return found

    def in_flight(self, scope: Scope, id_: str) -> int:
        """Requests of a tenant or key still running (without making a meter for it)."""
        found = self._meters.get((scope, id_))
        return found.active if found is not None else 0

    # -- the hot path
    def reserve(self, account: Account, model: str, demand: Demand) -> Charge:
        """Book `demand` on the tenant's and the key's meters, or raise QuotaExceeded having
        booked nothing. No await in here: that is what makes it atomic."""
        w = self._now()
        meters = (self.meter("tenant", account.tenant_id), self.meter("key", account.key_id))
        for m in meters:
            m.roll(w.minute, w.day, w.month)
        for scope, m in zip(("tenant", "key"), meters, strict=True):
            self._check(scope, m, demand, w)
        for m in meters:
            m.requests += 1
            m.tokens += demand.tokens
            m.day_tokens += demand.tokens
            m.month_cost += demand.cost
            m.active += 1
        return Charge(self, account, model, demand, meters, w, _headers(meters, w))

    def _settle(self, charge: Charge, used: Used | None, record: bool = True) -> None:
        charge.release()
        now = self._clock.time()
        if used is None:  # unknown: the worst case stays booked
            self._record(charge.account, charge.model, None, 0.0, now)
            return
        cost = used.cost(self._prices.get(charge.model))
        charge.book(used.tokens - charge.demand.tokens, cost - charge.demand.cost)
        if record:
            self._record(charge.account, charge.model, used, cost, now)

    def hold(self, job_id: str, charge: Charge) -> None:
        """A job's charge, booked when it was submitted, for the job to settle."""
        self._held[job_id] = charge

    def take(self, job_id: str) -> Charge | None:
        return self._held.pop(job_id, None)

    def usage_of(self, account: Account) -> dict[str, float | int | None]:
        """The tenant's use in the current windows, for scheduling scripts."""
        w = self._now()
        m = self.meter("tenant", account.tenant_id)
        m.roll(w.minute, w.day, w.month)
        budget = m.limits.budget
        return {"requests_minute": m.requests, "tokens_minute": m.tokens,
                "tokens_day": m.day_tokens, "cost_month": m.month_cost, "active": m.active,
                "budget_left": None if budget is None else budget - m.month_cost}

    def _check(self, scope: str, m: Meter, demand: Demand, w: Windows) -> None:
        lim = m.limits
        whose = f"this {scope}"
        if lim.concurrent_requests is not None and m.active >= lim.concurrent_requests:
            raise _refused(f"{whose} has {m.active} requests running, its limit is "
                           f"{lim.concurrent_requests} at a time", "concurrency_limit_exceeded",
                           1.0, m, w)
        if lim.requests_per_minute is not None and m.requests >= lim.requests_per_minute:
            raise _refused(f"{whose} made {m.requests} requests this minute, its limit is "
                           f"{lim.requests_per_minute} per minute", "rate_limit_exceeded",
                           w.minute_left(), m, w)
        if lim.tokens_per_minute is not None:
            if demand.tokens > lim.tokens_per_minute:
                raise _refused(f"this request may use up to {demand.tokens} tokens, more than "
                               f"{whose}'s limit of {lim.tokens_per_minute} tokens per minute: "
                               "lower max_tokens or shorten the prompt", "rate_limit_exceeded",
                               w.minute_left(), m, w, param="max_tokens")
            if m.tokens + demand.tokens > lim.tokens_per_minute:
                raise _refused(f"{whose} has used or reserved {m.tokens} of its "
                               f"{lim.tokens_per_minute} tokens per minute; this request may "
                               f"use up to {demand.tokens}", "rate_limit_exceeded",
                               w.minute_left(), m, w)
        if lim.tokens_per_day is not None and m.day_tokens + demand.tokens > lim.tokens_per_day:
            raise _refused(f"{whose} has used or reserved {m.day_tokens} of its "
                           f"{lim.tokens_per_day} tokens per day; this request may use up to "
                           f"{demand.tokens}", "quota_exceeded", w.day_left(), m, w)
        if lim.budget is not None and m.month_cost + demand.cost > lim.budget:
            raise _refused(f"{whose} has spent or reserved {m.month_cost:g} of its monthly "
                           f"budget of {lim.budget:g} cost units; this request may cost up "
                           f"to {demand.cost:g}", "quota_exceeded", w.month_end - w.now, m, w)


def _refused(message: str, code: str, retry_after: float, meter: Meter, w: Windows,
             param: str | None = None) -> QuotaExceeded:
    return QuotaExceeded(message, code=code, retry_after=retry_after,
                         headers=_headers((meter,), w), param=param)


def _headers(meters: Iterable[Meter], w: Windows) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for the tightest per-minute limit of these meters (none
    when none has one). Remaining counts what this request booked already."""
    headers: dict[str, str] = {}
    reset = _duration(w.minute_left())
    req = [(m.limits.requests_per_minute, m.requests) for m in meters
           if m.limits.requests_per_minute is not None]
    if req:
        limit, used = min(req, key=lambda p: (p[0] or 0) - p[1])
        headers |= {"x-ratelimit-limit-requests": str(limit),
                    "x-ratelimit-remaining-requests": str(max(0, (limit or 0) - used)),
                    "x-ratelimit-reset-requests": reset}
    tok = [(m.limits.tokens_per_minute, m.tokens) for m in meters
           if m.limits.tokens_per_minute is not None]
    if tok:
        limit, used = min(tok, key=lambda p: (p[0] or 0) - p[1])
        headers |= {"x-ratelimit-limit-tokens": str(limit),
                    "x-ratelimit-remaining-tokens": str(max(0, (limit or 0) - used)),
                    "x-ratelimit-reset-tokens": reset}
    return headers


def _duration(seconds: float) -> str:
    """As OpenAI writes resets: "1s", "6m0s", "0.5s"."""
    if seconds < 1:
        return f"{max(seconds, 0.001):.3g}s"
    whole = math.ceil(seconds)
    return f"{whole // 60}m{whole % 60}s" if whole >= 60 else f"{whole}s"
