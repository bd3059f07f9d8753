"""What a machine runs (OS, CPU architecture, Python, libc), and whether our wheels fit it."""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import asdict, dataclass

MIN_PYTHON = (3, 11)

# Run with the remote interpreter; prints one JSON line. Kept to the standard library and
# to Python 3.6 syntax so an old interpreter answers (and is then refused with a clear reason).
PROBE = (
    "import json, os, platform, sys; "
    "libc = platform.libc_ver(); "
    "print(json.dumps({'system': platform.system().lower(), 'machine': platform.machine(), "
    "'python': '%d.%d' % sys.version_info[:2], 'libc': libc[0], 'libc_version': libc[1], "
    "'home': os.path.expanduser('~')}))"
)


@dataclass(frozen=True)
class Platform:
    system: str  # "linux", "darwin"
    machine: str  # "x86_64", "arm64", "aarch64"
    python: str  # "3.11"
    libc: str = ""  # "glibc" on most Linux
    libc_version: str = ""

    @classmethod
    def parse(cls, line: str) -> Platform:
        data = json.loads(line)
        return cls(**{k: str(data.get(k, "")) for k in asdict(cls("", "", ""))})

    @classmethod
    def here(cls) -> Platform:
        libc, version = platform.libc_ver()
        return cls(platform.system().lower(), platform.machine(),
                   "{}.{}".format(*sys.version_info[:2]), libc, version)

    @property
    def python_tuple(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.python.split(".") if p.isdigit())

    def describe(self) -> str:
        libc = f", {self.libc} {self.libc_version}" if self.libc else ""
        return f"{self.system}/{self.machine}, Python {self.python}{libc}"


def wheels_fit(local: Platform, remote: Platform) -> tuple[bool, str]:
    """Can the wheels installed here run there? (and why not, for the narration)."""
    if (local.system, local.machine) != (remote.system, remote.machine):
        return False, (f"{remote.system}/{remote.machine} differs from "
                       f"{local.system}/{local.machine}")
    if local.python != remote.python:
        return False, f"Python {remote.python} differs from {local.python}"
    if local.libc and (remote.libc != local.libc
                       or _version(remote.libc_version) < _version(local.libc_version)):
        return False, (f"{remote.libc or 'unknown libc'} {remote.libc_version} is older than "
                       f"{local.libc} {local.libc_version}")
    return True, "same platform"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())
