"""The `machines()` test fixture: separate network namespaces, each with a real sshd and user."""

from __future__ import annotations

import pwd
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from tests.support.machines import Machine, machines

pytestmark = pytest.mark.e2e


@pytest.fixture
def root_server() -> Iterator[int]:
    """A TCP server in the root namespace on 0.0.0.0:<port> that answers b"hello" and closes."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"hello")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        server.close()


async def ssh_run(m: Machine, command: str) -> asyncssh.SSHCompletedProcess:
    async with asyncssh.connect(m.address, port=m.ssh_port, username=m.user,
                                client_keys=[str(m.identity_file)],
                                known_hosts=str(m.known_hosts)) as conn:
        return await conn.run(command, check=True, timeout=10)


def reach_root_namespace(m: Machine, port: int) -> str:
    """From inside the machine, connect to the root namespace's server via host_address."""
    script = ("import socket, sys\n"
              "with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:\n"
              "    print(s.recv(16).decode())\n")
    return m.exec(sys.executable, "-c", script, m.host_address, str(port)).stdout.strip()


def netns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                          check=True).stdout


async def test_machines_have_own_address_sshd_user_and_are_removed(tmp_path: Path,
                                                                   root_server: int) -> None:
    with machines(2, tmp_path) as ms:
        assert len({m.address for m in ms}) == 2
        assert len({m.user for m in ms}) == 2
        for m in ms:
            who = await ssh_run(m, "id -un; echo $HOME; touch $HOME/written && echo ok")
            assert who.stdout == f"{m.user}\n{m.home}\nok\n"
            assert who.stderr == ""
            assert (m.home / "written").stat().st_uid == m.uid
            assert m.pids(), "sshd runs inside the namespace"
            assert reach_root_namespace(m, root_server) == "hello"
            # No default route: nothing outside the machine's own /24 is reachable.
            routes = m.exec("ip", "-4", "route").stdout
            assert "default" not in routes
        netns = [m.netns for m in ms]
        users = [m.user for m in ms]

    listing = netns_list()
    for name in netns:
        assert name not in listing
    for user in users:
        with pytest.raises(KeyError):
            pwd.getpwnam(user)
