"""The rbee CLI against a real queen (fake engine): every command, human and --json."""

from __future__ import annotations

import json

import pytest

from tests.support.daemons import Daemon, run_cli

pytestmark = pytest.mark.e2e


def ok(env: dict[str, str], *args: str) -> str:
    r = run_cli(env, *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_worker_model_and_job_commands(queen: Daemon) -> None:
    env = queen.env
    worker = json.loads(ok(env, "--json", "worker", "spawn", "-m", "rbee-fake"))
    assert worker["state"] == "ready" and worker["model"] == "rbee-fake"
    listed = json.loads(ok(env, "--json", "worker", "list"))
    assert [w["id"] for w in listed] == [worker["id"]]
    assert worker["id"][:10] in ok(env, "worker", "list")
    models = json.loads(ok(env, "--json", "model", "list"))
    fake = next(m for m in models if m["id"] == "rbee-fake")
    assert fake["workers"] == 1
    assert "smollm2-135m-instruct" in ok(env, "model", "list")

    answer = json.loads(ok(env, "--json", "infer", "hello", "-m", "rbee-fake",
                           "--max-tokens", "4", "--worker", worker["id"]))
    assert answer["worker_id"] == worker["id"] and len(answer["text"].split()) == 4
    human = run_cli(env, "infer", "hello", "-m", "rbee-fake", "--max-tokens", "4", "--stats")
    assert human.returncode == 0 and len(human.stdout.split()) == 4
    assert "time to first token" in human.stderr

    jobs = json.loads(ok(env, "--json", "jobs", "list", "--limit", "50"))
    infer_job = next(j for j in jobs if j["operation"] == "infer")
    shown = json.loads(ok(env, "--json", "jobs", "show", infer_job["job_id"]))
    assert shown["state"] == "done" and shown["result"]["text"]
    assert infer_job["job_id"] in ok(env, "jobs", "show", infer_job["job_id"])
    lines = ok(env, "--json", "jobs", "follow", infer_job["job_id"]).splitlines()
    events = [json.loads(line) for line in lines]
    assert events[-1]["event"] == "done" and [e["id"] for e in events] == list(range(len(events)))
    followed = ok(env, "jobs", "follow", infer_job["job_id"])
    assert followed.strip() == shown["result"]["text"].strip()
    cancelled = json.loads(ok(env, "--json", "jobs", "cancel", infer_job["job_id"]))
    assert cancelled["state"] == "done"  # finished jobs stay as they ended

    stopped = json.loads(ok(env, "--json", "worker", "stop", worker["id"]))
    assert stopped["state"] == "stopped"
    assert json.loads(ok(env, "--json", "worker", "list")) == []
    status = json.loads(ok(env, "--json", "queen", "status"))
    assert status["running"] and status["hives"][0]["id"] == "localhost"
    assert "localhost" in ok(env, "queen", "status")


def test_pinned_to_a_missing_gpu_fails_with_a_reason(queen: Daemon) -> None:
    r = run_cli(queen.env, "infer", "hi", "-m", "rbee-fake", "--device", "cuda:0")
    assert r.returncode == 1
    assert "no hive can host rbee-fake" in r.stderr and "other device requested" in r.stderr


def test_unknown_model_from_the_cli(queen: Daemon) -> None:
    r = run_cli(queen.env, "infer", "hi", "-m", "gpt-4")
    assert r.returncode == 1 and "model 'gpt-4' not found" in r.stderr
    r = run_cli(queen.env, "--json", "infer", "hi", "-m", "gpt-4")
    assert r.returncode == 1


def test_version_and_help(queen: Daemon) -> None:
    assert ok(queen.env, "--version").startswith("rbee ")
    helptext = ok(queen.env, "--help")
    for command in ("infer", "queen", "worker", "model", "jobs"):
        assert command in helptext
