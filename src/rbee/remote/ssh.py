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
from types import TracebackType
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
    RemoteError,
    SshAuthFailed,
    SshHostKey,
    SshTimeout,
    SshUnreachable,
)
from rbee.remote.hives_conf import HiveEntry

Progress = Callable[[int, int], None]  # bytes done, bytes total


@dataclass(frozen=True)
class SshTimeouts:
    """Deadlines for what crosses to the machine, besides each command's own timeout.

    These calls run while `Fleet` holds the hive's lock: one that never returns would hang
    `rbee hive install` silently and make `rbee hive stop` wait on the same lock for ever.
    """

    keepalive_interval: float = 15.0  # asyncssh's default is off: a partition would go
    keepalive_count_max: int = 3      # unnoticed for ~15 min of TCP retransmits
    open: float = 30.0  # opening a channel (a command, an SFTP session)
    sftp_step: float = 60.0  # one SFTP request: open, write, chmod, close; a put's floor
    put_bytes_per_s: float = 256 * 1024  # the slowest link a put may take before it gives up

    def put(self, size: int) -> float:
        """How long copying `size` bytes may take."""
        return self.sftp_step + size / self.put_bytes_per_s


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


class _Watchdog:
    """Aborts the connection when an SFTP step outlives its bound.

    Not `asyncio.timeout`: asyncssh's file copies and closes await the server's replies in
    their own cleanup (`finally: await dst.close()`), so a cancelled step whose server never
    answers would still hang there. Aborting the connection fails every pending request at
    once; the step then ends with an error we report as this timeout. A server that leaves an
    SFTP request unanswered that long is not one the rest of the install could use either.
    """

    def __init__(self, conn: asyncssh.SSHClientConnection) -> None:
        self._conn = conn
        self._timer: asyncio.TimerHandle | None = None
        self.step = ""
        self.seconds = 0.0
        self.fired = False

    def start(self, step: str, seconds: float) -> None:
        self.stop()
        self.step, self.seconds = step, seconds
        self._timer = asyncio.get_running_loop().call_later(seconds, self._fire)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self.fired = True
        self._conn.abort()

    def __enter__(self) -> _Watchdog:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class SshShell:
    def __init__(self, conn: asyncssh.SSHClientConnection, entry: HiveEntry,
                 timeouts: SshTimeouts | None = None) -> None:
        self._conn = conn
        self._entry = entry
        self._timeouts = timeouts or SshTimeouts()
        sock = conn.get_extra_info("sockname")
        self.local_address: str = str(sock[0]) if sock else "127.0.0.1"

    async def run(self, command: str, *, timeout: float = 120.0) -> CommandResult:
        # Always /bin/sh: a login shell's rc files (pyenv, conda…) cost ~85 ms a command and
        # may print junk into stdout. `echo $$` first: a command we give up on is ended on
        # the machine through that pid (see _end).
        bound = min(timeout, self._timeouts.open)
        try:
            # A channel's opening is a round trip too: an unanswered one would wait for ever.
            async with asyncio.timeout(bound):
                process = await self._conn.create_process(
                    f"/bin/sh -c {shlex.quote('echo $$; ' + command)}")
        except TimeoutError as exc:
            raise self._timed_out(f"starting a command ({command[:80]})", bound) from exc
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

    def _timed_out(self, step: str, seconds: float) -> SshTimeout:
        return SshTimeout(f"{self._entry.name} ({self._entry.target}): no answer within "
                          f"{round(seconds, 1):g}s while {step}", hint="check the machine and the "
                          "network (is it partitioned or overloaded?), then retry")

    def _sftp_failed(self, watchdog: _Watchdog, exc: BaseException, failed: str,
                     hint: str) -> RemoteError:
        if watchdog.fired:
            return self._timed_out(watchdog.step, watchdog.seconds)
        return RemoteCommandFailed(f"{self._entry.name}: {failed}: {exc}", hint=hint)

    async def put(self, files: Sequence[Path], remote_dir: str,
                  progress: Progress | None = None) -> None:
        total = sum(f.stat().st_size for f in files)
        done = 0

        def step(_src: bytes, _dst: bytes, copied: int, _size: int) -> None:
            if progress is not None:
                progress(done + copied, total)

        with _Watchdog(self._conn) as watchdog:
            try:
                watchdog.start("opening an SFTP session", self._timeouts.open)
                async with self._conn.start_sftp_client() as sftp:
                    for f in files:
                        size = f.stat().st_size
                        watchdog.start(f"copying {f.name} ({size} bytes) to {remote_dir}",
                                       self._timeouts.put(size))
                        await sftp.put(str(f), f"{remote_dir}/{f.name}",
                                       progress_handler=step)
                        done += size
            except (asyncssh.Error, OSError) as exc:
                raise self._sftp_failed(watchdog, exc, "copying files failed",
                                        "check free disk space in the user's home") from exc


    async def write_text(self, path: str, text: str, mode: int = 0o600) -> None:
        """Over SFTP, never on a command line: files may hold secrets, and argv is public."""
        bound = self._timeouts.sftp_step
        with _Watchdog(self._conn) as watchdog:
            try:
                watchdog.start("opening an SFTP session", self._timeouts.open)
                async with self._conn.start_sftp_client() as sftp:
                    attrs = asyncssh.SFTPAttrs(permissions=mode)
                    watchdog.start(f"opening {path} over SFTP", bound)
                    async with sftp.open(path, "w", attrs) as f:
                        watchdog.start(f"writing {path} over SFTP", self._timeouts.put(
                            len(text.encode())))
                        await f.write(text)
                        watchdog.start(f"closing {path} over SFTP", bound)
                    watchdog.start(f"setting the mode of {path} over SFTP", bound)
                    # an existing file keeps its old mode otherwise
                    await sftp.chmod(path, mode)
            except (asyncssh.Error, OSError) as exc:
                raise self._sftp_failed(watchdog, exc, f"writing {path} failed",
                                        "check free disk space and permissions in the "
                                        "user's home") from exc


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value or "")


@asynccontextmanager
async def connect(entry: HiveEntry, timeouts: SshTimeouts | None = None
                  ) -> AsyncIterator[SshShell]:
    """An open SSH connection to `entry`, or one clear `RemoteError`."""
    timeouts = timeouts or SshTimeouts()
    options: dict[str, object] = {
        "username": entry.user, "port": entry.port,
        "connect_timeout": entry.connect_timeout, "login_timeout": entry.connect_timeout,
        # A silent peer (partition, dead switch) ends the connection after about
        # interval x count seconds: every command and SFTP request on it fails then.
        "keepalive_interval": timeouts.keepalive_interval,
        "keepalive_count_max": timeouts.keepalive_count_max,
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
        yield SshShell(conn, entry, timeouts)
    finally:
        conn.close()
        # A clean close flushes what is unsent first: across a partition, never. Then drop it.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeouts.open):
                await conn.wait_closed()
        conn.abort()
