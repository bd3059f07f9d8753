"""The machines in hives.conf: install, start, stop, remove and inspect their hives over SSH.

The queen does this work (as jobs whose narration streams to the CLI); hives.conf says where
the machines are, `HiveStore` remembers the secret each installed hive was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict
from typing import Any, Protocol

from rbee import __version__
from rbee.core.clock import Clock
from rbee.core.errors import HiveNotInstalled, InvalidRequest, RemoteCommandFailed, RemoteError
from rbee.queen.credentials import Credentials, HiveCredentials
from rbee.queen.dispatch import Narrator
from rbee.queen.hive_client import HiveClient
from rbee.queen.registry import Registry
from rbee.queen.settings import QueenSettings
from rbee.remote import hives_conf
from rbee.remote.hives_conf import HiveEntry
from rbee.remote.installer import Installed, Launch, RemoteHive
from rbee.remote.platform import Platform, wheels_fit
from rbee.remote.ssh import Shell, connect
from rbee.remote.wheelhouse import (
    Wheelhouse,
    WheelhouseBuilder,
    data_pins,
    default_find_links,
)
from rbee.storage.hives import HiveRow, HiveStore
from rbee.web.auth import is_loopback

Connector = Callable[[HiveEntry], AbstractAsyncContextManager[Shell]]
POLL_SECONDS = 0.1


class WheelSource(Protocol):
    async def __call__(self, narrate: Callable[[str], None],
                       extras: tuple[str, ...] = ()) -> Wheelhouse: ...


class Fleet:
    def __init__(self, settings: QueenSettings, registry: Registry, credentials: Credentials,
                 store: HiveStore, hives: HiveClient, clock: Clock, *,
                 connector: Connector = connect, wheels: WheelSource | None = None,
                 traces: str | None = None) -> None:
        self._settings = settings
        self._traces = traces  # where the queen exports traces: its hives export there too
        self._registry = registry
        self._credentials = credentials
        self._store = store
        self._hives = hives
        self._clock = clock
        self._connect = connector
        self._wheels = wheels or self._build_wheels
        self._locks: dict[str, asyncio.Lock] = {}
        for row in store.all():  # a restarted queen accepts the hives it installed
            credentials.set(row.id, HiveCredentials(row.token, row.worker_token))

    # -- views -------------------------------------------------------------------------

    def entries(self) -> dict[str, HiveEntry]:
        return hives_conf.load(self._settings.hives_conf)

    def entry(self, name: str) -> HiveEntry:
        return hives_conf.get(self._settings.hives_conf, name)

    def describe(self, name: str, entry: HiveEntry | None) -> dict[str, Any]:
        t = self._registry.telemetry(name)
        row = self._store.get(name)
        seen = self._registry.seen_ago(name)
        return {
            "id": name, "state": self._registry.state(name),
            "host": entry.hostname if entry else "127.0.0.1",
            "ssh": entry.target if entry else None,
            "hive_port": entry.hive_port if entry else self._settings.hive_port,
            "region": entry.region if entry else None, "labels": entry.labels if entry else {},
            "installed": row.installed if row else None,
            "version": t.version if t else None, "url": t.url if t else None,
            "last_seen_s": round(seen, 2) if seen is not None else None,
            "devices": [d.model_dump() for d in t.devices] if t else [],
            "workers": sum(1 for w in self._registry.workers() if w.hive_id == name),
        }

    def list(self) -> list[dict[str, Any]]:
        entries = self.entries()
        names = sorted(set(entries) | set(self._registry.hive_ids()))
        return [self.describe(n, entries.get(n)) for n in names]

    # -- operations --------------------------------------------------------------------

    async def ssh_test(self, name: str, out: Narrator) -> dict[str, Any]:
        entry = self.entry(name)
        out.narrate("ssh", f"connecting to {entry.target}")
        started = time.perf_counter()
        async with self._connect(entry) as sh:
            connected = time.perf_counter()
            remote = RemoteHive(sh, entry, out.narrate)
            found = await remote.probe()
            installed = await remote.installed()
        out.narrate("ssh", f"{name}: reachable, {found.describe()}")
        fit, why = wheels_fit(Platform.here(), found)
        return {"hive_id": name, "reachable": True, "target": entry.target,
                "connect_ms": round((connected - started) * 1000, 1),
                "platform": asdict(found), "offline_install": fit, "offline_reason": why,
                "installed": asdict(installed) if installed else None}

    async def install(self, name: str, out: Narrator) -> dict[str, Any]:
        entry = self.entry(name)
        async with self._lock(name):
            out.narrate("ssh", f"connecting to {entry.target}")
            async with self._connect(entry) as sh:
                remote = RemoteHive(sh, entry, out.narrate)
                found = await remote.probe()
                out.narrate("probe", f"{name}: {found.describe()}")
                queen_url = self._queen_url(entry, sh)
                fit, why = wheels_fit(Platform.here(), found)
                wheels = None
                if fit:
                    wheels = await self._wheels(lambda m: out.narrate("wheels", m),
                                                entry.extras)
                else:
                    out.narrate("wheels", f"cannot push wheels: {why}")
                installed = await remote.install(found, wheels, _percent_steps(out, "push"),
                                                 data_pins())
                row = self._store.get(name)
                creds = (HiveCredentials(row.token, row.worker_token) if row
                         else HiveCredentials.new())
                try:
                    await self._restart(remote, entry, installed, creds, queen_url, out)
                except BaseException:
                    await self._undo_start(remote, installed, name, keep_creds=row is not None)
                    raise
                self._store.save(HiveRow(name, creds.token, creds.worker_token,
                                         asdict(installed)), self._clock.time())
        out.narrate("install", f"{name}: rbee {installed.version} installed and registered")
        return {"hive": self.describe(name, entry), "installed": asdict(installed)}

    async def start(self, name: str, out: Narrator) -> dict[str, Any]:
        entry = self.entry(name)
        async with self._lock(name):
            creds = self._credentials.get(name)
            if creds is None:
                raise HiveNotInstalled(f"{name}: this queen never installed a hive there",
                                       hint=f"run `rbee hive install {name}`")
            async with self._connect(entry) as sh:
                remote = RemoteHive(sh, entry, out.narrate)
                await remote.probe()
                # systemd keeps it only while the user may linger: checked at every start
                installed = await remote.supervised(await remote.require_installed())
                await self._restart(remote, entry, installed, creds,
                                    self._queen_url(entry, sh), out, only_if_stopped=True)
        return {"hive": self.describe(name, entry)}

    async def stop(self, name: str, out: Narrator) -> dict[str, Any]:
        entry = self.entry(name)
        async with self._lock(name), self._connect(entry) as sh:
            remote = RemoteHive(sh, entry, out.narrate)
            await remote.probe()
            installed = await remote.installed()
            if installed is None:
                raise HiveNotInstalled(f"{name}: rbee is not installed there",
                                       hint=f"run `rbee hive install {name}`")
            stopped = await remote.stop(installed)
            self._registry.forget(name)
        out.narrate("stop", f"{name}: {'stopped' if stopped else 'was not running'}")
        return {"hive_id": name, "stopped": stopped}

    async def uninstall(self, name: str, out: Narrator) -> dict[str, Any]:
        entry = self.entry(name)
        async with self._lock(name), self._connect(entry) as sh:
            remote = RemoteHive(sh, entry, out.narrate)
            await remote.probe()
            await remote.uninstall(await remote.installed())
            self._registry.forget(name)
            self._store.delete(name)
            self._credentials.drop(name)
        out.narrate("uninstall", f"{name}: rbee removed")
        return {"hive_id": name, "uninstalled": True}

    async def status(self, name: str, out: Narrator) -> dict[str, Any]:
        """Never fails on SSH trouble: it is what the user runs to find out what is wrong."""
        entry = self.entries().get(name)
        result = self.describe(name, entry)
        if entry is None:
            return result
        try:
            async with self._connect(entry) as sh:
                remote = RemoteHive(sh, entry, out.narrate)
                await remote.probe()
                installed = await remote.installed()
                running = await remote.running(installed.method) if installed else False
            result |= {"ssh": {"reachable": True, "target": entry.target},
                       "remote": {"installed": asdict(installed) if installed else None,
                                  "running": running,
                                  "version_matches": bool(installed
                                                          and installed.version == __version__)}}
        except RemoteError as exc:
            result |= {"ssh": {"reachable": False, "target": entry.target,
                               "error": exc.message}}
        return result

    async def refresh(self, name: str, out: Narrator) -> dict[str, Any]:
        devices = await self._hives.devices(name, self._registry.hive_url(name))
        self._registry.set_devices(name, devices)
        out.narrate("refresh", f"{name}: {len(devices)} device(s)")
        return {"hive_id": name, "devices": [d.model_dump() for d in devices]}

    # -- helpers -----------------------------------------------------------------------

    async def _restart(self, remote: RemoteHive, entry: HiveEntry, installed: Installed,
                       creds: HiveCredentials, queen_url: str, out: Narrator, *,
                       only_if_stopped: bool = False) -> None:
        """(Re)configure and start the hive, then wait until it has registered."""
        if only_if_stopped and await remote.running(installed.method) \
                and self._registry.is_up(entry.name):
            out.narrate("start", f"{entry.name} is already running and registered")
            return
        await remote.stop(installed)
        self._credentials.set(entry.name, creds)
        await remote.configure(installed, Launch(queen_url, creds.token, creds.worker_token,
                                                 self._settings.telemetry_interval,
                                                 self._traces))
        self._registry.forget(entry.name)
        await remote.start(installed)
        out.narrate("register", f"waiting for {entry.name} to register with {queen_url}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.hive_register_timeout
        while not self._registry.is_up(entry.name):
            if loop.time() > deadline:
                log = await remote.log_tail()
                raise RemoteCommandFailed(
                    f"{entry.name}: the hive started but did not register with {queen_url} "
                    f"within {self._settings.hive_register_timeout:.0f}s; its log ends: "
                    f"{log[-600:] or '(empty)'}", hint="check that the machine can reach "
                    "that address (firewall?), or set the queen's --public-url")
            await asyncio.sleep(POLL_SECONDS)
        out.narrate("register", f"{entry.name} registered")

    async def _undo_start(self, remote: RemoteHive, installed: Installed, name: str, *,
                          keep_creds: bool) -> None:
        """An install whose hive never registered: stop it, and remove a fresh install
        (its unit too, and the directories above it that it created)."""
        with contextlib.suppress(RemoteError):  # the first error matters more
            if remote.fresh:
                await remote.uninstall(installed)
            else:
                await remote.stop(installed)
        if not keep_creds:
            self._credentials.drop(name)
        self._registry.forget(name)

    def _queen_url(self, entry: HiveEntry, sh: Shell) -> str:
        """Where the hive must send telemetry: --public-url, else our address on its route."""
        if self._settings.public_url:
            return self._settings.public_url.rstrip("/")
        host = self._settings.host
        if is_loopback(host):
            raise InvalidRequest(
                f"the queen listens on {host} only, so {entry.name} could not reach it; start "
                "it with `--host 0.0.0.0` (and an API token), or set --public-url")
        if host in ("0.0.0.0", "::", ""):
            host = sh.local_address
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self._settings.port}"

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _build_wheels(self, narrate: Callable[[str], None],
                            extras: tuple[str, ...] = ()) -> Wheelhouse:
        return await WheelhouseBuilder(self._settings.wheelhouse, default_find_links(),
                                       narrate).build(extras)


def _percent_steps(out: Narrator, stage: str) -> Callable[[int, int], None]:
    """Byte progress as at most ~100 events (SFTP reports every block)."""
    last = -1

    def report(done: int, total: int) -> None:
        nonlocal last
        percent = done * 100 // total if total else 100
        if percent != last:
            last = percent
            out.progress(stage, percent / 100)

    return report
