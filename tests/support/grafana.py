"""The Grafana board in deploy/grafana: every panel's queries, ready for a real Prometheus.

Grafana substitutes its variables before it queries; so does `queries`: the rate window
with a fixed one, the model template variable with its "All" value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "rbee-dashboard.json"
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$model": ".+"}


@dataclass(frozen=True)
class PanelQuery:
    row: str
    panel: str
    expr: str  # as Prometheus gets it (variables substituted)


def board(path: Path = BOARD) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(path.read_text())
    return found


def queries(path: Path = BOARD) -> list[PanelQuery]:
    """Every target of every panel, in board order, with the row it sits under."""
    found: list[PanelQuery] = []
    row = ""
    for panel in board(path)["panels"]:
        if panel["type"] == "row":
            row = panel["title"]
            continue
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(name, value)
            found.append(PanelQuery(row, panel["title"], expr))
    return found
