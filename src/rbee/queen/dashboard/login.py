"""Failed dashboard logins, counted per client address: a guessing loop gets a 429.

API keys carry 256 random bits, so guessing is hopeless anyway; the limit keeps a loop
from filling the audit log and from costing the queen a CPU.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from rbee.core.clock import Clock

MAX_FAILURES = 10  # per address per window
WINDOW = 60.0  # seconds
MAX_ADDRESSES = 4096  # the oldest addresses are forgotten first


class LoginThrottle:
    def __init__(self, clock: Clock, max_failures: int = MAX_FAILURES,
                 window: float = WINDOW) -> None:
        self._clock = clock
        self._max = max_failures
        self._window = window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> float | None:
        """Seconds until `address` may try again, or None when it may now."""
        seen = self._failures.get(address)
        if seen is None:
            return None
        now = self._clock.monotonic()
        while seen and now - seen[0] > self._window:
            seen.popleft()
        if len(seen) < self._max:
            return None
        return self._window - (now - seen[0])

    def failed(self, address: str) -> None:
        seen = self._failures.setdefault(address, deque(maxlen=self._max))
        self._failures.move_to_end(address)
        seen.append(self._clock.monotonic())
        while len(self._failures) > MAX_ADDRESSES:
            self._failures.popitem(last=False)
