"""Python's cyclic garbage collector, tuned for a daemon on the request path.

With CPython's defaults (a young-generation collection every 700 net allocations, a full one
every 100 of those when enough survived), a queen tracking 1,000 workers spent up to 30-50 ms
in one full collection, and whichever request was deciding paid it: the maximum of a
scheduling decision was ten times its p99 (bench/scheduler.py, "registry"). Two changes:

- `settle()`: once start-up is done, everything alive then (imported modules, the app, the
  settings) moves to the permanent generation (`gc.freeze`): no collection walks it again.
- `tune()`: fewer, larger young collections, and full ones rarer. Memory held by garbage
  cycles lingers a little longer; rbee's objects rarely form cycles (reference counting
  frees the rest at once).
"""

from __future__ import annotations

import gc

YOUNG, MIDDLE, OLD = 20_000, 20, 20  # gc.set_threshold's three thresholds


def tune() -> None:
    gc.set_threshold(YOUNG, MIDDLE, OLD)


def settle() -> None:
    """After start-up: collect once, then freeze what survived."""
    gc.collect()
    gc.freeze()
