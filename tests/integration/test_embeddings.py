"""/v1/embeddings through the queen with the official client, against real daemons (the fake
embedding engine): float and the SDK's default base64, kinds, and bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.daemons import Daemon, rbee_env, run_cli, running_queen
from tests.support.invariants import Timed, assert_invariants

pytestmark = pytest.mark.e2e
MODEL = "rbee-fake-embedding"


@pytest.fixture
def client(shared_queen: Daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{shared_queen.url}/v1", api_key="unused", max_retries=0)


def test_float_and_default_base64_give_the_same_unit_vectors(client: openai.OpenAI) -> None:
    texts = ["the cat sat", "a kitten sat", "the cat sat"]
    floats = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    default = client.embeddings.create(model=MODEL, input=texts)  # the SDK asks for base64
    assert [d.index for d in floats.data] == [0, 1, 2]
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    first = floats.data[0].embedding
    assert first == floats.data[2].embedding
    assert math.isclose(sum(v * v for v in first), 1.0, rel_tol=1e-5)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 5 + 5 + 5
    assert floats.model == MODEL


def test_token_ids_and_one_string(client: openai.OpenAI) -> None:
    one = client.embeddings.create(model=MODEL, input="hello")
    ids = client.embeddings.create(model=MODEL, input=[[5, 6], [7]])
    assert len(one.data) == 1 and len(ids.data) == 2
    assert ids.usage.prompt_tokens == 4 + 3


def test_models_say_what_they_do(shared_queen: Daemon) -> None:
    cards = {m["id"]: m for m in httpx.get(f"{shared_queen.url}/v1/models").json()["data"]}
    assert cards[MODEL]["kind"] == "embedding"
    assert cards["rbee-fake"]["kind"] == "chat"
    assert cards["all-minilm-l6-v2"]["kind"] == "embedding"


def test_a_request_of_the_wrong_kind_says_what_the_model_does(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as chat:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert chat.value.code == "wrong_model_kind"
    assert "embedding model" in chat.value.message
    with pytest.raises(openai.BadRequestError) as responses:
        client.responses.create(model=MODEL, input="x")
    assert responses.value.code == "wrong_model_kind"
    with pytest.raises(openai.BadRequestError) as completion:
        client.completions.create(model=MODEL, prompt="x")
    assert completion.value.code == "wrong_model_kind"
    with pytest.raises(openai.BadRequestError) as emb:
        client.embeddings.create(model="rbee-fake", input="x")
    assert emb.value.code == "wrong_model_kind" and "chat model" in emb.value.message


@pytest.mark.parametrize(("body", "param"), [
    ({"input": ""}, "input"),
    ({"input": []}, "input"),
    ({"input": ["a", ""]}, "input"),
    ({"input": [1, "a"]}, "input"),
    ({"input": {"$ne": 1}}, "input"),
    ({"input": "x", "dimensions": 3}, "dimensions"),
    ({"input": " ".join(["w"] * 100)}, "input"),  # over the fake model's 64-token window
    ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "x", "model": "a\x1b[31mb"}, "model"),
])
def test_bad_input_is_a_400_naming_its_param(shared_queen: Daemon, body: dict[str, object],
                                             param: str) -> None:
    r = httpx.post(f"{shared_queen.url}/v1/embeddings", json={"model": MODEL, **body},
                   timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_hostile_bodies(shared_queen: Daemon) -> None:
    url = f"{shared_queen.url}/v1/embeddings"
    deep = "[" * 5000 + "]" * 5000
    r = httpx.post(url, content=f'{{"model": "{MODEL}", "input": {deep}}}',
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400
    r = httpx.post(url, content=b'{"model": "x", "input": "a"}',
                   headers={"content-type": "text/plain"}, timeout=30)
    assert r.status_code == 415
    too_many = httpx.post(url, json={"model": MODEL, "input": ["x"] * 2049}, timeout=30)
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "input"
    huge = httpx.post(url, json={"model": MODEL, "input": "x" * (9 * 1024 * 1024)}, timeout=30)
    assert huge.status_code == 413


def test_the_embed_job_and_cli(shared_queen: Daemon) -> None:
    env = shared_queen.env
    r = run_cli(env, "embed", "the cat", "a kitten", "-m", MODEL, "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["state"] == "done" and result["dimensions"] == 32
    assert len(result["data"]) == 2 and len(result["data"][0]["embedding"]) == 32
    direct = openai.OpenAI(base_url=f"{shared_queen.url}/v1", api_key="unused",
                           max_retries=0).embeddings.create(model=MODEL, input="the cat")
    assert result["data"][0]["embedding"] == direct.data[0].embedding
    human = run_cli(env, "embed", "the cat", "-m", MODEL)
    assert human.returncode == 0, human.stderr
    assert "32 dimensions" in human.stdout and "the cat" in human.stdout
    listed = json.loads(run_cli(env, "--json", "worker", "list").stdout)
    assert {w["model"]: w["kind"] for w in listed}[MODEL] == "embedding"
    wrong = run_cli(env, "embed", "x", "-m", "rbee-fake")
    assert wrong.returncode != 0 and "chat model" in wrong.stderr
    bad = httpx.post(f"{shared_queen.url}/v1/jobs", json={"operation": "embed", "input": []},
                     timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"
    chat_job = httpx.post(f"{shared_queen.url}/v1/jobs", json={
        "operation": "infer", "model": MODEL, "prompt": "x"}, timeout=30)
    assert chat_job.status_code in (200, 201, 202)  # accepted, then fails saying why


@pytest.fixture
def quick_queen(tmp_path: Path) -> Iterator[Daemon]:
    """Liveness tuned to a second, as in test_worker_faults.py."""
    env = rbee_env(tmp_path, RBEE_QUEEN_LIVENESS_INTERVAL="0.2",
                   RBEE_QUEEN_LIVENESS_TIMEOUT="1.0", RBEE_QUEEN_WORKER_IDLE_TIMEOUT="30")
    yield from running_queen(env)


@pytest.mark.parametrize("how", [signal.SIGSTOP, signal.SIGKILL])
def test_a_hung_or_dead_embedding_worker_is_failed_over(quick_queen: Daemon,
                                                        how: signal.Signals) -> None:
    timed = Timed()
    body = {"model": MODEL, "input": ["a", "b"]}
    with httpx.Client(base_url=quick_queen.url, timeout=60) as http:
        assert http.post("/v1/embeddings", json=body).status_code == 200
        [worker] = [w for w in http.get("/v1/workers").json() if w["state"] == "ready"]
        os.kill(int(worker["pid"]), how)
        try:
            t0 = time.monotonic()
            r = http.post("/v1/embeddings", json=body)
            timed.record(f"embeddings after {how.name}", t0, 1.0 + 20.0)
            assert r.status_code == 200, r.text
            assert len(r.json()["data"]) == 2
        finally:
            if how is signal.SIGSTOP:
                os.kill(int(worker["pid"]), signal.SIGCONT)
    assert_invariants(quick_queen.url, timed)
