"""Two real "machines" (network namespaces, each with its own address and real sshd).

The queen installs a hive on each over SSH with pushed wheels (the machines have no route to
any registry), places a worker on each, routes across both, loses one hive to SIGKILL, keeps
serving from the other, and takes the first back when it restarts; a remote hive runs the real
built-in model; Ctrl-C on an install cancels it and leaves the machine as it was. See
tests/support/machines.py for the fixture.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from rbee.client import JobFailed, QueenClient
from tests.support.daemons import Daemon, rbee_env, run_cli, start_queen
from tests.support.machines import Machine, machines

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
TOKEN = "multi-host-test-token"
INTERVAL = 0.5  # telemetry interval: a hive is down after 3 missed ones
SLOW = "20"  # fake tokens per second on the machines: long enough answers to overlap


def hives_conf(ms: list[Machine], extra: str = "") -> str:
    blocks = [f"""
Host {m.name}
    HostName {m.address}
    User {m.user}
    IdentityFile {m.identity_file}
    UserKnownHostsFile {m.known_hosts}
    HivePort 7835
    Region eu-{m.name}
""" for m in ms]
    return "\n".join(blocks) + extra


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[list[Machine], Daemon, dict[str, str]]]:
    root = tmp_path_factory.mktemp("fleet")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "wrong_key")],
                   check=True)
    # Not under pytest's base directory: every new pytest session on this host resets that
    # to mode 700, which would lock the machines' users out of their homes mid-test.
    homes = Path(tempfile.mkdtemp(prefix="rbee-machines-"))
    with machines(2, homes, session_env={"RBEE_WORKER_FAKE_TOKENS_PER_SECOND": SLOW}) as ms:
        env = rbee_env(root, RBEE_QUEEN_HOST="0.0.0.0", RBEE_QUEEN_API_TOKEN=TOKEN,
                       RBEE_API_TOKEN=TOKEN, RBEE_QUEEN_LOCAL_HIVE="false",
                       RBEE_QUEEN_TELEMETRY_INTERVAL=str(INTERVAL))
        Path(env["RBEE_QUEEN_HIVES_CONF"]).write_text(hives_conf(ms, """
Host nopython
    HostName {a}
    User {u}
    IdentityFile {k}
    UserKnownHostsFile {kh}
    Python /nonexistent/python3

Host badkey
    HostName {a}
    User {u}
    IdentityFile {root}/wrong_key
    UserKnownHostsFile {kh}

Host closed
    HostName {a}
    Port 2999
    User {u}
    IdentityFile {k}
    ConnectTimeout 3
