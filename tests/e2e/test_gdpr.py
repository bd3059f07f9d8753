"""GDPR end to end (issue 13's erasure test): a real queen with a bootstrap token, its hive
and a fake-engine worker; the official OpenAI SDK with a user's key; `rbee gdpr …` for
consent, export, erasure and its receipt. After the erasure the export has nothing about
the person, the database file holds none of their content, and `rbee audit verify` passes."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import openai
import pytest

from tests.support.daemons import rbee_env, run_cli, start_queen

pytestmark = pytest.mark.e2e
BOOT = "bootstrap-s3cret-for-the-gdpr-test"
SECRET = "the patient's blood type is AB negative"


def test_consent_export_erasure_and_receipt_through_the_cli(tmp_path: Path) -> None:
    env = rbee_env(tmp_path, RBEE_QUEEN_API_TOKEN=BOOT)
    admin = {**env, "RBEE_API_TOKEN": BOOT}
    queen = start_queen(env)
    try:
        assert run_cli(admin, "tenant", "create", "clinic", "--requires-consent").returncode == 0
        assert "required" in run_cli(admin, "tenant", "list").stdout
        made = run_cli(admin, "--json", "user", "create", "clinic", "ann",
                       "--email", "ann@clinic.example")
        assert made.returncode == 0, made.stderr
        ann = json.loads(made.stdout)[0]["id"]
        key = run_cli(admin, "key", "create", ann).stdout.strip()
        other = json.loads(run_cli(admin, "--json", "user", "create", "clinic",
                                   "bob").stdout)[0]["id"]
        bob_key = run_cli(admin, "key", "create", other).stdout.strip()
        as_ann, as_bob = {**env, "RBEE_API_TOKEN": key}, {**env, "RBEE_API_TOKEN": bob_key}

        client = openai.OpenAI(base_url=f"{queen.url}/v1", api_key=key, max_retries=0,
                               timeout=60)
        with pytest.raises(openai.PermissionDeniedError) as refused:
            client.chat.completions.create(model="rbee-fake", max_tokens=3,
                                           messages=[{"role": "user", "content": SECRET}])
        assert refused.value.code == "consent_required"
        given = run_cli(as_ann, "gdpr", "consent", ann, "--purpose", "processing", "--grant")
        assert given.returncode == 0, given.stderr
        assert client.responses.create(model="rbee-fake", input=SECRET,
                                       max_output_tokens=3).output_text

        out = tmp_path / "ann.json"
        exported = run_cli(admin, "gdpr", "export", ann, "-o", str(out))
        assert exported.returncode == 0, exported.stderr
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        data = json.loads(out.read_text())
        assert data["user"]["email"] == "ann@clinic.example" and SECRET in out.read_text()
        assert [c["purpose"] for c in data["consents"]] == ["processing"]
        assert key not in out.read_text()  # key metadata only
        nosy = run_cli(as_bob, "gdpr", "export", ann)
        assert nosy.returncode == 1 and "no subject" in nosy.stderr and SECRET not in nosy.stdout
        unknown = run_cli(admin, "gdpr", "delete", "usr_nobody")
        assert unknown.returncode == 1 and "no subject 'usr_nobody'" in unknown.stderr

        erased = run_cli(admin, "gdpr", "delete", ann)
        assert erased.returncode == 0, erased.stderr
        receipt = json.loads(erased.stdout)
        assert receipt["subject"] == ann and receipt["deleted"]["responses"] == 1
        kept = tmp_path / "receipt.json"
        kept.write_text(erased.stdout)
        assert run_cli(admin, "gdpr", "verify-receipt", str(kept)).returncode == 0
        kept.write_text(json.dumps({**receipt, "erased_at": receipt["erased_at"] + 1}))
        forged = run_cli(admin, "gdpr", "verify-receipt", str(kept))
        assert forged.returncode == 2 and "NOT valid" in forged.stderr
        kept.write_text("{not a receipt")
        garbage = run_cli(admin, "gdpr", "verify-receipt", str(kept))
        assert garbage.returncode == 1 and "not a readable JSON receipt" in garbage.stderr

        with pytest.raises(openai.AuthenticationError):
            client.models.list()
        after = run_cli(admin, "gdpr", "export", ann)
        assert after.returncode == 1 and "no subject" in after.stderr
        verified = run_cli(admin, "audit", "verify")
        assert verified.returncode == 0 and "audit chain intact" in verified.stdout
        # Bob never consented: refused until an admin lifts the tenant's rule.
        bob = openai.OpenAI(base_url=f"{queen.url}/v1", api_key=bob_key, max_retries=0,
                            timeout=60)
        with pytest.raises(openai.PermissionDeniedError):
            bob.embeddings.create(model="rbee-fake-embedding", input="x")
        lifted = run_cli(admin, "tenant", "set", "clinic", "--no-requires-consent")
        assert lifted.returncode == 0, lifted.stderr
        assert bob.embeddings.create(model="rbee-fake-embedding", input="x").data
    finally:
        queen.stop()
    assert not queen.leftovers()
    held = b"".join(p.read_bytes() for p in (tmp_path / "state").glob("queen.db*"))
    for needle in (SECRET, ann, "ann@clinic.example"):
        assert needle.encode() not in held, needle
    assert other.encode() in held  # bob is still there: the check can see ids
