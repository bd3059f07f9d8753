"""Quotas and usage end to end (issue 13): a real queen daemon with its hive and a fake-engine
worker, `rbee quota` and `rbee usage` from the command line, the official SDK refused with a
429 naming the limit, and usage that survives the queen's restart."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import openai
import pytest

from tests.support.audio import tone_wav
from tests.support.daemons import rbee_env, run_cli, start_queen

pytestmark = pytest.mark.e2e
BOOT = "bootstrap-s3cret-for-the-quota-test"


def test_an_admin_sets_limits_the_sdk_meets_them_and_usage_survives_a_restart(
        tmp_path: Path) -> None:
    env = rbee_env(tmp_path, RBEE_QUEEN_API_TOKEN=BOOT)
    admin = {**env, "RBEE_API_TOKEN": BOOT}
    queen = start_queen(env)
    try:
        assert run_cli(admin, "tenant", "create", "acme").returncode == 0
        user_id = json.loads(run_cli(admin, "--json", "user", "create", "acme",
                                     "ann").stdout)[0]["id"]
        key = run_cli(admin, "key", "create", user_id).stdout.strip()
        key_id = key.split("-")[1]
        as_user = {**env, "RBEE_API_TOKEN": key}

        made = run_cli(admin, "--json", "quota", "set", "--key", key_id, "--rpm", "2",
                       "--tpd", "5000")
        assert made.returncode == 0, made.stderr
        assert json.loads(made.stdout)[0]["requests_per_minute"] == 2
        refused = run_cli(as_user, "quota", "set", "--key", key_id, "--rpm", "1000")
        assert refused.returncode == 1 and "admin" in refused.stderr
        both = run_cli(admin, "quota", "set", "--rpm", "3")
        assert both.returncode == 1 and "--tenant or --key" in both.stderr

        client = openai.OpenAI(base_url=f"{queen.url}/v1", api_key=key, max_retries=0,
                               timeout=60)
        messages: list[openai.types.chat.ChatCompletionMessageParam] = [
            {"role": "user", "content": "one two three"}]
        raw = client.chat.completions.with_raw_response.create(
            model="rbee-fake", messages=messages, max_tokens=4)
        assert raw.headers["x-ratelimit-remaining-requests"] == "1"
        chunks = list(client.chat.completions.create(model="rbee-fake", messages=messages,
                                                     max_tokens=5, stream=True))
        assert all(c.usage is None for c in chunks)  # not asked for: not sent
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model="rbee-fake", messages=messages, max_tokens=1)
        assert int(limited.value.response.headers["retry-after"]) >= 1
        assert "2 per minute" in limited.value.message

        rows = json.loads(run_cli(as_user, "--json", "usage").stdout)
        assert [(r["requests"], r["prompt_tokens"], r["completion_tokens"]) for r in rows] \
            == [(2, 6, 9)]
        shown = run_cli(admin, "quota", "show", "--key", key_id)
        assert shown.returncode == 0 and "5000" in shown.stdout

        # the other kinds, with a second key of the tenant (no limits of its own)
        other = run_cli(admin, "key", "create", user_id).stdout.strip()
        sdk = openai.OpenAI(base_url=f"{queen.url}/v1", api_key=other, max_retries=0,
                            timeout=60)
        vectors = sdk.embeddings.create(model="rbee-fake-embedding", input="a b c")
        spoken = sdk.audio.speech.create(model="rbee-fake-speech", voice="alloy",
                                         input="twenty characters!!!", response_format="wav")
        assert spoken.content
        heard = sdk.audio.transcriptions.create(model="rbee-fake-transcription",
                                                file=("a.wav", tone_wav([0.5, 0.5, 0.0])))
        assert heard.text
        kinds = {r["model"]: r for r in json.loads(run_cli(
            admin, "--json", "usage", "--key", other.split("-")[1]).stdout)}
        assert kinds["rbee-fake-embedding"]["prompt_tokens"] == vectors.usage.prompt_tokens
        assert kinds["rbee-fake-speech"]["audio_seconds"] == 2.0  # 20 characters at 10/s
        assert kinds["rbee-fake-transcription"]["audio_seconds"] == 3.0  # the file's length
        assert all(r["requests"] == 1 for r in kinds.values())
    finally:
        queen.stop()
    assert not queen.leftovers()

    queen = start_queen(env)  # the same state: limits and usage are still there
    try:
        exported = run_cli(admin, "usage", "--csv", "--tenant", "acme")
        assert exported.returncode == 0, exported.stderr
        table = list(csv.DictReader(io.StringIO(exported.stdout)))
        assert len(table) == 4  # the chat key's row, and the other key's three models
        assert [(t["requests"], t["completion_tokens"]) for t in table
                if t["key_id"] == key_id] == [("2", "9")]
        shown = json.loads(run_cli(admin, "--json", "quota", "show").stdout)
        assert [(s["scope"], s["id"], s["tokens_per_day"]) for s in shown] == [
            ("key", key_id, 5000)]
        bad = run_cli(admin, "usage", "--since", "last-week")
        assert bad.returncode == 1 and "YYYY-MM-DD" in bad.stderr
    finally:
        queen.stop()
    assert not queen.leftovers()