""".format(a=ms[0].address, u=ms[0].user, k=ms[0].identity_file, kh=ms[0].known_hosts,
           root=root)))
        queen = start_queen(env)
        try:
            yield ms, queen, env
        finally:
            queen.stop()
    shutil.rmtree(homes, ignore_errors=True)


def cli(env: dict[str, str], *args: str, timeout: float = 600) -> Any:
    done = run_cli(env, "--json", *args, timeout=timeout)
    assert done.returncode == 0, f"rbee {' '.join(args)} failed:\n{done.stderr}"
    return json.loads(done.stdout)


def hive_states(env: dict[str, str]) -> dict[str, str]:
    return {h["id"]: h["state"] for h in cli(env, "hive", "list")}


def test_install_route_lose_a_hive_and_rejoin(
        fleet: tuple[list[Machine], Daemon, dict[str, str]]) -> None:
    ms, queen, env = fleet
    for m in ms:  # the machines cannot reach any package registry: pushed wheels only
        assert "default" not in m.exec("ip", "route").stdout

    # install, with narration for people
    done = run_cli(env, "hive", "install", "m1", timeout=600)
    assert done.returncode == 0, done.stderr
    assert "pushing" in done.stderr and "registered" in done.stderr, done.stderr
    installed = cli(env, "hive", "install", "m2")
    assert installed["installed"]["method"] == "background"  # no systemd in a namespace
    assert hive_states(env) == {"m1": "up", "m2": "up", "nopython": "absent",
                                "badkey": "absent", "closed": "absent"}
    # the human renderings work too
    shown = run_cli(env, "hive", "list")
    assert shown.returncode == 0 and "m1" in shown.stdout and "up" in shown.stdout, shown.stderr
    shown = run_cli(env, "hive", "status", "m1")
    assert shown.returncode == 0 and "running: True" in shown.stdout, shown.stdout
    shown = run_cli(env, "hive", "ssh-test", "m2")
    assert shown.returncode == 0 and "m2: reachable" in shown.stderr, shown.stderr

    # a worker on each machine, at that machine's address
    workers = {}
    for m in ms:
        w = cli(env, "worker", "spawn", "--hive", m.name, "--model", "rbee-fake")
        assert w["hive_id"] == m.name and w["url"].startswith(f"http://{m.address}:")
        workers[m.name] = w["id"]
    assert all(p for m in ms for p in [m.user_pids()])  # hive + worker run as that user there

    with QueenClient(queen.url, TOKEN) as client:
        # the OpenAI API sees the models of every machine
        models = httpx.get(f"{queen.url}/v1/models",
                           headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert "rbee-fake" in {m["id"] for m in models["data"]}

        # plain requests spread across both machines (least-loaded): two at once
        served = concurrent_infers(client, 2, max_tokens=12)
        assert served == {workers["m1"], workers["m2"]}

        # data residency (issue 13): a tenant bound to m2's region (hives.conf's Region) is
        # served by m2 only, and pinning it to m1 is refused, not placed there
        client.admin("POST", "/tenants", {"name": "acme", "regions": ["eu-m2"]})
        user = client.admin("POST", "/users", {"tenant": "acme", "name": "ann"})
        key = client.admin("POST", "/keys", {"user": user["id"]})["key"]
        with QueenClient(queen.url, key) as acme:
            for _ in range(3):
                assert concurrent_infers(acme, 1, max_tokens=2) == {workers["m2"]}
            with pytest.raises(JobFailed, match="no hive in eu-m2"):
                acme.run("infer", model="rbee-fake", prompt="hi", max_tokens=2, hive_id="m1")
        assert {w["hive_id"] for w in cli(env, "worker", "list")} == {"m1", "m2"}
        assert len(cli(env, "worker", "list")) == 2  # nothing was placed for it on m1

        # SIGKILL the hive on m1 (its workers die with it): down within 3 intervals
        killed_at = time.monotonic()
        ms[0].kill_user_processes()
        while hive_states_api(client)["m1"] != "down":
            assert time.monotonic() - killed_at < 3 * INTERVAL + 1.0, "m1 not marked down"
            time.sleep(0.05)
        detected = time.monotonic() - killed_at
        assert detected <= 3 * INTERVAL + 0.5, f"detected after {detected:.2f}s"

        # requests keep being served, by m2
        assert concurrent_infers(client, 3, max_tokens=3) == {workers["m2"]}

        # restart: m1 re-registers; its old worker died with it and is not listed
        cli(env, "hive", "start", "m1")
        assert hive_states_api(client)["m1"] == "up"
        listed = {w["id"] for w in cli(env, "worker", "list")}
        assert workers["m1"] not in listed and workers["m2"] in listed
        status = cli(env, "hive", "status", "m1")
        assert status["remote"]["running"] and status["remote"]["version_matches"]
        devices = cli(env, "hive", "refresh", "m1")["devices"]
        assert [d["id"] for d in devices] == ["cpu"] and devices[0]["memory_total"] > 0

    # a queen restart re-discovers the hives it installed, and their workers
    queen.stop()
    queen = start_queen(env)
    with QueenClient(queen.url, TOKEN) as client:
        deadline = time.monotonic() + 10
        while hive_states_api(client) != {"m1": "up", "m2": "up", "nopython": "absent",
                                          "badkey": "absent", "closed": "absent"}:
            assert time.monotonic() < deadline, hive_states_api(client)
            time.sleep(0.1)
        assert workers["m2"] in {w["id"] for w in client.run("worker_list")["workers"]}
        assert concurrent_infers(client, 1, max_tokens=2) == {workers["m2"]}
    fleet[1].proc = queen.proc  # the fixture stops the new queen

    # stop: hive and workers gone from the machine; uninstall: nothing of rbee is left
    cli(env, "hive", "stop", "m2")
    assert hive_states(env)["m2"] == "absent"
    assert not ms[1].user_pids() or wait_gone(ms[1])
    cli(env, "hive", "uninstall", "m2")
    assert home_entries(ms[1]) == []  # not even the ~/.local the install created
    cli(env, "hive", "uninstall", "m1")
    assert not ms[0].user_pids() or wait_gone(ms[0])
    assert home_entries(ms[0]) == []


def test_a_killed_remote_hive_comes_back_until_it_is_stopped(
        fleet: tuple[list[Machine], Daemon, dict[str, str]]) -> None:
    # No systemd in the machines: the background method, whose supervisor (supervise-hive,
    # run by the machine's /bin/sh) must bring back a hive that is SIGKILLed (an OOM kill),
    # and `rbee hive stop` must end that for good.
    ms, queen, env = fleet
    m = ms[0]
    assert home_entries(m) == []
    assert cli(env, "hive", "install", m.name)["installed"]["method"] == "background"
    root = m.home / ".local/share/rbee-hive"
    first = int((root / "hive.pid").read_text())
    supervisor = int((root / "supervisor.pid").read_text())
    assert first in m.user_pids() and supervisor in m.user_pids()

    with QueenClient(queen.url, TOKEN) as client:
        killed_at = time.monotonic()
        m.exec("kill", "-KILL", str(first))
        # back within the supervisor's first pause (1 s) + a hive start + one report; a
        # report counts only if made after the kill: the old process cannot have made it
        while not reported_since(client, m.name, killed_at + 0.2):
            assert time.monotonic() - killed_at < 30, "the killed hive did not come back"
            time.sleep(0.1)
        second = int((root / "hive.pid").read_text())
        assert second != first and second in m.user_pids()
        assert supervisor in m.user_pids()  # the same supervisor: it restarted the hive
        assert "exited with status 137; restarting in 1s" in (root / "hive.log").read_text()
        # the hive it brought back serves (the queen's secret still works)
        w = cli(env, "worker", "spawn", "--hive", m.name, "--model", "rbee-fake")
        assert w["hive_id"] == m.name

    # stop: the hive, its worker and the supervisor go, and nothing starts them again
    assert cli(env, "hive", "stop", m.name)["stopped"] is True
    assert not m.user_pids() or wait_gone(m)
    time.sleep(3)  # past the supervisor's pause: a surviving loop would have restarted it
    assert not m.user_pids(), m.user_pids()
    assert hive_states(env)[m.name] == "absent"
    # a start after a stop works again (the stop file does not stop the new supervisor)
    cli(env, "hive", "start", m.name)
    assert hive_states(env)[m.name] == "up"
    cli(env, "hive", "uninstall", m.name)
    assert not m.user_pids() or wait_gone(m)
    assert home_entries(m) == []


def reported_since(client: QueenClient, hive: str, since: float) -> bool:
    """Whether the queen has a report from `hive` made after `since` (time.monotonic)."""
    found = next(h for h in client.run("hive_list")["hives"] if h["id"] == hive)
    seen = found["last_seen_s"]
    return (found["state"] == "up" and seen is not None
            and time.monotonic() - seen > since)


def home_entries(m: Machine) -> list[str]:
    """Everything in the machine user's home (empty before the first install)."""
    return sorted(str(p.relative_to(m.home)) for p in m.home.rglob("*"))


