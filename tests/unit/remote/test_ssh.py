"""SshShell against asyncssh's in-process server: commands, SFTP, and every failure mapped."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import asyncssh
import pytest

from rbee.core.errors import RemoteError, SshAuthFailed, SshHostKey, SshTimeout, SshUnreachable
from rbee.remote.hives_conf import HiveEntry
from rbee.remote.ssh import SshTimeouts, connect


@dataclass
class Sshd:
    """An SSH server on 127.0.0.1 that runs commands with the local /bin/sh."""

    port: int
    host_key: asyncssh.SSHKey
    entry: HiveEntry  # a client entry that is trusted and authorized
    commands: list[str] = field(default_factory=list)


@pytest.fixture(autouse=True)
def no_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the keys a test names may be offered: never a developer's agent.
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


def write_key(key: asyncssh.SSHKey, path: Path) -> str:
    key.write_private_key(str(path))
    return str(path)


@pytest.fixture
async def sshd(tmp_path: Path) -> AsyncIterator[Sshd]:
    async with serve(tmp_path) as server:
        yield server


@asynccontextmanager
async def serve(tmp_path: Path, sftp: type[asyncssh.SFTPServer] | bool = True
                ) -> AsyncIterator[Sshd]:
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    authorized = asyncssh.import_authorized_keys(
        client_key.export_public_key("openssh").decode())
    tasks: set[asyncio.Task[None]] = set()
    commands: list[str] = []

    async def execute(process: asyncssh.SSHServerProcess[str]) -> None:
        commands.append(str(process.command))
        proc = await asyncio.create_subprocess_shell(
            str(process.command), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True)
        async def pump(source: asyncio.StreamReader | None,
                       sink: asyncssh.SSHWriter[str]) -> None:
            assert source is not None
            while chunk := await source.read(65536):  # as it comes, the way sshd does
                sink.write(chunk.decode())

        try:
            await asyncio.gather(pump(proc.stdout, process.stdout),
                                 pump(proc.stderr, process.stderr))
            process.exit(await proc.wait())
        finally:
            if proc.returncode is None:  # the client gave up: end the command's whole group
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()

    def process_factory(process: asyncssh.SSHServerProcess[str]) -> None:
        task = asyncio.create_task(execute(process))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    class Server(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return True  # authentication required

        def public_key_auth_supported(self) -> bool:
            return True

        def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
            return authorized.validate(key, "127.0.0.1", "127.0.0.1") is not None

    server = await asyncssh.create_server(
        Server, "127.0.0.1", 0, server_host_keys=[host_key],
        process_factory=process_factory, sftp_factory=sftp)
    port = server.sockets[0].getsockname()[1]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} "
                           f"{host_key.export_public_key('openssh').decode()}")
    entry = HiveEntry(name="box", hostname="127.0.0.1", user="tester", port=port,
                      identity_files=(write_key(client_key, tmp_path / "id_ed25519"),),
                      known_hosts=str(known_hosts), connect_timeout=5.0)
    yield Sshd(port, host_key, entry, commands)
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    server.close()
    await server.wait_closed()


async def test_run_returns_output_and_exit_status(sshd: Sshd) -> None:
    async with connect(sshd.entry) as sh:
        done = await sh.run("echo out; echo err >&2; echo \"it's $((6 * 7))\"")
        assert (done.exit_status, done.stdout, done.stderr) == (0, "out\nit's 42\n", "err\n")
        assert sh.local_address == "127.0.0.1"
    # always /bin/sh -c with the command quoted, never the user's login shell; its pid first
    # (not part of the output) so that a command we give up on can be ended
    assert sshd.commands == [
        "/bin/sh -c 'echo $$; echo out; echo err >&2; echo \"it'\"'\"'s $((6 * 7))\"'"]


async def test_a_non_zero_exit_is_returned_not_raised(sshd: Sshd) -> None:
    async with connect(sshd.entry) as sh:
        done = await sh.run("echo nope >&2; exit 3")
        assert (done.exit_status, done.stderr) == (3, "nope\n")
        missing = await sh.run("definitely-not-a-command-rbee")
        assert missing.exit_status == 127
        # one connection, many commands
        assert (await sh.run("true")).exit_status == 0


async def test_a_command_that_outlives_its_timeout(sshd: Sshd) -> None:
    async with connect(sshd.entry) as sh:
        with pytest.raises(SshTimeout, match=r"command timed out after 0s: sleep 2"):
            await sh.run("sleep 2", timeout=0.1)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone, only not reaped yet
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def read_pid(pid_file: Path) -> int | None:
    text = pid_file.read_text().strip() if pid_file.exists() else ""
    return int(text) if text else None


async def started_child(pid_file: Path) -> int:
    for _ in range(200):
        pid = read_pid(pid_file)
        if pid is not None:
            return pid
        await asyncio.sleep(0.01)
    raise AssertionError("the command did not start")


async def test_a_command_that_outlives_its_timeout_is_ended_with_its_children(
        sshd: Sshd, tmp_path: Path) -> None:
    # a pip left running would go on writing into a venv the rollback removes
    pid_file = tmp_path / "child.pid"
    async with connect(sshd.entry) as sh:
        with pytest.raises(SshTimeout):
            await sh.run(f"sleep 30 & echo $! > {pid_file}; wait", timeout=0.5)
        child = await started_child(pid_file)
        assert not alive(child)  # ended before run() returned, connection still open
        assert (await sh.run("echo still usable")).stdout == "still usable\n"


async def test_a_cancelled_command_is_ended_on_the_machine(sshd: Sshd, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    async with connect(sshd.entry) as sh:
        task = asyncio.create_task(sh.run(f"sleep 30 & echo $! > {pid_file}; wait"))
        child = await started_child(pid_file)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not alive(child)


async def test_put_copies_files_and_reports_progress_to_the_total(
        sshd: Sshd, tmp_path: Path) -> None:
    sources = []
    for name, size in (("a.whl", 300_000), ("b.whl", 70_001), ("c.whl", 1)):
        path = tmp_path / name
        path.write_bytes(os.urandom(size))
        sources.append(path)
    target = tmp_path / "remote-wheels"
    target.mkdir()
    seen: list[tuple[int, int]] = []
    async with connect(sshd.entry) as sh:
        await sh.put(sources, str(target), lambda done, total: seen.append((done, total)))
    for path in sources:
        assert (target / path.name).read_bytes() == path.read_bytes()
    total = 370_002
    assert seen[-1] == (total, total)
    assert all(t == total for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # never goes backwards


async def test_put_into_a_missing_directory_is_a_remote_command_failure(
        sshd: Sshd, tmp_path: Path) -> None:
    source = tmp_path / "a.whl"
    source.write_bytes(b"x")
    async with connect(sshd.entry) as sh:
        with pytest.raises(RemoteError, match="copying files failed") as info:
            await sh.put([source], str(tmp_path / "absent"))
    assert "Hint:" in info.value.message


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o700])
async def test_write_text_creates_a_file_with_the_mode(
        sshd: Sshd, tmp_path: Path, mode: int) -> None:
    path = tmp_path / "hive.env"
    async with connect(sshd.entry) as sh:
        await sh.write_text(str(path), "RBEE_HIVE_TOKEN=s3cret\nμ\n", mode)
    assert path.read_text() == "RBEE_HIVE_TOKEN=s3cret\nμ\n"
    assert os.stat(path).st_mode & 0o777 == mode
    assert not any("s3cret" in c for c in sshd.commands)  # over SFTP, never argv


async def test_write_text_replaces_an_existing_file_and_its_mode(
        sshd: Sshd, tmp_path: Path) -> None:
    path = tmp_path / "hive.env"
    path.write_text("old old old old old\n")
    path.chmod(0o666)
    async with connect(sshd.entry) as sh:
        await sh.write_text(str(path), "new\n")
    assert path.read_text() == "new\n"
    assert os.stat(path).st_mode & 0o777 == 0o600


async def test_a_key_the_server_does_not_know(sshd: Sshd, tmp_path: Path) -> None:
    other = write_key(asyncssh.generate_private_key("ssh-ed25519"), tmp_path / "other")
    with pytest.raises(SshAuthFailed) as info:
        async with connect(replace(sshd.entry, identity_files=(other,))):
            pass
    assert "Hint:" in info.value.message and "IdentityFile" in info.value.message
    assert f"box (tester@127.0.0.1:{sshd.port})" in info.value.message
    assert isinstance(info.value.__cause__, asyncssh.PermissionDenied)


async def test_an_unknown_host_key_with_strict_checking(sshd: Sshd, tmp_path: Path) -> None:
    known_hosts = tmp_path / "other_known_hosts"
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    known_hosts.write_text(f"[127.0.0.1]:{sshd.port} "
                           f"{stranger.export_public_key('openssh').decode()}")
    for path in (known_hosts, tmp_path / "empty_known_hosts"):
        path.touch()
        with pytest.raises(SshHostKey) as info:
            async with connect(replace(sshd.entry, known_hosts=str(path))):
                pass
        assert f"ssh-keyscan -p {sshd.port} 127.0.0.1" in info.value.hint
        assert "host key not trusted" in info.value.message


async def test_strict_checking_off_needs_no_known_hosts(sshd: Sshd, tmp_path: Path) -> None:
    entry = replace(sshd.entry, known_hosts=str(tmp_path / "absent"),
                    strict_host_key_checking=False)
    async with connect(entry) as sh:
        assert (await sh.run("echo hi")).stdout == "hi\n"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_closed_port_is_unreachable(sshd: Sshd) -> None:
    with pytest.raises(SshUnreachable) as info:
        async with connect(replace(sshd.entry, port=closed_port())):
            pass
    assert "HostName and Port" in info.value.hint


async def test_a_server_that_never_speaks_ssh_times_out(sshd: Sshd) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(SshTimeout, match="no SSH answer") as info:
            async with connect(replace(sshd.entry, port=port, connect_timeout=0.3)):
                pass
        assert "ConnectTimeout" in info.value.hint
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("after_greeting", [True, False], ids=["closed", "reset"])
async def test_a_server_that_closes_the_connection_is_not_a_timeout(
        sshd: Sshd, after_greeting: bool) -> None:
    # What sshd does past MaxStartups, or for a host TCP wrappers or fail2ban refuse: an
    # immediate answer, which must not be reported as "no SSH answer within 10s".
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if after_greeting:  # read the client's version line: a clean close, not a reset
            await reader.readline()
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(SshUnreachable) as info:
            async with connect(replace(sshd.entry, port=port, connect_timeout=10.0)):
                pass
        assert "the server closed the connection before we could log in" in info.value.message
        assert "within" not in info.value.message
        assert "sshd" in info.value.hint and "MaxStartups" in info.value.hint
    finally:
        server.close()
        await server.wait_closed()


BAD_HOSTNAMES = {
    "unknown name": "no-such-host.invalid",
    "double dot typo": "gpu..lan",
    "64-character label": "a" * 64 + ".lan",
    "nul byte": "bad\x00host",
}


@pytest.mark.parametrize("hostname", BAD_HOSTNAMES.values(), ids=BAD_HOSTNAMES.keys())
async def test_a_bad_host_name_is_unreachable(sshd: Sshd, hostname: str) -> None:
    # hives.conf passes HostName through as written; connect() must still fail plainly
    # (`rbee hive status` promises never to fail on SSH trouble).
    with pytest.raises(SshUnreachable):
        async with connect(replace(sshd.entry, hostname=hostname, connect_timeout=2.0)):
            pass


# -- deadlines: nothing that crosses to the machine may wait for ever -------------------------

FAST = SshTimeouts(keepalive_interval=0.2, keepalive_count_max=2, open=0.5, sftp_step=0.5,
                   put_bytes_per_s=1e9)


@pytest.fixture
async def stuck_sshd(tmp_path: Path) -> AsyncIterator[Sshd]:
    """An SFTP server that takes every write and never answers it (a hung sftp-server, a
    home on an NFS server that went away): the request stays pending on the client."""
    opened: list[object] = []

    class SilentWrites(asyncssh.SFTPServer):
        def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
            opened.append(super().open(path, pflags, attrs))
            return opened[-1]

        async def write(self, file_obj: object, offset: int, data: bytes) -> int:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    async with serve(tmp_path, SilentWrites) as server:
        yield server
    for file_obj in opened:  # the stuck handler never closes them
        file_obj.close()  # type: ignore[attr-defined]


async def test_an_sftp_write_that_is_never_answered_times_out(
        stuck_sshd: Sshd, tmp_path: Path) -> None:
    path = tmp_path / "hive.env"
    async with connect(stuck_sshd.entry, FAST) as sh:
        started = time.monotonic()
        with pytest.raises(SshTimeout) as info:
            await asyncio.wait_for(sh.write_text(str(path), "RBEE_HIVE_TOKEN=s3cret\n"), 10)
        took = time.monotonic() - started
    assert took < 0.5 + 1.0, f"gave up after {took:.1f}s"
    # names the host and the step; never the secret
    assert f"box (tester@127.0.0.1:{stuck_sshd.port})" in info.value.message
    assert f"while writing {path} over SFTP" in info.value.message
    assert "s3cret" not in info.value.message and "Hint:" in info.value.message


async def test_a_put_that_is_never_answered_times_out_with_a_bound_scaled_by_size(
        stuck_sshd: Sshd, tmp_path: Path) -> None:
    wheel = tmp_path / "big.whl"
    wheel.write_bytes(os.urandom(200_000))
    (tmp_path / "remote").mkdir()
    slow_link = replace(FAST, put_bytes_per_s=200_000)  # 0.5 s floor + 1 s for its bytes
    assert slow_link.put(200_000) == pytest.approx(1.5)
    async with connect(stuck_sshd.entry, slow_link) as sh:
        started = time.monotonic()
        with pytest.raises(SshTimeout, match=r"no answer within 1.5s while copying "
                           r"big.whl \(200000 bytes\)"):
            await asyncio.wait_for(sh.put([wheel], str(tmp_path / "remote")), 10)
        took = time.monotonic() - started
    assert 1.5 <= took < 1.5 + 1.0, f"gave up after {took:.1f}s"


class Proxy:
    """A TCP relay that can go silent both ways without closing anything: a partition."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self.frozen = False
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while chunk := await src.read(65536):
                if not self.frozen:  # dropped, as a dead switch drops them
                    dst.write(chunk)

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            writer.close()
            up_writer.close()


