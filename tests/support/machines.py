"""Several separate "machines" on this one host, each with its own IP address and its own sshd.

`machines(count, root)` is a context manager that builds `count` machines and yields them as a
list of `Machine`. Each machine is:

* a Linux network namespace (`ip netns add`) holding one end of a veth pair. The namespace side
  has `10.S.i.2/24`, the root-namespace side `10.S.i.1/24`, where `S` is a second octet not in
  use by any route or address on this host (tried from 201 to 250) and `i` is the machine number
  (1-based);
* a real OpenSSH `sshd` started inside that namespace, listening on `10.S.i.2:22`, with its own
  host key, a client key pair for root to log in with, and a `known_hosts` file for that key;
* a throwaway Unix user (`/bin/sh` as its shell, so no `.bashrc` runs per command) whose home
  directory is under `root`, owned by the user, mode 700.

Why network namespaces: rbee reaches remote machines over SSH, and its tests need several
machines that each have their own address and their own sshd, so that "machine 1" and
"machine 2" are told apart the way they are in production (by host, not by port). A network
namespace gives exactly that without containers, images or a container runtime; CI runs the
tests as root, which is all `ip netns` needs.

Networking inside a machine: it has its own `lo` and a route to its own /24 only. There is no
default route, so processes on the machine cannot reach the internet or the other machines; they
can reach the root namespace at `Machine.host_address` (a server bound to 0.0.0.0 there answers),
which is how a machine talks back to a queen running in the test process. The root namespace
reaches the machine at `Machine.address`.

Partition: `Machine.partition()` cuts a machine off the network silently, both ways (every
packet dropped, nothing refused), as a dead switch does; `Machine.heal()` undoes it. It needs
`tc` (iproute2) and the `blackhole` qdisc, which every kernel with traffic control has.

Cleanup, on exit and on errors (each step on its own, so one failure does not skip the rest):
SIGKILL every process in each namespace and every process of each throwaway user, reap sshd,
`ip netns del` (which also removes the veth pair), `userdel`, remove the per-machine directories.
Leftovers of a test process that died without cleaning up (namespaces `rbee-<pid>-...` and users
marked with that pid in their GECOS field, for a pid that is no longer alive) are removed the next
time `machines()` runs.

Names: namespace `rbee-<pid>-<S>-m<i>`, host-side veth `rbee<S>m<i>` (the namespace side is
`eth0`), user `rbee<S>m<i>`. The subnet octet `S` is picked under a host-wide file lock and is in
use until cleanup, so these names are unique across concurrent test processes, and `machines()`
calls may be nested.

Side effect: the user must be able to walk to its home under `root`, so `root` and any ancestor
directory that lacks the "others may search" bit (for example pytest's /tmp/pytest-of-root,
mode 700) gets `o+x` (search only, not list). This is not undone; pytest tightens its own base
directory again at the start of the next session.

Requirements: root; `ip` and `tc` (iproute2) and `sshd`, `ssh-keygen` (openssh-server),
installed by `scripts/system-deps.sh`; `useradd`/`usermod`/`userdel` (passwd, in every Debian
base image).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SSH_PORT = 22
SUBNET_OCTETS = range(201, 251)
_GECOS_PREFIX = "rbee test machine, pid "
_SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


def _tool(name: str) -> str:
    """Absolute path of a system tool (root's PATH may lack /usr/sbin)."""
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN_DIRS))
    if found is None:
        raise RuntimeError(f"{name} not found; run scripts/system-deps.sh (as root)")
    return found