QUESTION = "What is the capital of France?"
# Piper then Whisper tiny.en give it back (TOOLING-FACTS 3c; its first two words vary).
SENTENCE = "Hello world, the orchestrator is running three workers."


def _words(text: str) -> list[str]:
    return "".join(c for c in text.lower() if c.isalnum() or c.isspace()).split()


@pytest.mark.model
def test_a_remote_hive_runs_the_built_in_model(
        fleet: tuple[list[Machine], Daemon, dict[str, str]], tmp_path: Path) -> None:
    # The hive's venv must hold llama-cpp-python and the model's package: pushed wheels only,
    # since the machine reaches no registry. Seed 0 answers "Paris" (test_real_model.py).
    ms, _, env = fleet
    assert home_entries(ms[0]) == []
    done = run_cli(env, "hive", "install", "m1", timeout=600)
    assert done.returncode == 0, done.stderr
    assert "engine llama_cpp" in done.stderr and "built-in model" in done.stderr, done.stderr
    worker = cli(env, "worker", "spawn", "--hive", "m1", "--model", "smollm2")
    assert worker["hive_id"] == "m1" and worker["model"] == "smollm2-135m-instruct", worker
    answer = cli(env, "infer", "--hive", "m1", "--model", "smollm2", "--seed", "0", QUESTION)
    assert answer["worker_id"] == worker["id"], answer
    assert "Paris" in answer["text"], answer
    # The embedding engine and model came too (onnxruntime must not write ~/.cache there).
    assert "engine onnxruntime" in done.stderr, done.stderr
    vectors = cli(env, "embed", "--hive", "m1", "cat", "kitten")
    assert vectors["model"] == "all-minilm-l6-v2" and vectors["dimensions"] == 384, vectors
    hives = {w["id"]: (w["hive_id"], w["kind"]) for w in cli(env, "worker", "list")}
    assert hives[vectors["worker_id"]] == ("m1", "embedding")
    # ... and the speech engine with its voice (Piper's own espeak-ng, PyAV for mp3).
    assert "engine piper" in done.stderr and "engine av" in done.stderr, done.stderr
    out = tmp_path / "remote.mp3"
    spoken = cli(env, "speak", "--hive", "m1", SENTENCE, "-o", str(out))
    with av.open(str(out)) as audio:  # encoded there by PyAV: it decodes here
        seconds = sum(f.samples / f.sample_rate for f in audio.decode(audio=0))
    assert spoken["bytes"] == out.stat().st_size and 0.8 < seconds < 5, (spoken, seconds)
    # ... and Whisper writes it back there (the transcription extra came too)
    assert "engine faster_whisper" in done.stderr, done.stderr
    heard = cli(env, "transcribe", str(out), "--hive", "m1")
    # Piper's synthesis is not seeded and tiny.en is tiny: it has heard "Hello world" as "the
    # whole world", and "orchestrator is" as "orchestrators". Most words, not every one.
    said = _words(SENTENCE)[2:]
    assert sum(w in _words(heard["text"]) for w in said) >= len(said) - 2, heard
    kinds = {(w["hive_id"], w["kind"]) for w in cli(env, "worker", "list")}
    assert {("m1", "speech"), ("m1", "transcription")} <= kinds, kinds
    cli(env, "hive", "uninstall", "m1")
    assert not ms[0].user_pids() or wait_gone(ms[0])
    assert home_entries(ms[0]) == []