async def test_keepalives_end_a_connection_whose_peer_went_silent(
        sshd: Sshd, tmp_path: Path) -> None:
    async with Proxy(sshd.port) as proxy:
        known_hosts = tmp_path / "proxy_known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{proxy.port} "
                               f"{sshd.host_key.export_public_key('openssh').decode()}")
        entry = replace(sshd.entry, port=proxy.port, known_hosts=str(known_hosts))
        async with connect(entry, replace(FAST, open=5.0)) as sh:
            assert (await sh.run("echo up")).stdout == "up\n"
            proxy.frozen = True
            started = time.monotonic()
            # the command would run for a minute: the silence is noticed first
            with pytest.raises(SshUnreachable, match="connection lost"):
                await asyncio.wait_for(sh.run("sleep 60"), 10)
            took = time.monotonic() - started
    assert took < 0.2 * 3 + 1.0, f"noticed after {took:.1f}s"


async def test_connect_turns_keepalives_on_by_default(
        sshd: Sshd, monkeypatch: pytest.MonkeyPatch) -> None:
    # asyncssh's default is no keep-alive at all; the queen's must notice a partition
    # (the test above proves the options work; this one, that connect() always sets them)
    seen: list[dict[str, object]] = []
    real = asyncssh.connect

    async def recording(host: str, **options: object) -> asyncssh.SSHClientConnection:
        seen.append(options)
        return await real(host, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncssh, "connect", recording)
    async with connect(sshd.entry) as sh:
        assert (await sh.run("echo hi")).stdout == "hi\n"
    assert (seen[0]["keepalive_interval"], seen[0]["keepalive_count_max"]) == (15.0, 3)


async def test_a_channel_that_never_opens_times_out(sshd: Sshd, tmp_path: Path) -> None:
    # keep-alives far off: the channel's own deadline must end the wait
    async with Proxy(sshd.port) as proxy:
        known_hosts = tmp_path / "proxy_known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{proxy.port} "
                               f"{sshd.host_key.export_public_key('openssh').decode()}")
        entry = replace(sshd.entry, port=proxy.port, known_hosts=str(known_hosts))
        async with connect(entry, replace(FAST, keepalive_interval=60.0)) as sh:
            proxy.frozen = True
            started = time.monotonic()
            with pytest.raises(SshTimeout, match=r"no answer within 0.5s while starting a "
                               r"command \(echo hi\)") as info:
                await asyncio.wait_for(sh.run("echo hi", timeout=30), 10)
            took = time.monotonic() - started
    assert f"box (tester@127.0.0.1:{proxy.port})" in info.value.message
    assert took < 0.5 + 1.0, f"gave up after {took:.1f}s"