def _run(*argv: str, timeout: float = 30.0) -> str:
    """Run a command; on failure raise with its stderr in the message. Returns stdout."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}: "
                           f"{done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _run_retrying(*argv: str, tries: int = 20) -> None:
    """useradd/userdel fail at once when another process holds /etc/passwd's lock: retry."""
    for attempt in range(tries):
        try:
            _run(*argv)
            return
        except RuntimeError as e:
            if attempt == tries - 1 or "lock" not in str(e).lower():
                raise
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill_and_wait(pids: list[int], sig: int, timeout: float = 5.0) -> None:
    procs: list[psutil.Process] = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
            proc = psutil.Process(pid)
            proc.send_signal(sig)
            procs.append(proc)
    if sig == signal.SIGKILL and procs:
        # Children of a killed process are zombies until their parent reaps them; those count as
        # gone: a zombie holds no socket, file or namespace.
        deadline = time.monotonic() + timeout
        while any(_alive(p.pid) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.02)


def _netns_pids(netns: str) -> list[int]:
    done = subprocess.run([_tool("ip"), "netns", "pids", netns], capture_output=True, text=True,
                          timeout=10, check=False)
    if done.returncode != 0:  # the namespace is gone
        return []
    return [int(word) for word in done.stdout.split()]


def _uid_pids(uid: int) -> list[int]:
    found = []
    for proc in psutil.process_iter(["uids"]):
        uids = proc.info["uids"]
        if uids is not None and uid in (uids.real, uids.effective):
            found.append(proc.pid)
    return found


