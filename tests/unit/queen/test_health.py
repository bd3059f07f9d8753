"""What the queen's /health says, for each combination of local and remote hives."""

from __future__ import annotations

import json
import signal
from typing import Any

import httpx

from rbee.api.cluster import HiveTelemetry
from rbee.client import QueenClient
from rbee.core.clock import FakeClock
from rbee.queen.local_hive import HIVE_ID
from rbee.queen.registry import Registry
from rbee.queen.routes.cluster import health_report
from rbee.queen.supervision import HiveSupervisor
from tests.support.fake_hive import FakeHive


def report(reg: Registry, hive_id: str) -> None:
    reg.report(HiveTelemetry(hive_id=hive_id, url=f"http://{hive_id}", version="0", pid=1,
                             devices=[], workers=[]))


def test_a_queen_without_a_local_hive_is_ok_once_a_hive_is_up() -> None:
    clock = FakeClock()
    reg = Registry(clock, telemetry_interval=1.0)
    before = health_report(reg, None)
    assert before["status"] == "unavailable" and before["local_hive"] is None
    report(reg, "gpu1")
    assert health_report(reg, None) | {"version": "x"} == {
        "status": "ok", "version": "x", "hives": 1, "hives_up": ["gpu1"], "local_hive": None}
    clock.advance(3.5)  # silent for three intervals
    after = health_report(reg, None)
    assert after["status"] == "unavailable" and after["hives"] == 1 and after["hives_up"] == []


def test_a_queen_with_a_local_hive_needs_it_up() -> None:
    clock = FakeClock()
    reg = Registry(clock, telemetry_interval=1.0)
    hive = FakeHive()
    sup = HiveSupervisor(hive, clock, on_exit=lambda: reg.suspect(HIVE_ID))
    assert health_report(reg, sup)["status"] == "unavailable"  # not registered yet
    report(reg, HIVE_ID)
    assert health_report(reg, sup)["status"] == "ok"
    report(reg, "gpu1")
    reg.suspect(HIVE_ID)  # what the supervisor does when the local hive dies
    sup.state, sup.last_exit = "restarting", f"killed by {signal.SIGKILL.name}"
    body = health_report(reg, sup)
    assert body["status"] == "degraded" and body["hives_up"] == ["gpu1"]  # gpu1 still serves
    assert body["local_hive"] == {"up": False, "supervision": "restarting", "restarts": 0,
                                  "last_exit": "killed by SIGKILL"}
    clock.advance(3.5)
    assert health_report(reg, sup)["status"] == "unavailable"
    report(reg, HIVE_ID)
    assert health_report(reg, sup)["status"] == "ok"


def test_the_cli_sees_a_queen_without_hives_as_running() -> None:
    # Else `rbee infer` would start a second queen beside one whose hive is restarting.
    def health(status: int, body: bytes) -> dict[str, Any] | None:
        transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body))
        with QueenClient("http://queen", transport=transport) as client:
            return client.health()

    unavailable = b'{"status": "unavailable", "version": "1", "hives": 0, "hives_up": []}'
    assert health(503, unavailable) == json.loads(unavailable)
    assert health(200, unavailable.replace(b"unavailable", b"ok")) is not None
    assert health(503, b"<html>bad gateway</html>") is None  # not a queen
    assert health(502, b'{"status": "x"}') is None
