"""Tenants, users and keys end to end (issue 13): a real queen with a bootstrap token, the
`rbee tenant|user|key` commands, and the official SDK with the key they made."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from tests.support.daemons import rbee_env, run_cli, start_queen

pytestmark = pytest.mark.e2e
BOOT = "bootstrap-s3cret-for-the-identity-test"


def test_an_admin_makes_a_key_a_user_calls_with_it_and_revocation_stops_it(
        tmp_path: Path) -> None:
    env = rbee_env(tmp_path, RBEE_QUEEN_API_TOKEN=BOOT)
    admin = {**env, "RBEE_API_TOKEN": BOOT}
    queen = start_queen(env)
    try:
        assert run_cli(admin, "tenant", "create", "acme", "--label", "tier=gold").returncode == 0
        bad = run_cli(admin, "tenant", "create", "acme")
        assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "exists" in bad.stderr
        made = run_cli(admin, "--json", "user", "create", "acme", "ann")
        assert made.returncode == 0, made.stderr
        user_id = json.loads(made.stdout)[0]["id"]
        created = run_cli(admin, "key", "create", user_id, "-m", "rbee-fake", "--name", "app")
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip()  # alone on stdout: KEY=$(rbee key create ...)
        assert key.startswith("rbee-") and "shown this once" in created.stderr

        client = openai.OpenAI(base_url=f"{queen.url}/v1", api_key=key, max_retries=0,
                               timeout=60)
        answer = client.chat.completions.create(
            model="rbee-fake", messages=[{"role": "user", "content": "hello"}], max_tokens=3)
        assert answer.choices[0].message.content
        with pytest.raises(openai.PermissionDeniedError) as denied:
            client.embeddings.create(model="rbee-fake-embedding", input="x")
        assert denied.value.body["param"] == "model"  # type: ignore[index]

        as_user = {**env, "RBEE_API_TOKEN": key}
        refused = run_cli(as_user, "worker", "list")
        assert refused.returncode == 1 and "operator" in refused.stderr
        listed = run_cli(admin, "key", "list", "--tenant", "acme")
        assert listed.returncode == 0 and key not in listed.stdout

        key_id = key.split("-")[1]
        assert run_cli(admin, "key", "revoke", key_id).returncode == 0
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
        gone = run_cli(as_user, "model", "list")
        assert gone.returncode == 1 and "invalid API key" in gone.stderr
        assert key not in queen.log.read_text() and BOOT not in queen.log.read_text()
    finally:
        queen.stop()
    assert not queen.leftovers()
