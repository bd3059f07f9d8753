"""The Scheduler page in real Chromium against a real queen (a fake-engine worker running):
the highlighted editor, check with the error's line, a dry run that shows the decision and
why candidates were rejected, apply, and rollback to the previous version (issue 14)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from rbee.client import QueenClient
from tests.browser.conftest import RunningQueen, logged_in_page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
V1 = "-- v1\nfunction route(job, workers)\n  return workers:least_loaded()\nend\n"
V2 = "-- v2: no opinion\nfunction route(job, workers)\n  return nil\nend\n"
BROKEN = "function route(job, workers)\n  return workers:\nend\n"


@pytest.fixture(scope="module")
def queen(module_queen_factory: Callable[..., RunningQueen]) -> RunningQueen:
    return module_queen_factory(model="rbee-fake")


def job(queen: RunningQueen, operation: str, **fields: Any) -> dict[str, Any]:
    client = QueenClient(queen.base_url, token=queen.admin_key)
    try:
        result: dict[str, Any] = client.run(operation, **fields)
    finally:
        client.close()
    return result


def open_scheduler(page: Page, queen: RunningQueen) -> Page:
    logged_in_page(page, *queen)
    page.locator("#nav a[data-page='scheduler']").click()
    expect(page.get_by_test_id("active-script")).to_be_visible()
    return page


def set_source(page: Page, source: str) -> None:
    page.get_by_test_id("script-editor").fill(source)


def test_check_marks_the_broken_line_and_the_editor_highlights_lua(
        queen: RunningQueen, new_page: Callable[..., Page]) -> None:
    page = open_scheduler(new_page(), queen)
    paint = page.locator(".code-paint")
    expect(paint.locator(".tok-keyword").first).to_have_text("function")
    expect(paint.locator(".tok-comment").first).to_be_visible()
    set_source(page, BROKEN)
    page.get_by_test_id("check").click()
    expect(page.get_by_test_id("check-result")).to_contain_text("line 3")
    expect(paint.locator(".error-line")).to_have_attribute("data-line", "3")
    set_source(page, V1)
    page.get_by_test_id("check").click()
    expect(page.get_by_test_id("check-result")).to_have_text("compiles · hooks: route")
    expect(paint.locator(".error-line")).to_have_count(0)


def test_dry_run_apply_and_rollback(queen: RunningQueen, new_page: Callable[..., Page]) -> None:
    page = open_scheduler(new_page(), queen)
    page.get_by_test_id("script-name").fill("bees")
    set_source(page, V1)
    # A dry run for another model: the running rbee-fake worker is rejected, with its reason.
    page.get_by_test_id("plan-model").fill("rbee-fake-embedding")
    page.get_by_test_id("dry-run").click()
    decision = page.get_by_test_id("decision")
    expect(decision.locator("[data-decision]")).to_have_text("place")
    rejected = decision.locator("tr[data-verdict='rejected']").first
    expect(rejected).to_contain_text("serves another model")
    expect(decision.locator("tr[data-verdict='chosen']")).to_have_count(1)
    assert job(queen, "script_list")["scripts"] == []  # a dry run stores nothing

    page.get_by_test_id("apply").click()
    expect(page.get_by_test_id("active-script")).to_have_text("bees")
    expect(page.locator("[data-testid='history'] tr[data-version='1']")).to_contain_text("active")
    set_source(page, V2)
    page.get_by_test_id("apply").click()
    expect(page.locator("[data-testid='history'] tr[data-version='2']")).to_contain_text("active")
    assert job(queen, "script_get", name="bees")["source"] == V2
    counters = page.get_by_test_id("counters")
    expect(counters).to_contain_text("0 failures")

    page.get_by_test_id("rollback-1").click()
    expect(page.locator("[data-testid='history'] tr[data-version='1']")).to_contain_text("active")
    expect(page.get_by_test_id("script-editor")).to_have_value(V1)
    now = job(queen, "script_get", name="bees")
    assert now["active"] and now["version"] == 1 and now["source"] == V1
    history = job(queen, "script_history", name="bees")["versions"]
    assert [(v["version"], v["saved_by"]) for v in history] == [(2, "bootstrap"),
                                                              (1, "bootstrap")]
    # The rollback is in the audit log, as an admin change, naming the version.
    r = httpx.get(f"{queen.base_url}/v1/admin/audit", params={"action": "admin.script"},
                  headers={"Authorization": f"Bearer {queen.admin_key}"})
    assert ("admin.script.rollback", "bees@v1") in [(e["action"], e["subject"])
                                                     for e in r.json()["data"]]
