"""One SSH connection to a hive's machine (asyncssh), with every failure made plain.

asyncssh runs many commands over one connection at ~2 ms each and gives SFTP for the wheels
we push (TOOLING-FACTS §4). Its exceptions are converted here, once, into `RemoteError`s
that say what failed and what to do about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.utils import CryptographyDeprecationWarning

# asyncssh imports cryptography's DSA support, which cryptography >= 46 deprecates with a
# warning per name at import: eight lines on every queen start that nobody can act on. Only
# that warning, only during this import; everything else still warns (and fails our tests).
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
    import asyncssh

from rbee.core.errors import (
    RemoteCommandFailed,
    SshAuthFailed,
    SshHostKey,
    SshTimeout,
    SshUnreachable,
)
from rbee.remote.hives_conf import HiveEntry

Progress = Callable[[int, int], None]  # bytes done, bytes total


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str


class Shell(Protocol):
    """What the installer needs from a remote machine (real SSH, or a fake in tests)."""

    local_address: str  # this machine's address on the route to the remote one

    async def run(self, command: str, *, timeout: float = 120.0) -> CommandResult: ...

    async def put(self, files: Sequence[Path], remote_dir: str,
                  progress: Progress | None = None) -> None: ...

    async def write_text(self, path: str, text: str, mode: int = 0o600) -> None: ...


class SshShell:
    def __init__(self, conn: asyncssh.SSHClientConnection, entry: HiveEntry) -> None:
        self._conn = conn
        self._entry = entry
        sock = conn.get_extra_info("sockname")
        self.local_address: str = str(sock[0]) if sock else "127.0.0.1"

    async def run(self, command: str, *, timeout: float = 120.0) -> CommandResult:
        # Always /bin/sh: a login shell's rc files (pyenv, conda…) cost ~85 ms a command and
        # may print junk into stdout. `echo $$` first: a command we give up on is ended on
        # the machine through that pid (see _end).
        try:
            process = await self._conn.create_process(
                f"/bin/sh -c {shlex.quote('echo $$; ' + command)}")
        except (asyncssh.Error, OSError) as exc:
            raise self._lost(exc) from exc
        try:
            done = await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError as exc:
            await self._end(process)
            raise SshTimeout(f"{self._entry.name}: command timed out after {timeout:.0f}s: "
                             f"{command[:80]}", hint="the machine may be overloaded; "
                             "retry, or run the step by hand to see what hangs") from exc
        except asyncio.CancelledError:
            await self._end(process)
            raise
        except (asyncssh.Error, OSError) as exc:
            raise self._lost(exc) from exc
        _pid, _, stdout = _text(done.stdout).partition("\n")
        return CommandResult(int(done.exit_status or 0), stdout, _text(done.stderr))

    async def _end(self, process: asyncssh.SSHClientProcess[str]) -> None:
        """Kill a command we stopped waiting for, with everything it started.

        Closing the channel would not: sshd leaves a command without a terminal running, and
        a pip still writing into a venv that a rollback removes would leave half of it there.
        sshd runs each command as a session leader, so its process group is the whole tree.
        """
        pid = _text(process.collect_output()[0]).partition("\n")[0].strip()
        if pid.isdigit():
            # `kill -SIG -PGID`, no `--`: dash's kill refuses `--` and `-s SIG -PGID`.
            kill = (f"g=$(ps -o pgid= -p {pid} | tr -d ' '); [ -n \"$g\" ] || exit 0; "
                    # half a second to exit cleanly (kill -0 would not tell: it counts
                    # zombies), then no choice
                    'kill -TERM "-$g" 2>/dev/null && sleep 0.5; kill -KILL "-$g" 2>/dev/null; '
                    "true")
            with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
                await asyncio.wait_for(self._conn.run(f"/bin/sh -c {shlex.quote(kill)}"), 10)
        process.close()

    def _lost(self, exc: BaseException) -> SshUnreachable:
        return SshUnreachable(f"{self._entry.name}: connection lost: {exc}",
                              hint="check the machine and the network, then retry")

    async def put(self, files: Sequence[Path], remote_dir: str,
                  progress: Progress | None = None) -> None:
        total = sum(f.stat().st_size for f in files)
        done = 0

        def step(_src: bytes, _dst: bytes, copied: int, _size: int) -> None:
            if progress is not None:
                progress(done + copied, total)

        try:
            async with self._conn.start_sftp_client() as sftp:
                for f in files:
                    await sftp.put(str(f), f"{remote_dir}/{f.name}", progress_handler=step)
                    done += f.stat().st_size
        except (asyncssh.Error, OSError) as exc:
            raise RemoteCommandFailed(f"{self._entry.name}: copying files failed: {exc}",
                                      hint="check free disk space in the user's home") from exc


    async def write_text(self, path: str, text: str, mode: int = 0o600) -> None:
        """Over SFTP, never on a command line: files may hold secrets, and argv is public."""
        try:
            async with self._conn.start_sftp_client() as sftp:
                attrs = asyncssh.SFTPAttrs(permissions=mode)
                async with sftp.open(path, "w", attrs) as f:
                    await f.write(text)
                await sftp.chmod(path, mode)  # an existing file keeps its old mode otherwise
        except (asyncssh.Error, OSError) as exc:
            raise RemoteCommandFailed(f"{self._entry.name}: writing {path} failed: {exc}",
                                      hint="check free disk space and permissions in the "
                                      "user's home") from exc


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value or "")


@asynccontextmanager
async def connect(entry: HiveEntry) -> AsyncIterator[SshShell]:
    """An open SSH connection to `entry`, or one clear `RemoteError`."""
    options: dict[str, object] = {
        "username": entry.user, "port": entry.port,
        "connect_timeout": entry.connect_timeout, "login_timeout": entry.connect_timeout,
    }
    if entry.identity_files:
        options["client_keys"] = list(entry.identity_files)
    if not entry.strict_host_key_checking:
        options["known_hosts"] = None
    elif entry.known_hosts:
        options["known_hosts"] = entry.known_hosts
    where = f"{entry.name} ({entry.target})"
    try:
        conn = await asyncssh.connect(entry.hostname, **options)
    except asyncssh.PermissionDenied as exc:
        raise SshAuthFailed(
            f"{where}: the SSH server refused our key", hint="check User and IdentityFile in "
            "hives.conf, and that the public key is in ~/.ssh/authorized_keys there") from exc
    except asyncssh.HostKeyNotVerifiable as exc:
        raise SshHostKey(
            f"{where}: host key not trusted ({exc.reason})", hint="add it with `ssh-keyscan "
            f"-p {entry.port} {entry.hostname} >> ~/.ssh/known_hosts` after checking it, or set "
            "UserKnownHostsFile in hives.conf") from exc
    except TimeoutError as exc:
        raise SshTimeout(f"{where}: no SSH answer within {entry.connect_timeout:.0f}s",
                         hint="is the machine on, and is a firewall dropping port "
                         f"{entry.port}? Raise ConnectTimeout for slow links") from exc
    except (asyncssh.ConnectionLost, ConnectionResetError) as exc:  # a prompt answer
        raise SshUnreachable(
            f"{where}: the server closed the connection before we could log in ({exc})",
            hint="check that sshd listens on that Port (not another program) and accepts "
            "us: its log shows why (MaxStartups, AllowUsers, TCP wrappers, fail2ban)") from exc
    except (OSError, ValueError, asyncssh.Error) as exc:  # ValueError: a malformed HostName
        raise SshUnreachable(f"{where}: cannot connect: {exc}",
                             hint="check HostName and Port in hives.conf, and that sshd "
                             "runs there (`ssh -p PORT USER@HOST` should work)") from exc
    try:
        yield SshShell(conn, entry)
    finally:
        conn.close()
        await conn.wait_closed()
