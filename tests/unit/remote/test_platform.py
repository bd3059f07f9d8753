"""Platform: the probe's answer, and whether the queen's wheels run on a machine."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rbee.remote.platform import MIN_PYTHON, PROBE, Platform, wheels_fit

HERE = Platform("linux", "x86_64", "3.11", "glibc", "2.36")


@pytest.mark.parametrize(("remote", "fits", "why"), [
    (HERE, True, "same platform"),
    (Platform("linux", "x86_64", "3.11", "glibc", "2.39"), True, "same platform"),
    (Platform("linux", "x86_64", "3.11", "glibc", "2.36.1"), True, "same platform"),
    (Platform("linux", "aarch64", "3.11", "glibc", "2.36"), False,
     "linux/aarch64 differs from linux/x86_64"),
    (Platform("darwin", "x86_64", "3.11"), False, "darwin/x86_64 differs from linux/x86_64"),
    (Platform("linux", "x86_64", "3.12", "glibc", "2.36"), False,
     "Python 3.12 differs from 3.11"),
    (Platform("linux", "x86_64", "3.11", "glibc", "2.31"), False,
     "glibc 2.31 is older than glibc 2.36"),
    (Platform("linux", "x86_64", "3.11", "glibc", "2.4"), False, "is older than"),
    (Platform("linux", "x86_64", "3.11", "", ""), False, "unknown libc"),  # musl: no answer
])
def test_wheels_fit(remote: Platform, fits: bool, why: str) -> None:
    ok, reason = wheels_fit(HERE, remote)
    assert ok is fits
    assert why in reason


def test_a_queen_without_libc_compares_system_machine_and_python_only() -> None:
    mac = Platform("darwin", "arm64", "3.11")
    assert wheels_fit(mac, Platform("darwin", "arm64", "3.11", "", ""))[0]
    assert not wheels_fit(mac, Platform("darwin", "arm64", "3.12"))[0]


def test_the_probe_runs_on_this_interpreter_and_parses() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          check=True, timeout=30)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    found = Platform.parse(lines[0])
    assert found == Platform.here()
    assert found.python_tuple == sys.version_info[:2]
    assert json.loads(lines[0])["home"] == str(Path.home())


def test_the_probe_is_python_3_6_syntax() -> None:
    # An old interpreter must answer (and be refused with a reason), not fail to parse it.
    ast.parse(PROBE, feature_version=(3, 6))


def test_parse_ignores_extra_keys_and_defaults_missing_ones() -> None:
    found = Platform.parse('{"system": "linux", "machine": "riscv64", "python": "3.13", '
                           '"home": "/root", "new_key": 1}')
    assert found == Platform("linux", "riscv64", "3.13", "", "")


@pytest.mark.parametrize(("python", "expected"), [
    ("3.11", (3, 11)),
    ("3.10", (3, 10)),
    ("3.9", (3, 9)),
    ("2.7", (2, 7)),
    ("3.13", (3, 13)),
    ("", ()),
])
def test_python_tuple(python: str, expected: tuple[int, ...]) -> None:
    found = Platform("linux", "x86_64", python).python_tuple
    assert found == expected
    assert (found >= MIN_PYTHON) is (expected >= (3, 11))  # 3.10 is older than 3.11


def test_describe() -> None:
    assert HERE.describe() == "linux/x86_64, Python 3.11, glibc 2.36"
    assert Platform("darwin", "arm64", "3.12").describe() == "darwin/arm64, Python 3.12"
