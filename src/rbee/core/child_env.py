"""The environment a daemon hands its children: each gets its own credential and no other.

One place lists every secret rbee reads from the environment, so a new one cannot leak into
children by default (a child's environment is readable in /proc by its user, and by any code
the child runs: an engine, a model loader).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Every credential rbee takes from the environment, for any process kind.
RBEE_SECRETS = frozenset({
    "RBEE_QUEEN_API_TOKEN", "RBEE_API_TOKEN",  # the queen's public API (server and CLI)
    "RBEE_QUEEN_METRICS_TOKEN",  # Prometheus's, for the queen's /metrics
    "RBEE_QUEEN_HIVE_TOKEN", "RBEE_QUEEN_WORKER_TOKEN",  # the local hive's pair, as given
    "RBEE_HIVE_TOKEN", "RBEE_HIVE_WORKER_TOKEN",  # a hive's pair
    "RBEE_WORKER_TOKEN",  # a worker's own
})
# Hub credentials: a hive downloads models with them; a worker only reads local files.
HUB_SECRETS = frozenset({"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"})


def hive_env(token: str, worker_token: str,
             base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The local hive's environment: the parent's, minus every rbee secret, plus its pair."""
    env = _scrubbed(os.environ if base is None else base, RBEE_SECRETS)
    env.update(RBEE_HIVE_TOKEN=token, RBEE_HIVE_WORKER_TOKEN=worker_token)
    return env


def worker_env(worker_token: str | None,
               base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A worker's environment: the hive's, minus every secret, plus its own token if any."""
    env = _scrubbed(os.environ if base is None else base, RBEE_SECRETS | HUB_SECRETS)
    if worker_token:
        env["RBEE_WORKER_TOKEN"] = worker_token
    return env


def _scrubbed(base: Mapping[str, str], secrets: frozenset[str]) -> dict[str, str]:
    return {k: v for k, v in base.items() if k not in secrets}
