"""Reproducible installs: every dependency is pinned, and third-party warnings stay quiet."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def test_every_declared_dependency_is_pinned() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["dev"],
                *project["optional-dependencies"]["llama"],
                *project["optional-dependencies"]["embeddings"],
                *project["optional-dependencies"]["speech"],
                *project["optional-dependencies"]["diffusion"]]
    pins = _pins()
    missing = [r for r in declared if canonicalize_name(Requirement(r).name) not in pins]
    assert missing == []
    for raw in declared:  # and each pin satisfies what pyproject asks for
        req = Requirement(raw)
        assert req.specifier.contains(pins[canonicalize_name(req.name)]), raw


def test_install_script_uses_the_constraints() -> None:
    script = (ROOT / "scripts" / "install.sh").read_text()
    installs = [line for line in script.splitlines() if re.match(r"\s*pip install", line)]
    assert installs
    unpinned = [line for line in installs if "-c constraints.txt" not in line
                and "pip==" not in line]
    assert unpinned == []


def test_daemon_imports_print_no_warnings() -> None:
    """asyncssh + cryptography >= 46 warned eight times on every queen start; -W error turns
    any warning at import into a failure here."""
    code = ("import rbee.queen.app, rbee.queen.fleet, rbee.remote.ssh, rbee.hive.app, "
            "rbee.worker.app, rbee.cli")
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_the_pinned_installer_version_is_read_as_a_version() -> None:
    """install.sh reads pip's own pin from constraints.txt with a shell substitution."""
    script = (ROOT / "scripts" / "install.sh").read_text()
    found = re.search(r'"pip==\$\((.+)\)"', script)
    assert found is not None
    done = subprocess.run(["bash", "-c", found.group(1)], cwd=ROOT, capture_output=True,
                          text=True, timeout=30, check=True)
    assert re.fullmatch(r"\d+(\.\d+)+\n", done.stdout), done.stdout
