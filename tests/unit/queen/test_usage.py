"""Usage per tenant, key, model and UTC day (issue 13): exact from the engine's counts, kept
in SQLite (the day and month windows restart from it), read as JSON or CSV; a user key sees
its own tenant's only."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tests.unit.queen.quota_rig import BOOT, MODEL, rig


async def test_usage_filters_formats_and_scopes(tmp_path: Path) -> None:
    async with rig(tmp_path) as queen:
        acme = await queen.key("acme")
        acme2 = await queen.key("acme")
        other = await queen.key("beta")
        for key, tokens in ((acme, 3), (acme2, 4), (other, 5)):
            assert (await queen.chat(key["key"], max_tokens=tokens)).status_code == 200
        queen.advance(86_400)  # the next UTC day
        assert (await queen.chat(acme["key"], max_tokens=6)).status_code == 200

        every = (await queen.as_(BOOT, "GET", "/v1/usage")).json()["data"]
        assert sorted((r["day"], r["completion_tokens"]) for r in every) == sorted(
            [("2027-01-15", 3), ("2027-01-15", 4), ("2027-01-15", 5), ("2027-01-16", 6)])
        mine = (await queen.as_(acme["key"], "GET", "/v1/usage")).json()["data"]
        assert {r["tenant_id"] for r in mine} == {acme["tenant_id"]} and len(mine) == 3
        one_key = await queen.as_(BOOT, "GET", "/v1/usage",
                                  params={"key": acme["id"], "since": "2027-01-16"})
        assert [r["completion_tokens"] for r in one_key.json()["data"]] == [6]
        by_name = await queen.as_(BOOT, "GET", "/v1/usage",
                                  params={"tenant": "acme", "until": "2027-01-15"})
        assert sorted(r["completion_tokens"] for r in by_name.json()["data"]) == [3, 4]
        model = await queen.as_(BOOT, "GET", "/v1/usage", params={"model": "nothing-else"})
        assert model.json()["data"] == []

        as_csv = await queen.as_(BOOT, "GET", "/v1/usage", headers={"Accept": "text/csv"})
        assert as_csv.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(as_csv.text)))
        assert len(rows) == 4 and rows[0]["model"] == MODEL
        assert {r["completion_tokens"] for r in rows} == {"3", "4", "5", "6"}
        assert as_csv.text == (await queen.as_(BOOT, "GET", "/v1/usage?format=csv")).text

        # a user key asking for another tenant's: 403 naming tenant; its own is fine
        r = await queen.as_(acme["key"], "GET", "/v1/usage", params={"tenant": "beta"})
        assert r.status_code == 403 and r.json()["error"]["param"] == "tenant"
        r = await queen.as_(acme["key"], "GET", "/v1/usage", params={"tenant": "acme"})
        assert r.status_code == 200 and len(r.json()["data"]) == 3


@pytest.mark.parametrize(("query", "param"), [
    ({"since": "yesterday"}, "since"), ({"until": "2027-13-01"}, "until"),
    ({"since": "2027-1-1"}, "since"), ({"format": "xml"}, "format"),
    ({"tenant": "x" * 600}, "tenant"), ({"tenant": "nobody"}, "tenant"),
])
async def test_bad_usage_queries_name_the_parameter(tmp_path: Path, query: dict[str, str],
                                                    param: str) -> None:
    async with rig(tmp_path) as queen:
        r = await queen.as_(BOOT, "GET", "/v1/usage", params=query)
        assert r.status_code in (400, 404) and r.json()["error"]["param"] == param, r.text


async def test_the_day_and_budget_windows_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with rig(tmp_path, state=state) as queen:
        made = await queen.key("acme")
        await queen.admin("PUT", f"/prices/{MODEL}", json={"output_tokens": 1})
        await queen.admin("PUT", "/tenants/acme/limits",
                          json={"tokens_per_day": 1000, "budget": 50})
        answer = (await queen.chat(made["key"], text="a b", max_tokens=30)).json()
        assert answer["usage"]["total_tokens"] == 32
    async with rig(tmp_path, state=state) as queen:  # a new queen on the same database
        meter = queen.svc.quotas.meter("tenant", made["tenant_id"])
        assert (meter.day_tokens, meter.month_cost) == (32, 30.0)
        assert meter.limits.tokens_per_day == 1000
        r = await queen.chat(made["key"], max_tokens=30)  # 30 more cost units: over 50
        assert r.status_code == 429 and "budget" in r.json()["error"]["message"]
        # the minute window starts afresh, the day's tokens do not
        r = await queen.chat(made["key"], text="x", max_tokens=18)
        assert r.status_code == 200


async def test_usage_not_written_is_kept_for_the_next_flush(tmp_path: Path) -> None:
    from rbee.queen.quotas import Account, Used
    from rbee.queen.usage import UsageLog
    from rbee.storage.db import connect
    from rbee.storage.quotas import QuotaStore

    class Flaky(QuotaStore):
        fail = True

        def add_usage(self, rows):  # type: ignore[no-untyped-def]
            if self.fail:
                self.fail = False
                raise OSError("disk full")
            super().add_usage(rows)

    db = connect(tmp_path / "q.db")
    log = UsageLog(Flaky(db))
    who = Account("ten_1", "key_1")
    log.record(who, "m", Used(prompt_tokens=2, completion_tokens=3), 1.5, 1_800_000_000.0)
    with pytest.raises(OSError):
        await log.flush()
    log.record(who, "m", Used(prompt_tokens=1, completion_tokens=1), 0.5, 1_800_000_001.0)
    await log.flush()
    [row] = log.store.usage()
    assert (row.requests, row.prompt_tokens, row.completion_tokens, row.cost) == (2, 3, 4, 2.0)
    db.close()


def test_csv_cells_a_spreadsheet_would_run_are_neutralised() -> None:
    from rbee.api.quotas import UsageRow
    from rbee.queen.routes.quotas import _csv

    text = _csv([UsageRow(day="2027-01-15", tenant_id="t", key_id="k",
                          model='=HYPERLINK("http://x")', requests=1)])
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["model"] == "'=HYPERLINK(\"http://x\")" and row["requests"] == "1"