@dataclass
class Machine:
    """One fake remote machine: a network namespace with its own address, sshd and user."""

    name: str
    netns: str
    address: str
    host_address: str
    ssh_port: int
    user: str
    uid: int
    home: Path
    identity_file: Path
    known_hosts: Path
    dir: Path = field(repr=False)
    sshd_log: Path = field(repr=False)
    veth: str = ""  # the host-side end of its veth pair, in the root namespace

    def exec(self, *argv: str, check: bool = True, timeout: float = 30
             ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the machine's network namespace, as root; capture its output."""
        return subprocess.run([_tool("ip"), "netns", "exec", self.netns, *argv],
                              capture_output=True, text=True, check=check, timeout=timeout)

    def pids(self) -> list[int]:
        """Pids of every process in the machine's network namespace (sshd included)."""
        return _netns_pids(self.netns)

    def user_pids(self) -> list[int]:
        """Pids of the processes that run as the machine's user."""
        return _uid_pids(self.uid)

    def kill_user_processes(self, sig: int = signal.SIGKILL) -> None:
        """Signal every process of the machine's user; with SIGKILL, wait until they are gone."""
        _kill_and_wait(self.user_pids(), sig)

    def partition(self) -> None:
        """Cut the machine off the network, both ways, silently: a `blackhole` qdisc on each
        end of its veth pair drops every packet leaving either side (ARP included), as when a
        switch dies or a cable is pulled. Links, addresses and routes stay as they are, so no
        process on either side gets an error: connects and established connections just hang,
        as they do across a real partition. (`ip link set ... down` would not do: it removes
        the routes, and sends then fail at once with "network unreachable".)"""
        tc = _tool("tc")
        _run(tc, "qdisc", "replace", "dev", self.veth, "root", "blackhole")
        _run(_tool("ip"), "netns", "exec", self.netns, tc, "qdisc", "replace", "dev", "eth0",
             "root", "blackhole")

    def heal(self) -> None:
        """Undo `partition`: packets flow again; connections that survived resume."""
        tc = _tool("tc")
        _run(tc, "qdisc", "del", "dev", self.veth, "root")
        _run(_tool("ip"), "netns", "exec", self.netns, tc, "qdisc", "del", "dev", "eth0",
             "root")

    def partitioned(self) -> bool:
        """Whether `partition` is in force (a blackhole qdisc on the host-side end)."""
        return "blackhole" in _run(_tool("tc"), "qdisc", "show", "dev", self.veth)


@dataclass
class _Started:
    """What setup created, so cleanup removes exactly that (and can run twice)."""

    netns: list[str] = field(default_factory=list)
    veths: list[str] = field(default_factory=list)
    users: list[tuple[str, int]] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)
    sshds: list[subprocess.Popen[bytes]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# setup


@contextlib.contextmanager
def _host_lock() -> Iterator[None]:
    """Serialise subnet choice across test processes on this host."""
    lock_dir = Path("/run/lock") if Path("/run/lock").is_dir() else Path(tempfile.gettempdir())
    with (lock_dir / "rbee-test-machines.lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network or address named in any routing table or on any interface."""
    text = (_run(_tool("ip"), "-4", "route", "show", "table", "all")
            + _run(_tool("ip"), "-4", "-o", "addr", "show"))
    found = []
    for word in re.findall(r"\b\d+\.\d+\.\d+\.\d+(?:/\d+)?\b", text):
        net = ipaddress.ip_network(word, strict=False)
        if isinstance(net, ipaddress.IPv4Network) and net.prefixlen > 0:
            found.append(net)
    return found


def _free_subnet_octet() -> int:
    used = _networks_in_use()
    for octet in SUBNET_OCTETS:
        candidate = ipaddress.IPv4Network(f"10.{octet}.0.0/16")
        if not any(candidate.overlaps(net) for net in used):
            return octet
    raise RuntimeError(f"no free 10.x.0.0/16 for x in {SUBNET_OCTETS}; routes in use: {used}")


def _remove_stale() -> None:
    """Remove namespaces and users left by test processes that died without cleaning up."""
    listing = subprocess.run([_tool("ip"), "netns", "list"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    for line in listing.splitlines():
        match = re.match(r"(rbee-(\d+)-\S+)", line)
        if match and not psutil.pid_exists(int(match.group(2))):
            netns = match.group(1)
            with contextlib.suppress(Exception):
                _kill_and_wait(_netns_pids(netns), signal.SIGKILL)
            with contextlib.suppress(Exception):
                _run(_tool("ip"), "netns", "del", netns)
    for entry in pwd.getpwall():
        if entry.pw_gecos.startswith(_GECOS_PREFIX):
            pid = entry.pw_gecos.removeprefix(_GECOS_PREFIX)
            if pid.isdigit() and not psutil.pid_exists(int(pid)):
                with contextlib.suppress(Exception):
                    _kill_and_wait(_uid_pids(entry.pw_uid), signal.SIGKILL)
                with contextlib.suppress(Exception):
                    _run_retrying(_tool("userdel"), "-f", entry.pw_name)


def _make_traversable(path: Path) -> None:
    """Give `path` and its ancestors the others-may-search bit, so the users reach their homes."""
    for p in (path, *path.parents):
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            p.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _add_network(netns: str, veth: str, host_cidr: str, ns_cidr: str) -> None:
    ip = _tool("ip")
    _run(ip, "netns", "add", netns)
    # Create the peer directly inside the namespace: deleting the namespace then always removes
    # both ends, even if a later step fails.
    _run(ip, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
    _run(ip, "addr", "add", host_cidr, "dev", veth)
    _run(ip, "link", "set", veth, "up")
    _run(ip, "-n", netns, "addr", "add", ns_cidr, "dev", "eth0")
    _run(ip, "-n", netns, "link", "set", "eth0", "up")
    _run(ip, "-n", netns, "link", "set", "lo", "up")


def _add_user(user: str, home: Path) -> int:
    _run_retrying(_tool("useradd"), "-M", "-d", str(home), "-s", "/bin/sh",
                  "-c", f"{_GECOS_PREFIX}{os.getpid()}", user)
    # useradd leaves the password as "!" (locked): sshd refuses locked accounts even for keys.
    _run_retrying(_tool("usermod"), "-p", "*", user)
    entry = pwd.getpwnam(user)
    home.mkdir(mode=0o700)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    home.chmod(0o700)
    return entry.pw_uid


def _sshd_config(d: Path, address: str, user: str, session_env: dict[str, str]) -> str:
    return "\n".join([
        *(f"SetEnv {k}={v}" for k, v in session_env.items()),
        f"ListenAddress {address}",
        f"Port {SSH_PORT}",
        f"HostKey {d / 'ssh_host_ed25519_key'}",
        f"PidFile {d / 'sshd.pid'}",
        f"AuthorizedKeysFile {d / 'authorized_keys'}",
        f"AllowUsers {user}",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "PermitRootLogin no",
        "PrintMotd no",
        "PrintLastLog no",
        # Tests open many channels per connection and many connections at once.
        "MaxSessions 100",
        "MaxStartups 100:30:200",
        "Subsystem sftp internal-sftp",
        "LogLevel VERBOSE",
        "",
    ])


def _write_keys(d: Path, address: str) -> None:
    keygen = _tool("ssh-keygen")
    host_key, client_key = d / "ssh_host_ed25519_key", d / "id_ed25519"
    _run(keygen, "-t", "ed25519", "-N", "", "-q", "-C", f"rbee-test-host-{address}",
         "-f", str(host_key))
    _run(keygen, "-t", "ed25519", "-N", "", "-q", "-C", "rbee-test-client", "-f", str(client_key))
    # The user's sshd session reads authorized_keys as that user: world-readable.
    authorized = d / "authorized_keys"
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    authorized.chmod(0o644)
    key_type, key_data = Path(f"{host_key}.pub").read_text().split()[:2]
    (d / "known_hosts").write_text(f"[{address}]:{SSH_PORT} {key_type} {key_data}\n"
                                   f"{address} {key_type} {key_data}\n")


def _wait_for_port(address: str, proc: subprocess.Popen[bytes], log: Path,
                   timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd on {address} exited with {proc.returncode}:\n"
                               f"{log.read_text(errors='replace')}")
        try:
            with socket.create_connection((address, SSH_PORT), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"sshd on {address}:{SSH_PORT} did not accept connections "
                                   f"within {timeout}s:\n{log.read_text(errors='replace')}"
                                   ) from None
            time.sleep(0.02)


def _start_sshd(machine: Machine, started: _Started, session_env: dict[str, str]) -> None:
    cfg = machine.dir / "sshd_config"
    cfg.write_text(_sshd_config(machine.dir, machine.address, machine.user, session_env))
    sshd = _tool("sshd")  # sshd re-executes itself per connection: it needs an absolute path
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)  # privilege separation dir
    _run(sshd, "-t", "-f", str(cfg))
    with machine.sshd_log.open("ab") as log:
        proc = subprocess.Popen(
            [_tool("ip"), "netns", "exec", machine.netns, sshd, "-D", "-f", str(cfg),
             "-E", str(machine.sshd_log)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    started.sshds.append(proc)
    _wait_for_port(machine.address, proc, machine.sshd_log)


def _netns_name(octet: int, i: int) -> str:
    return f"rbee-{os.getpid()}-{octet}-m{i}"


def _create(i: int, octet: int, root: Path, started: _Started,
            session_env: dict[str, str]) -> Machine:
    name, user = f"m{i}", f"rbee{octet}m{i}"
    netns = _netns_name(octet, i)
    host_address, address = f"10.{octet}.{i}.1", f"10.{octet}.{i}.2"
    d = root / f"{name}-{user}"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    started.dirs.append(d)
    home = d / "home"
    uid = _add_user(user, home)
    started.users.append((user, uid))
    _write_keys(d, address)
    machine = Machine(name=name, netns=netns, address=address, host_address=host_address,
                      ssh_port=SSH_PORT, user=user, uid=uid, home=home,
                      identity_file=d / "id_ed25519", known_hosts=d / "known_hosts", dir=d,
                      sshd_log=d / "sshd.log", veth=f"rbee{octet}m{i}")
    _start_sshd(machine, started, session_env)
    return machine


# ---------------------------------------------------------------------------------------------
# cleanup


def _attempt(errors: list[str], what: str, fn: Callable[..., object], *args: object) -> None:
    try:
        fn(*args)
    except Exception as e:
        errors.append(f"{what}: {e!r}")


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(5)


def _wait_link_gone(veth: str, timeout: float = 30.0, nudge_after: float = 5.0) -> None:
    """The kernel destroys a deleted namespace (and so the veth pair) a moment after `ip netns
    del` returns — on a busy machine, seconds later (a CI run once saw more than 5 s). Wait,
    deleting the host end ourselves if it lingers, so the host is clean when machines()
    returns."""
    start = time.monotonic()
    nudged = False
    while Path(f"/sys/class/net/{veth}").exists():
        waited = time.monotonic() - start
        if waited > timeout:
            raise TimeoutError(f"{veth} still exists {timeout}s after its namespace was deleted")
        if waited > nudge_after and not nudged:
            nudged = True
            subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=10,
                           check=False)  # gone meanwhile is fine: the loop checks again
        time.sleep(0.02)


def _delete_user(user: str, uid: int) -> None:
    _kill_and_wait(_uid_pids(uid), signal.SIGKILL)
    try:
        pwd.getpwnam(user)
    except KeyError:
        return
    # -f: a killed process of the user may linger as a zombie until init reaps it (sshd's
    # unprivileged child is orphaned to init when a connection ends); plain userdel refuses then.
    _run_retrying(_tool("userdel"), "-f", user)


def _cleanup(started: _Started) -> list[str]:
    """Undo everything in `started`; every step is tried. Returns the errors met."""
    errors: list[str] = []
    for netns in started.netns:
        _attempt(errors, f"kill processes in {netns}",
                 lambda ns: _kill_and_wait(_netns_pids(ns), signal.SIGKILL), netns)
    for user, uid in started.users:
        _attempt(errors, f"kill processes of {user}",
                 lambda u: _kill_and_wait(_uid_pids(u), signal.SIGKILL), uid)
    for proc in started.sshds:
        _attempt(errors, f"reap sshd {proc.pid}", _reap, proc)
    for netns in started.netns:
        _attempt(errors, f"delete {netns}", _run, _tool("ip"), "netns", "del", netns)
    for veth in started.veths:
        _attempt(errors, f"wait for {veth} to go", _wait_link_gone, veth)
    for user, uid in started.users:
        _attempt(errors, f"delete user {user}", _delete_user, user, uid)
    for d in started.dirs:
        _attempt(errors, f"remove {d}", shutil.rmtree, d)
    started.netns.clear()
    started.veths.clear()
    started.users.clear()
    started.sshds.clear()
    started.dirs.clear()
    return errors


@contextlib.contextmanager
def machines(count: int, root: Path, session_env: dict[str, str] | None = None
             ) -> Iterator[list[Machine]]:
    """`count` machines, each with its own network namespace, address, user and sshd.

    Per-machine files (keys, sshd config and log, the user's home) live under `root`.
    Everything is removed on exit, also when setup or the body raises. `session_env` is set
    in every SSH session (sshd `SetEnv`), so processes started over SSH inherit it.
    """
    if os.geteuid() != 0:
        raise RuntimeError("machines() needs root (ip netns, useradd, sshd)")
    if not 1 <= count <= 254:
        raise ValueError(f"count must be 1..254, not {count}")
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    _make_traversable(root)
    started = _Started()
    try:
        with _host_lock():
            _remove_stale()
            octet = _free_subnet_octet()
            for i in range(1, count + 1):
                # Register first: a half-made namespace is still deleted on failure.
                started.netns.append(_netns_name(octet, i))
                started.veths.append(f"rbee{octet}m{i}")
                _add_network(started.netns[-1], started.veths[-1], f"10.{octet}.{i}.1/24",
                             f"10.{octet}.{i}.2/24")
        yield [_create(i, octet, root, started, session_env or {})
                for i in range(1, count + 1)]
    except BaseException as e:
        for error in _cleanup(started):
            e.add_note(f"machines() cleanup: {error}")
        raise
    errors = _cleanup(started)
    if errors:
        raise RuntimeError("machines() cleanup failed:\n" + "\n".join(errors))
