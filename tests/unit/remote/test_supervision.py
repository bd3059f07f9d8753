"""What keeps a remote hive running once the install has logged out.

systemd only when the user's manager outlives the SSH session (linger: checked, and enabled
where polkit lets the user); else the background method, whose POSIX sh supervisor restarts a
hive that dies. The script itself is run here by the real dash with a stand-in run-hive.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from rbee.remote.installer import SUPERVISE, UNIT, Installed
from rbee.remote.wheelhouse import Wheelhouse
from tests.unit.remote.fake_shell import ROOT, FakeShell
from tests.unit.remote.test_installer import installed, probed, wheelhouse

__all__ = ["wheelhouse"]  # the fixture, shared with test_installer

LINGER_CHECK = "loginctl show-user"
ENABLE = "loginctl enable-linger"


async def install(shell: FakeShell, wheels: Wheelhouse) -> tuple[Installed, list[str]]:
    remote, narration, found = await probed(shell)
    record = await remote.install(found, wheels, lambda d, t: None)
    return record, [f"{a}: {m}" for a, m in narration.events]


# -- which method: systemd only with linger ----------------------------------------------


async def test_systemd_with_linger_already_on(wheelhouse: Wheelhouse) -> None:
    shell = FakeShell(systemd=True, linger=True)
    record, _ = await install(shell, wheelhouse)
    assert record.method == "systemd"
    assert len(shell.ran(LINGER_CHECK)) == 1 and not shell.ran(ENABLE)
    # the user's own name, read there: hives.conf's User may be absent or differ in case
    assert 'loginctl show-user "$(id -un)" -p Linger --value' in shell.ran(LINGER_CHECK)[0]


async def test_linger_off_is_enabled_by_the_user(wheelhouse: Wheelhouse) -> None:
    # A working `systemctl --user` is not enough: pam_systemd starts the user's manager for
    # our SSH session, and it stops with every unit ~10 s after we log out.
    shell = FakeShell(systemd=True, linger=False, may_linger=True)
    record, said = await install(shell, wheelhouse)
    assert record.method == "systemd"
    assert shell.ran(ENABLE) == ['loginctl enable-linger "$(id -un)"']
    # checked again after enabling: the answer, not enable's exit status, decides
    assert len(shell.ran(LINGER_CHECK)) == 2
    assert any(s.startswith("linger: enabling linger") for s in said), said


async def test_linger_refused_falls_back_to_the_background_method(
        wheelhouse: Wheelhouse) -> None:
    shell = FakeShell(systemd=True, linger=False, may_linger=False)
    record, said = await install(shell, wheelhouse)
    assert record.method == "background"
    assert not shell.ran("systemctl --user enable")
    assert not any(".config/systemd" in c for c in shell.commands)  # no unit directory made
    fallback = next(s for s in said if s.startswith("supervisor: could not enable linger"))
    assert "Access denied" in fallback and "background" in fallback
    assert "`sudo loginctl enable-linger u`" in fallback  # the admin's one line
    assert "`rbee hive install box` again" in fallback


async def test_no_systemd_at_all_is_the_background_method(wheelhouse: Wheelhouse) -> None:
    shell = FakeShell(systemd=False)
    record, said = await install(shell, wheelhouse)
    assert record.method == "background"
    assert not shell.ran("loginctl")
    assert any(s.startswith("supervisor: no systemd user manager") for s in said), said


async def test_a_start_moves_a_systemd_hive_that_lost_linger_to_the_background() -> None:
    # installed with linger; an admin turned it off since: systemd would stop it at logout
    shell = FakeShell(systemd=True, linger=False, may_linger=False)
    remote, _, _ = await probed(shell)
    moved = await remote.supervised(installed("systemd"))
    assert moved == installed("background")
    assert shell.ran(f"systemctl --user disable --now {UNIT}")
    # recorded, so that stop and status look for the background hive
    text, mode = shell.files[f"{ROOT}/install.json"]
    assert json.loads(text)["method"] == "background" and mode == 0o644


@pytest.mark.parametrize(("method", "linger"), [("systemd", True), ("background", False)])
async def test_a_start_leaves_a_working_method_alone(method: str, linger: bool) -> None:
    shell = FakeShell(systemd=True, linger=linger, may_linger=False)
    remote, _, _ = await probed(shell)
    assert await remote.supervised(installed(method)) == installed(method)
    assert not shell.ran("disable") and not shell.files
    if method == "background":  # nothing to check: it needs no systemd
        assert not shell.ran("loginctl")


# -- the background method: start and stop go through the supervisor ---------------------


async def test_stop_ends_the_supervisor_before_the_hive() -> None:
    shell = FakeShell(running=True)
    remote, _, _ = await probed(shell)
    assert await remote.stop(installed("background")) is True
    stop = shell.ran("kill -TERM")[0]
    # the stop file first (the loop must not start it again), the supervisor, then the hive
    order = [stop.index(f"touch {ROOT}/hive.stop"), stop.index(f"cat {ROOT}/supervisor.pid"),
             stop.index(f"cat {ROOT}/hive.pid")]
    assert order == sorted(order)
    assert "grep -q supervise-hive" in stop  # never a stranger that reused its pid


async def test_running_counts_a_supervisor_about_to_restart_its_hive() -> None:
    shell = FakeShell()
    remote, _, _ = await probed(shell)
    await remote.running("background")
    check = shell.commands[-1]
    assert "hive.pid" in check and "supervisor.pid" in check and " || " in check


# -- the supervisor script, run by dash ----------------------------------------------------

DASH = shutil.which("dash") or "/bin/sh"


def supervise(tmp_path: Path, run_hive: str, timeout: float = 20
              ) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    (tmp_path / "supervise-hive").write_text(SUPERVISE)
    (tmp_path / "run-hive").write_text("#!/bin/sh\n" + run_hive)
    for name in ("supervise-hive", "run-hive"):
        os.chmod(tmp_path / name, 0o700)
    done = subprocess.run([DASH, str(tmp_path / "supervise-hive")], capture_output=True,
                          text=True, timeout=timeout, check=False)
    runs = (tmp_path / "runs").read_text().split() if (tmp_path / "runs").exists() else []
    return done, runs


def test_the_script_is_posix_sh() -> None:
    # dash -n parses without running: no bashism gets through
    assert subprocess.run([DASH, "-n"], input=SUPERVISE, text=True, check=False).returncode == 0


def test_a_crashing_hive_is_restarted_with_a_growing_pause(tmp_path: Path) -> None:
    # dies twice (a crash, then an OOM kill's status), then stops cleanly
    started = time.monotonic()
    done, runs = supervise(tmp_path, 'date +%s.%N >> runs\nn=$(wc -l < runs)\n'
                           '[ "$n" -eq 1 ] && exit 1\n[ "$n" -eq 2 ] && exit 137\nexit 0\n')
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert len(runs) == 3
    gaps = [float(b) - float(a) for a, b in itertools.pairwise(runs)]
    assert 0.9 < gaps[0] < 1.9 and 1.9 < gaps[1] < 2.9, gaps  # 1 s, then 2 s
    assert "exited with status 1; restarting in 1s" in done.stderr
    assert "exited with status 137; restarting in 2s" in done.stderr
    assert took < 6
    assert not (tmp_path / "supervisor.pid").exists()  # a clean exit ends the supervision


def test_a_stop_file_ends_the_supervision_at_once(tmp_path: Path) -> None:
    # `rbee hive stop` leaves hive.stop before killing the hive: no restart, no pause
    started = time.monotonic()
    done, runs = supervise(tmp_path, "echo x >> runs\ntouch hive.stop\nexit 143\n")
    assert done.returncode == 0 and runs == ["x"], done.stderr
    assert time.monotonic() - started < 1
    assert "restarting" not in done.stderr


def test_the_supervisor_writes_its_pid_for_stop(tmp_path: Path) -> None:
    done, _ = supervise(tmp_path, "cat supervisor.pid > seen\nexit 0\n")
    assert done.returncode == 0
    assert (tmp_path / "seen").read_text().strip().isdigit()


def test_the_supervisor_runs_from_its_own_directory(tmp_path: Path) -> None:
    # started as `nohup setsid ./supervise-hive` from the root, but cd first anyway
    done, runs = supervise(tmp_path, "pwd >> runs\nexit 0\n")
    assert done.returncode == 0 and runs == [str(tmp_path)]