def test_ctrl_c_on_an_install_cancels_it_and_leaves_the_machine_as_it_was(
        fleet: tuple[list[Machine], Daemon, dict[str, str]]) -> None:
    ms, _, env = fleet
    m = ms[1]
    assert home_entries(m) == []
    proc = subprocess.Popen([sys.executable, "-m", "rbee", "hive", "install", m.name], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # interrupt once pip runs there: mid-install, files half made
        seen.append(line)
        if "pip" in line and "installing rbee" in line:
            break
    else:
        raise AssertionError(f"the install never reached pip: {''.join(seen)}")
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    stderr = "".join(seen) + rest
    assert proc.returncode == 130, stderr
    assert "cancelling" in stderr and "rollback" in stderr, stderr
    assert f"{m.name}: cancelled" in stderr, stderr
    # the machine is as it was: nothing of rbee runs there, nothing was left in the home
    assert not m.user_pids() or wait_gone(m)
    time.sleep(1.0)  # a pip left running would write into the home again
    assert home_entries(m) == []
    assert hive_states(env)[m.name] == "absent"


def wait_gone(m: Machine, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while m.user_pids():
        assert time.monotonic() < deadline, f"processes left on {m.name}: {m.user_pids()}"
        time.sleep(0.05)
    return True


def concurrent_infers(client: QueenClient, n: int, max_tokens: int) -> set[str]:
    served: list[str] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            result = client.run("infer", model="rbee-fake", prompt="hello",
                                max_tokens=max_tokens)
            served.append(result["worker_id"])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
        time.sleep(0.05)  # the first has been routed (and is busy) when the next arrives
    for t in threads:
        t.join(60)
    assert not errors, errors
    return set(served)


def hive_states_api(client: QueenClient) -> dict[str, str]:
    return {h["id"]: h["state"] for h in client.run("hive_list")["hives"]}


@pytest.mark.parametrize(("hive", "code", "words"), [
    ("nopython", "remote_python_missing", "/nonexistent/python3"),
    ("badkey", "ssh_auth_failed", "IdentityFile"),
    ("closed", "ssh_unreachable", "Port"),
    ("nowhere", "hive_not_found", "configured:"),
])
def test_ssh_failures_are_one_clear_message(
        fleet: tuple[list[Machine], Daemon, dict[str, str]], hive: str, code: str,
        words: str) -> None:
    ms, _, env = fleet
    before = sorted(p.name for p in ms[0].home.iterdir())
    done = run_cli(env, "hive", "install", hive, timeout=120)
    assert done.returncode == 1
    lines = [ln for ln in done.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and words in done.stderr, done.stderr
    if code != "hive_not_found":
        assert "Hint:" in done.stderr, done.stderr
    assert sorted(p.name for p in ms[0].home.iterdir()) == before  # machine left as it was
