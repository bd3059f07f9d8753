"""A GPU driver that hangs (NVML blocks) does not stop the hive: its API answers and its
telemetry keeps going with the last devices it read. The real hive app under uvicorn; the
probe and the queen are stand-ins (a probe that blocks, a transport that records)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn

from rbee.api.cluster import Device
from rbee.hive.app import create_app
from rbee.hive.launcher import SubprocessLauncher
from rbee.hive.services import HiveServices
from rbee.hive.supervisor import Supervisor, SupervisorConfig
from rbee.hive.telemetry import TelemetryReporter
from tests.support.daemons import free_port

GPU = Device(id="cuda:0", kind="cuda", name="wedged GPU", memory_total=8 << 30,
             memory_free=8 << 30)


class HangingProbe:
    """Answers once; from then on every call blocks, as NVML does on a wedged driver."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = threading.Event()

    def devices(self) -> list[Device]:
        self.calls += 1
        if self.calls > 1:
            self.release.wait(15)  # bounded only so that a failing test ends
        return [GPU]


@dataclass
class Queen:
    """Records each telemetry report's device ids, with when it came."""

    reports: list[tuple[float, list[str]]] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.reports.append((time.monotonic(), [d["id"] for d in body["devices"]]))
        return httpx.Response(200, json={})


@pytest.fixture
def hung_hive(tmp_path: Path) -> Iterator[tuple[str, HangingProbe, Queen]]:
    probe, queen = HangingProbe(), Queen()
    supervisor = Supervisor(SupervisorConfig(hive_id="h", bind_host="127.0.0.1",
                                             advertise_host="127.0.0.1", home=tmp_path),
                            SubprocessLauncher(), {"cuda:0"})
    http = httpx.AsyncClient(transport=httpx.MockTransport(queen.handle))
    port = free_port()
    reporter = TelemetryReporter(hive_id="h", url=f"http://127.0.0.1:{port}",
                                 queen_url="http://queen.test", token=None, probe=probe,
                                 supervisor=supervisor, http=http, interval=0.1,
                                 probe_deadline=0.3)
    services = HiveServices(hive_id="h", probe=probe, supervisor=supervisor, http=http,
                            reporter=reporter)
    server = uvicorn.Server(uvicorn.Config(create_app(services), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on", ws="none"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}", probe, queen
    finally:
        probe.release.set()
        server.should_exit = True
        thread.join(15)


def test_a_hung_device_probe_leaves_the_hive_answering_and_reporting(
        hung_hive: tuple[str, HangingProbe, Queen], caplog: pytest.LogCaptureFixture) -> None:
    url, probe, queen = hung_hive
    caplog.set_level(logging.WARNING, logger="rbee.hive.probe_guard")
    deadline = time.monotonic() + 10
    while probe.calls < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert probe.calls == 2  # the probe is stuck from here on
    stuck_at = time.monotonic()
    with httpx.Client(base_url=url, timeout=1.0) as client:  # a read past 1 s fails
        for _ in range(10):
            started = time.monotonic()
            assert client.get("/health").json()["status"] == "ok"
            assert time.monotonic() - started < 1.0
            time.sleep(0.1)
    later = [devices for at, devices in queen.reports if at > stuck_at + 0.5]
    assert len(later) >= 3  # telemetry keeps flowing: the queen does not mark the hive down
    assert all(devices == ["cuda:0"] for devices in later)  # with the last good devices
    assert probe.calls == 2  # no second probe started while the first is stuck
    warnings = [r.message for r in caplog.records if "gave no answer" in r.message]
    assert len(warnings) == 1  # said once, not once per report


def test_capabilities_answer_while_the_driver_hangs(
        hung_hive: tuple[str, HangingProbe, Queen]) -> None:
    """`rbee hive refresh` asks for the devices: with the driver wedged the answer comes
    within the guard's deadline (the last devices read, through the telemetry's guard), and
    asking again parks no second thread in the driver."""
    url, probe, _ = hung_hive
    deadline = time.monotonic() + 10
    while probe.calls < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    with httpx.Client(base_url=url, timeout=2.0) as client:
        for _ in range(3):
            started = time.monotonic()
            r = client.get("/v1/capabilities")
            assert r.status_code == 200
            assert [d["id"] for d in r.json()["devices"]] == ["cuda:0"]
            assert time.monotonic() - started < 1.5
    assert probe.calls == 2  # one guard: its stuck probe is the only one
