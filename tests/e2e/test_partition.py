"""A machine partitioned off the network mid-request: nothing waits for it (issue 9).

The defect this guards against: a worker whose machine was partitioned for 60 s hung every
request routed to it for the whole 60 s, even after its hive was marked down and the model
was served elsewhere; the hung requests kept their admission slots, so later requests queued
behind them (429 past the queue limit) while the healthy machine served nothing.

Real processes throughout: a queen with its local hive (one `rbee-fake` worker), and a remote
hive `m1` on a "machine" (a network namespace from tests/support/machines.py, reached at its
own address) with two workers. The remote hive is started by hand in the namespace with the
secrets an install would have given it (the SSH install itself is test_multi_host's subject
and takes minutes). Three long requests are in flight, one on each worker: a stream and a
non-streamed request on m1, a stream locally. Then m1 is partitioned: every packet between it
and the queen is silently dropped, both ways (`Machine.partition`, a blackhole qdisc), so the
queen sees no error at all, only silence — what a dead switch looks like. It must then:

- end the m1 stream within the liveness timeout (+ slack) with an error frame and [DONE];
- fail the m1 non-streamed request over to the local worker (200, a whole answer);
- let the local stream finish untouched;
- serve requests made during the partition from the local hive (200, none 429), in bounds;
- report m1 down (`/health` hives_up, its workers `unknown` in `GET /v1/workers`);
- take m1 back after the network heals (up, its workers ready, a request pinned to it served);
- leave no admission slot, job or reservation behind (tests/support/invariants.py).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from rbee.queen.credentials import HiveCredentials
from rbee.storage.db import connect
from rbee.storage.hives import HiveRow, HiveStore
from tests.support.daemons import Daemon, rbee_env, start_queen
from tests.support.invariants import Timed, assert_invariants
from tests.support.machines import Machine, machines

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

TOKEN = "partition-test-token"
HIVE = "m1"
LOCAL = "localhost"
INTERVAL = 0.5  # telemetry: a hive is down after 3 missed intervals
LIVENESS = 2.0  # a busy worker that answers no probe for this long is cut off
RATE = 20  # fake tokens per second, on both hives
LONG = 80  # tokens of the requests in flight at the partition: 4 s each
SHORT = 4  # tokens of the requests made during the partition
LONG_S, SHORT_S = LONG / RATE, SHORT / RATE
SLACK = 3.0  # scheduling noise on a loaded 2-core machine
DURING = 6  # OpenAI requests made during the partition (half of them streamed)
# A hive's telemetry POST has a 5 s timeout; one sent just before the heal may sit out its
# timeout (its packets were dropped) before the next one, which gets through.
BACK_UP = 5.0 + 2 * INTERVAL + SLACK
SPAWN = 60.0  # three fake workers placed at once, on a loaded machine


def chat(stream: bool, max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {"model": "rbee-fake", "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": max_tokens, "stream": stream, **extra}


@dataclass
class Outcome:
    """One OpenAI request made on its own thread, and how it ended."""

    what: str
    stream: bool
    started: float = field(default_factory=time.monotonic)
    first_token: threading.Event = field(default_factory=threading.Event)
    ended: float | None = None
    status: int | None = None
    frames: list[Any] = field(default_factory=list)  # a stream's data frames, "[DONE]" as is
    body: Any = None
    failure: BaseException | None = None
    thread: threading.Thread | None = None

    def took(self, since: float | None = None) -> float:
        assert self.ended is not None, f"{self.what} has not ended"
        return self.ended - (self.started if since is None else since)

    def errors(self) -> list[Any]:
        return [f for f in self.frames if isinstance(f, dict) and "error" in f]

    def content(self) -> str:
        return "".join(f["choices"][0]["delta"].get("content") or "" for f in self.frames
                       if isinstance(f, dict) and f.get("choices"))

    def finish_reasons(self) -> list[str]:
        return [f["choices"][0]["finish_reason"] for f in self.frames
                if isinstance(f, dict) and f.get("choices") and f["choices"][0]["finish_reason"]]

    def describe(self) -> str:
        return (f"{self.what}: status {self.status}, failure {self.failure!r}, "
                f"body {self.body!r}, frames {self.frames[-3:]!r}")


def _run_request(url: str, outcome: Outcome, body: dict[str, Any]) -> None:
    try:
        with httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            if not outcome.stream:
                r = http.post("/v1/chat/completions", json=body)
                outcome.status, outcome.body = r.status_code, r.json()
                return
            with http.stream("POST", "/v1/chat/completions", json=body) as r:
                outcome.status = r.status_code
                if r.status_code != 200:
                    outcome.body = json.loads(r.read())
                    return
                for line in r.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line[6:]
                    outcome.frames.append(data if data == "[DONE]" else json.loads(data))
                    if outcome.content():
                        outcome.first_token.set()
    except BaseException as exc:  # reported by the assertions on the outcome
        outcome.failure = exc
    finally:
        outcome.ended = time.monotonic()
        outcome.first_token.set()


def launch(url: str, what: str, stream: bool, max_tokens: int, **extra: Any) -> Outcome:
    outcome = Outcome(what, stream)
    outcome.thread = threading.Thread(target=_run_request, name=what, daemon=True,
                                      args=(url, outcome, chat(stream, max_tokens, **extra)))
    outcome.thread.start()
    return outcome


def finish(outcomes: list[Outcome], within: float) -> None:
    deadline = time.monotonic() + within
    for o in outcomes:
        assert o.thread is not None
        o.thread.join(max(0.0, deadline - time.monotonic()))
    hung = [o.what for o in outcomes if o.thread is not None and o.thread.is_alive()]
    assert not hung, f"still running after {within:.0f}s: {hung}"


def assert_whole_answer(o: Outcome, max_tokens: int) -> None:
    """A 200 with every token, no error: what a healthy worker sends."""
    assert o.failure is None and o.status == 200, o.describe()
    if o.stream:
        assert o.errors() == [] and o.frames[-1] == "[DONE]", o.describe()
        assert o.finish_reasons() == ["length"], o.describe()
        assert len(o.content().split()) == max_tokens, o.describe()
    else:
        assert o.body["choices"][0]["finish_reason"] == "length", o.describe()
        assert o.body["usage"]["completion_tokens"] == max_tokens, o.describe()


def poll(check: Callable[[], Any], within: float, what: str) -> float:
    """Until `check()` is truthy (bounded); returns when it first was (monotonic)."""
    deadline = time.monotonic() + within
    while True:
        if check():
            return time.monotonic()
        assert time.monotonic() < deadline, f"{what}: not within {within:.1f}s"
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# fixtures


@dataclass
class Cluster:
    queen: Daemon
    machine: Machine
    hive: subprocess.Popen[bytes]
    http: httpx.Client

    def hives_up(self) -> list[str]:
        up: list[str] = self.http.get("/health").json()["hives_up"]
        return up

    def workers(self) -> dict[str, dict[str, Any]]:
        return {w["id"]: w for w in self.http.get("/v1/workers").json()}

    def states(self, hive_id: str) -> list[str]:
        return [w["state"] for w in self.workers().values() if w["hive_id"] == hive_id]

    def next_route(self) -> str:
        """The worker the next request would be routed to (the scheduler's dry run)."""
        r = self.http.post("/v1/scheduler/explain", json={"model": "rbee-fake"})
        assert r.status_code == 200, r.text
        worker: str = r.json()["route"]["worker"]
        return worker

    def spawn(self, hive_id: str) -> str:
        job = self.http.post("/v1/jobs", json={"operation": "worker_spawn",
                                               "model": "rbee-fake", "hive_id": hive_id})
        assert job.status_code in (200, 201, 202), job.text
        events = self.http.get(f"/v1/jobs/{job.json()['job_id']}/stream", timeout=SPAWN).text
        for block in events.split("\n\n"):
            if "event: result" in block:
                data = next(ln[6:] for ln in block.splitlines() if ln.startswith("data: "))
                worker_id: str = json.loads(data)["worker"]["id"]
                return worker_id
        raise AssertionError(f"worker_spawn on {hive_id} failed:\n{events[-2000:]}")


def _start_remote_hive(m: Machine, creds: HiveCredentials, env: dict[str, str],
                       root: Path) -> subprocess.Popen[bytes]:
    """What `rbee hive install` leaves running on a machine: a hive bound to the machine's
    address, reporting to the queen at the address the machine reaches it by."""
    queen_url = f"http://{m.host_address}:{env['RBEE_QUEEN_PORT']}"
    with (root / f"{HIVE}.log").open("ab") as log:
        return subprocess.Popen(
            ["ip", "netns", "exec", m.netns, sys.executable, "-m", "rbee.hive",
             "--hive-id", HIVE, "--host", "0.0.0.0", "--port", "7835",
             "--advertise-host", m.address, "--queen-url", queen_url,
             "--telemetry-interval", str(INTERVAL), "--home", str(root / HIVE)],
            env={**env, "RBEE_HIVE_TOKEN": creds.token,
                 "RBEE_HIVE_WORKER_TOKEN": creds.worker_token},
            stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    # Not under pytest's base directory, which a new pytest session resets to mode 700.
    homes = Path(tempfile.mkdtemp(prefix="rbee-partition-"))
    env = rbee_env(tmp_path, RBEE_QUEEN_HOST="0.0.0.0", RBEE_QUEEN_API_TOKEN=TOKEN,
                   RBEE_API_TOKEN=TOKEN, RBEE_QUEEN_TELEMETRY_INTERVAL=str(INTERVAL),
                   RBEE_QUEEN_LIVENESS_INTERVAL="0.25",
                   RBEE_QUEEN_LIVENESS_TIMEOUT=str(LIVENESS),
                   # Longer than anything below: a request cut in bounds was cut by liveness.
                   RBEE_QUEEN_WORKER_IDLE_TIMEOUT="30",
                   RBEE_WORKER_FAKE_TOKENS_PER_SECOND=str(RATE))
    creds = HiveCredentials.new()
    db = connect(Path(env["RBEE_QUEEN_STATE_DIR"]) / "queen.db")
    HiveStore(db).save(HiveRow(HIVE, creds.token, creds.worker_token, {}), time.time())
    db.close()
    try:
        with machines(1, homes) as (m,):
            queen = start_queen(env)
            hive: subprocess.Popen[bytes] | None = None
            http = httpx.Client(base_url=queen.url, timeout=30,
                                headers={"Authorization": f"Bearer {TOKEN}"})
            try:
                hive = _start_remote_hive(m, creds, env, tmp_path)
                c = Cluster(queen, m, hive, http)
                poll(lambda: sorted(c.hives_up()) == [LOCAL, HIVE], 30, "hives registered")
                yield c
            finally:
                # (A partition left in force goes with the namespace; heal it first anyway, so
                # that the hive stops as it would on a healthy network.)
                with contextlib.suppress(RuntimeError):
                    if m.partitioned():
                        m.heal()
                http.close()
                if hive is not None and hive.poll() is None:
                    hive.terminate()
                    try:
                        hive.wait(20)
                    except subprocess.TimeoutExpired:
                        hive.kill()
                        hive.wait(5)
                queen.stop()
                leftovers = queen.leftovers()
                assert not leftovers, f"orphan processes after queen stop: {leftovers}"
    finally:
        shutil.rmtree(homes, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# the test


def test_a_partitioned_machine_holds_up_nothing(cluster: Cluster) -> None:
    c, m, url = cluster, cluster.machine, cluster.queen.url
    timed = Timed()

    # One worker locally, two on m1; all three start at once.
    with ThreadPoolExecutor(3) as pool:
        futures = {pool.submit(c.spawn, h): h for h in (LOCAL, HIVE, HIVE)}
        hive_of = {f.result(timeout=SPAWN + 10): h for f, h in futures.items()}
    spawned = {h: [w for w, x in hive_of.items() if x == h] for h in (LOCAL, HIVE)}
    assert {w: x["state"] for w, x in c.workers().items()} == dict.fromkeys(hive_of, "ready")
    assert all(c.workers()[w]["url"].startswith(f"http://{m.address}:") for w in spawned[HIVE])
    # Quiet: telemetry has reported every worker idle, so routing goes by in-flight and id.
    time.sleep(2 * INTERVAL)

    # Three long requests in flight, one per worker (least-loaded routing): on m1 a stream
    # and a non-streamed one, locally a stream. The scheduler's dry run says where each goes.
    inflight: dict[str, Outcome] = {}
    plain_sent = False
    for _ in range(3):
        worker = c.next_route()
        assert worker in hive_of and worker not in inflight, (worker, list(inflight))
        stream = hive_of[worker] == LOCAL or plain_sent  # the first one on m1 is not streamed
        plain_sent = plain_sent or not stream
        o = inflight[worker] = launch(url, f"{hive_of[worker]} {'stream' if stream else 'plain'}"
                                      f" in flight", stream, LONG)
        if stream:
            assert o.first_token.wait(10) and o.content(), o.describe()
        else:  # routed: the dry run now picks another (idle) worker
            poll(lambda w=worker: c.next_route() != w, 5, f"{o.what} routed")
    on_m1 = sorted((o for w, o in inflight.items() if hive_of[w] == HIVE), key=lambda o: o.stream)
    m1_plain, m1_stream = on_m1
    local_stream = next(o for w, o in inflight.items() if hive_of[w] == LOCAL)
    assert not m1_plain.stream and m1_stream.stream and local_stream.stream
    assert all(o.ended is None for o in inflight.values()), "in flight ended too soon"
    assert c.http.get("/v1/scheduler").json()["queues"]["rbee-fake"] == {"active": 3,
                                                                        "queued": 0}

    # -- partition m1 -------------------------------------------------------------------
    m.partition()
    cut = time.monotonic()
    during = [launch(url, f"during #{i} {'stream' if i % 2 else 'plain'}", bool(i % 2), SHORT)
              for i in range(DURING)]
    job = c.http.post("/v1/jobs", json={"operation": "infer", "model": "rbee-fake",
                                        "prompt": "hello", "max_tokens": SHORT})
    assert job.status_code in (200, 201, 202), job.text
    job_id = job.json()["job_id"]

    # m1 is reported down within 3 missed intervals; its workers are `unknown`.
    down = poll(lambda: c.hives_up() == [LOCAL], 3 * INTERVAL + SLACK, "m1 reported down")
    timed.took("m1 reported down", down - cut, 3 * INTERVAL + SLACK)
    states = {w: x["state"] for w, x in c.workers().items()}
    assert states == {**dict.fromkeys(spawned[HIVE], "unknown"), spawned[LOCAL][0]: "ready"}
    health = c.http.get("/health").json()
    assert health["status"] == "ok" and health["hives_up"] == [LOCAL], health

    # The m1 stream ends within the liveness timeout: an error frame, then [DONE].
    finish([m1_stream], LIVENESS + SLACK)
    timed.took(m1_stream.what, m1_stream.took(since=cut), LIVENESS + SLACK)
    assert m1_stream.failure is None and m1_stream.status == 200, m1_stream.describe()
    assert m1_stream.frames[-1] == "[DONE]", m1_stream.describe()
    assert [e["error"]["code"] for e in m1_stream.errors()] == ["worker_unavailable"], \
        m1_stream.describe()
    assert "unresponsive" in m1_stream.errors()[0]["error"]["message"], m1_stream.describe()

    # The m1 non-streamed request sent nothing yet: it fails over to the local worker, which
    # first finishes the local stream (one generation at a time), then answers it whole.
    failover_bound = LIVENESS + SLACK + 2 * LONG_S
    finish([m1_plain, local_stream], failover_bound)
    timed.took(m1_plain.what, m1_plain.took(since=cut), failover_bound)
    assert_whole_answer(m1_plain, LONG)
    timed.took(local_stream.what, local_stream.took(), LONG_S + SLACK)  # untouched
    assert_whole_answer(local_stream, LONG)

    # Requests made during the partition are all served, by the local hive (nothing from m1
    # gets through), none refused: they waited at most for the two long answers ahead.
    during_bound = failover_bound + (DURING + 1) * (SHORT_S + 0.5)
    finish(during, during_bound)
    for o in during:
        timed.took(o.what, o.took(since=cut), during_bound)
    refused = [o.describe() for o in during if o.status == 429]
    assert refused == [], "requests refused during the partition"
    for o in during:
        assert_whole_answer(o, SHORT)
    ended = c.http.get(f"/v1/jobs/{job_id}/stream", timeout=during_bound).text
    assert "event: done" in ended and "event: error" not in ended, ended[-2000:]
    assert m.partitioned()  # all of the above happened while m1 was cut off
    assert c.hives_up() == [LOCAL]

    # -- heal ---------------------------------------------------------------------------
    m.heal()
    healed = time.monotonic()
    up = poll(lambda: sorted(c.hives_up()) == [LOCAL, HIVE], BACK_UP, "m1 up after the heal")
    timed.took("m1 up after the heal", up - healed, BACK_UP)
    # Its workers answer probes again: ready, and routed to.
    poll(lambda: c.states(HIVE) == ["ready", "ready"], LIVENESS + SLACK,
         "m1's workers ready again")
    back = [launch(url, f"pinned to {HIVE} after the heal #{i}", bool(i), SHORT, hive_id=HIVE)
            for i in range(2)]
    finish(back, SHORT_S + SLACK)
    for o in back:
        timed.took(o.what, o.took(), SHORT_S + SLACK)
        assert_whole_answer(o, SHORT)

    assert_invariants(url, timed, [job_id], token=TOKEN)
