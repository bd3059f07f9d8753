"""deploy/: the Prometheus config is valid, and the Grafana board is well formed (its
queries are checked against a real Prometheus in tests/e2e/test_metrics_scrape.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.support.grafana import BOARD, board, queries

PROMETHEUS_YML = BOARD.parents[1] / "prometheus.yml"


def test_the_board_has_the_rows_and_a_datasource_variable() -> None:
    dash = board()
    rows = [p["title"] for p in dash["panels"] if p["type"] == "row"]
    assert rows == ["Cluster", "Models", "Latency", "Devices", "Tenants"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dash["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_every_query_names_an_rbee_metric_and_no_unresolved_variable() -> None:
    found = queries()
    assert len(found) >= 25
    for q in found:
        assert "rbee_" in q.expr, q
        assert "$" not in q.expr, q  # every Grafana variable is substituted


def test_the_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    job = config["scrape_configs"][0]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:7833"]
    assert job["authorization"]["type"] == "Bearer"
    token = tmp_path / "token"
    token.write_text("t\n")
    job["authorization"]["credentials_file"] = str(token)  # the one path that must exist
    checked_file = tmp_path / "prometheus.yml"
    checked_file.write_text(yaml.safe_dump(config))
    checked = subprocess.run(["promtool", "check", "config", str(checked_file)],
                             capture_output=True, text=True, timeout=30, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
