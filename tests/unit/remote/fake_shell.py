"""A `Shell` that records what the installer asks of a machine and answers from a script."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rbee import __version__
from rbee.remote.platform import Platform
from rbee.remote.ssh import CommandResult, Progress

Answer = CommandResult | Callable[[str], CommandResult]
HOME = "/home/u"
ROOT = f"{HOME}/.local/share/rbee-hive"
VENV = f"{ROOT}/venv-{__version__}"
OK = CommandResult(0, "", "")


def probe_answer(python: str | None = None, home: str = HOME, **overrides: str) -> str:
    """What PROBE prints on a machine like this one (so the queen's wheels fit it)."""
    here = Platform.here()
    data = {"system": here.system, "machine": here.machine, "python": python or here.python,
            "libc": here.libc, "libc_version": here.libc_version, "home": home}
    return json.dumps(data | overrides) + "\n"


def failed(stderr: str = "boom", exit_status: int = 1) -> CommandResult:
    return CommandResult(exit_status, "", stderr + "\n")


@dataclass
class FakeShell:
    """Built-in answers: the probe, `test -e` against `paths`, `cat` of written files, the
    installed version, systemd (`systemd`) and whether the hive runs (`running`). Rules added
    with `on()` match by substring and win over the built-ins, newest first."""

    local_address: str = "10.0.0.5"
    probe: str = field(default_factory=probe_answer)
    paths: set[str] = field(default_factory=set)
    files: dict[str, tuple[str, int]] = field(default_factory=dict)
    systemd: bool = False
    running: bool = False
    version: str = __version__
    commands: list[str] = field(default_factory=list)
    puts: list[tuple[list[Path], str]] = field(default_factory=list)
    rules: list[tuple[str, Answer]] = field(default_factory=list)

    def on(self, needle: str, answer: Answer) -> None:
        self.rules.insert(0, (needle, answer))

    def ran(self, needle: str) -> list[str]:
        return [c for c in self.commands if needle in c]

    async def run(self, command: str, *, timeout: float = 120.0) -> CommandResult:
        self.commands.append(command)
        for needle, answer in self.rules:
            if needle in command:
                return answer(command) if callable(answer) else answer
        return self._builtin(command)

    def _builtin(self, command: str) -> CommandResult:
        words = shlex.split(command) if command.startswith(("test -e ", "cat ")) else []
        checks: list[tuple[bool, Callable[[], CommandResult]]] = [
            ("import json, os, platform" in command, lambda: CommandResult(0, self.probe, "")),
            (command.startswith("test -e "),
             lambda: CommandResult(0 if words[2] in self.paths | set(self.files) else 1, "", "")),
            (command.startswith("cat "), lambda: self._cat(words[1])),
            ("print(rbee.__version__)" in command,
             lambda: CommandResult(0, self.version + "\n", "")),
            ("command -v systemctl" in command,
             lambda: CommandResult(int(not self.systemd), "", "")),
            ("is-active" in command or "kill -0" in command,
             lambda: CommandResult(int(not self.running), "", "")),
        ]
        return next((answer() for matched, answer in checks if matched), OK)

    def _cat(self, path: str) -> CommandResult:
        if path not in self.files:
            return CommandResult(1, "", "")
        return CommandResult(0, self.files[path][0], "")

    async def put(self, files: Sequence[Path], remote_dir: str,
                  progress: Progress | None = None) -> None:
        self.puts.append((list(files), remote_dir))
        total = sum(f.stat().st_size for f in files)
        if progress is not None:
            progress(total // 2, total)
            progress(total, total)

    async def write_text(self, path: str, text: str, mode: int = 0o600) -> None:
        self.files[path] = (text, mode)
