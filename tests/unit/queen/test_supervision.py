"""The local hive's supervisor with a fake hive process and a fake clock: no real waiting."""

from __future__ import annotations

import asyncio
import logging
import signal

import pytest

from rbee.core.clock import FakeClock
from rbee.queen.supervision import Backoff, HiveSupervisor, describe_exit, hang_after
from tests.support.fake_hive import FakeHive


class Sleeper:
    """Sleeps that advance the fake clock at once; records the backoff delays."""

    def __init__(self, clock: FakeClock, poll: float) -> None:
        self.clock = clock
        self.poll = poll
        self.backoffs: list[float] = []

    async def __call__(self, seconds: float) -> None:
        if seconds != self.poll:
            self.backoffs.append(seconds)
        self.clock.advance(seconds)
        await asyncio.sleep(0)


POLL = 0.125


def make(backoff: Backoff | None = None) -> tuple[FakeHive, HiveSupervisor, Sleeper, list[int]]:
    clock = FakeClock()
    hive, sleeper, exits = FakeHive(), Sleeper(clock, POLL), []
    sup = HiveSupervisor(hive, clock, on_exit=lambda: exits.append(hive.starts), sleep=sleeper,
                         backoff=backoff, poll_interval=POLL)
    return hive, sup, sleeper, exits


async def until(predicate: object) -> None:
    for _ in range(10_000):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never met")


def test_backoff_doubles_up_to_its_cap() -> None:
    b = Backoff(first=0.5, cap=30.0)
    assert [b.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_exits_are_described_by_signal_or_code() -> None:
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(3) == "exited with code 3"


async def test_a_dead_hive_is_restarted_with_growing_delays(
        caplog: pytest.LogCaptureFixture) -> None:
    hive, sup, sleeper, exits = make()
    caplog.set_level(logging.WARNING, logger="rbee.queen.supervision")
    sup.start()
    assert hive.starts == 1 and sup.state == "running"
    for n in range(1, 5):
        hive.code = -signal.SIGKILL  # dies at once, again and again
        await until(lambda n=n: hive.starts == n + 1)
    assert sleeper.backoffs == [0.5, 1.0, 2.0, 4.0]
    assert exits == [1, 2, 3, 4]  # each death marked the hive down before the restart
    assert sup.restarts == 4 and sup.last_exit == "killed by SIGKILL"
    assert "killed by SIGKILL" in caplog.text and "restarting it in 4.0s" in caplog.text
    await sup.stop()
    # One tuple: mypy narrowed `state` to "running" above, and stop() changes it.
    assert (hive.stopped, sup.state) == (True, "stopped")


async def test_a_hive_that_stayed_up_restarts_fast_again() -> None:
    hive, sup, sleeper, _ = make(Backoff(first=0.5, cap=30.0, stable_after=60.0))
    sup.start()
    for n in range(1, 4):
        hive.code = 1
        await until(lambda n=n: hive.starts == n + 1)
    assert sleeper.backoffs == [0.5, 1.0, 2.0]
    await until(lambda: sup.state == "running")
    # Up for longer than stable_after this time: the series starts over.
    await until(lambda: sleeper.clock.monotonic() > 70 + 3.5)
    hive.code = 1
    await until(lambda: hive.starts == 5)
    assert sleeper.backoffs == [0.5, 1.0, 2.0, 0.5]
    await sup.stop()


async def test_a_failed_start_counts_as_a_failure_and_is_retried() -> None:
    hive, sup, sleeper, exits = make()
    sup.start()
    hive.fail_starts = 2
    hive.code = -signal.SIGTERM
    await until(lambda: hive.starts == 2)
    assert sleeper.backoffs == [0.5, 1.0, 2.0] and sup.restarts == 1
    assert sup.state == "running" and len(exits) == 3
    await sup.stop()


async def test_stop_ends_supervision_even_mid_backoff() -> None:
    hive, sup, _, _ = make(Backoff(first=1e9, cap=1e9))  # the first restart never comes
    sup.start()
    hive.code = 1
    await until(lambda: sup.state == "restarting")
    await sup.stop()
    assert hive.stopped and hive.starts == 1 and sup.state == "stopped"


async def test_a_hive_the_server_started_is_not_started_twice() -> None:
    hive, sup, _, _ = make()
    hive.start()  # what server.py does before importing the app
    sup.start()
    assert hive.starts == 1
    await sup.stop()


class Telemetry:
    """The registry's view of the local hive: when its last report came (None: never)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.last: float | None = None
        self.reporting = True  # a live hive reports every 2 s

    def silent_for(self) -> float | None:
        now = self.clock.monotonic()
        if self.reporting:
            self.last = now - now % 2.0
        return None if self.last is None else now - self.last


def make_watched(hang: float = 30.0) -> tuple[FakeHive, HiveSupervisor, Telemetry, list[float]]:
    clock = FakeClock()
    hive, sleeper, telemetry = FakeHive(), Sleeper(clock, POLL), Telemetry(clock)
    killed_at: list[float] = []
    kill = hive.kill

    def timed_kill() -> None:
        killed_at.append(clock.monotonic())
        kill()

    hive.kill = timed_kill  # type: ignore[method-assign]
    sup = HiveSupervisor(hive, clock, on_exit=lambda: None, sleep=sleeper, poll_interval=POLL,
                         silent_for=telemetry.silent_for, hang_after=hang)
    return hive, sup, telemetry, killed_at


async def test_a_running_but_silent_hive_is_killed_and_restarted(
        caplog: pytest.LogCaptureFixture) -> None:
    hive, sup, telemetry, killed_at = make_watched(hang=30.0)
    caplog.set_level(logging.WARNING, logger="rbee.queen.supervision")
    sup.start()
    await until(lambda: telemetry.clock.monotonic() > 100)
    assert hive.kills == 0 and hive.starts == 1  # reporting: never mistaken for hung
    telemetry.reporting = False  # its loop is stuck: the process lives, nothing is sent
    await until(lambda: hive.starts == 2)
    assert hive.kills == 1 and 130 <= killed_at[0] <= 132  # 30 s after its last report
    assert sup.restarts == 1 and sup.last_exit is not None
    assert sup.last_exit.startswith("hung (no telemetry for 30s), killed by SIGKILL")
    assert "runs but has sent no telemetry for 30s (hung?); killing it (SIGKILL)" in caplog.text
    assert "local hive restarted" in caplog.text
    # Restarted, it gets 30 s to report before the old silence counts against it.
    restarted_at = telemetry.clock.monotonic()
    await until(lambda: hive.starts == 3)
    assert killed_at[1] - restarted_at == pytest.approx(30.0, abs=POLL)
    telemetry.reporting = True  # this time it comes up and reports: left alone
    await until(lambda: telemetry.clock.monotonic() > killed_at[1] + 200)
    assert hive.kills == 2 and hive.starts == 3
    await sup.stop()


async def test_a_hive_that_never_reports_is_killed_after_the_same_grace() -> None:
    hive, sup, telemetry, killed_at = make_watched(hang=30.0)
    telemetry.reporting = False  # hung before its first report (a driver stuck at start-up)
    sup.start()
    await until(lambda: hive.starts == 2)
    assert killed_at == [pytest.approx(30.0, abs=POLL)]
    await sup.stop()


def test_hang_after_is_many_intervals_and_never_under_30_s() -> None:
    assert hang_after(2.0) == 30.0 and hang_after(0.5) == 30.0 and hang_after(10.0) == 150.0
