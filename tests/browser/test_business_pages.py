"""The dashboard's business pages in real Chromium against a real queen (bootstrap token,
its local hive, the fake engine), logged in through the shell's form: tenants, users and
keys are made through the pages, a key is shown once, quotas are set, usage from real
requests is charted, the audit chain verifies and exports, a person is exported and erased
with a receipt, and a user key sees no admin page (and the API refuses it)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import SCREENSHOTS, RunningQueen, logged_in_page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
HOSTILE = "<img src=x onerror=alert(1)>"
Pages = Callable[..., Page]


@pytest.fixture(scope="module")
def queen(module_queen_factory: Callable[..., RunningQueen]) -> RunningQueen:
    return module_queen_factory()


def open_as(new_page: Pages, queen: RunningQueen, key: str) -> Page:
    page = new_page(accept_downloads=True)
    page.on("dialog", lambda d: pytest.fail(f"a dialog opened: {d.message}"))
    return logged_in_page(page, queen.base_url, key)


def visit(page: Page, queen: RunningQueen, page_id: str) -> None:
    """Open a page afresh (a reload: a hash already shown fires no hashchange)."""
    page.goto(f"{queen.base_url}/#/{page_id}")
    page.reload()
    expect(page.locator(f"#page .page[data-page-id='{page_id}']")).to_be_visible()


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"biz-{name}.png"), full_page=True)


def admin_api(queen: RunningQueen) -> httpx.Client:
    return httpx.Client(base_url=queen.base_url,
                        headers={"authorization": f"Bearer {queen.admin_key}"},
                        timeout=30)


def test_tenants_users_and_a_key_shown_once(new_page: Pages, queen: RunningQueen) -> None:
    page = open_as(new_page, queen, queen.admin_key)
    visit(page, queen, "tenants")
    tenant_form = page.locator("[data-form=tenant]")
    tenant_form.locator("#biz-tenant-name").fill("not a name!")
    tenant_form.get_by_role("button", name="Create tenant").click()
    expect(tenant_form.locator("[data-error=tenant]")).to_contain_text("name")
    tenant_form.locator("#biz-tenant-name").fill("acme")
    tenant_form.get_by_role("button", name="Create tenant").click()
    expect(page.locator("[data-table=tenants]")).to_contain_text("acme")
    with admin_api(queen) as api:  # labels are free text: an attacker's markup goes there
        assert api.post("/v1/admin/tenants", json={"name": "evil",
                        "labels": {"x": HOSTILE}}).status_code == 200
    visit(page, queen, "tenants")
    expect(page.locator("[data-table=tenants]")).to_contain_text(f"x={HOSTILE}")
    assert page.locator("[data-table=tenants] img").count() == 0

    page.get_by_label("acme requires consent").check()  # a PATCH with the CSRF header
    expect(page.locator("#toasts")).to_contain_text("acme: consent required")
    with admin_api(queen) as api:
        acme = next(t for t in api.get("/v1/admin/tenants").json()["data"]
                    if t["name"] == "acme")
        assert acme["requires_consent"] is True
    user_form = page.locator("[data-form=user]")
    user_form.locator("#biz-user-tenant").select_option(label="acme")
    user_form.locator("#biz-user-name").fill("ann")
    user_form.get_by_role("button", name="Create user").click()
    expect(page.locator("[data-table=users]")).to_contain_text("ann")
    shot(page, "tenants")

    visit(page, queen, "keys")
    key_form = page.locator("[data-form=key]")
    expect(key_form.locator("#biz-key-user option")).to_have_count(1)
    key_form.locator("#biz-key-name").fill(HOSTILE)
    key_form.locator("#biz-key-expires").fill("-1")
    key_form.get_by_role("button", name="Create key").click()
    expect(key_form.locator("[data-error=key]")).to_contain_text("expires_in_days")
    key_form.locator("#biz-key-expires").fill("")
    key_form.get_by_role("button", name="Create key").click()
    secret = page.locator("[data-secret]")
    expect(secret).to_have_value(re.compile(r"^rbee-[0-9a-f]+-"))
    key = secret.input_value()
    expect(page.locator("[data-once]").get_by_role("button", name="Copy")).to_be_visible()
    expect(page.locator("[data-table=keys]")).to_contain_text(HOSTILE)
    assert page.locator("[data-table=keys] img").count() == 0
    shot(page, "key-shown-once")
    page.reload()
    expect(page.locator("[data-table=keys]")).to_contain_text(key.split("-")[1])
    assert page.locator("[data-once]").count() == 0 and key not in page.content()


def make_user_key(queen: RunningQueen, tenant: str, name: str,
                  role: str = "user") -> tuple[str, str]:
    """(user id, key) made through the API, for the pages to find."""
    with admin_api(queen) as api:
        api.post("/v1/admin/tenants", json={"name": tenant})  # 400 if it exists: fine
        user = api.post("/v1/admin/users", json={"tenant": tenant, "name": name}).json()
        made = api.post("/v1/admin/keys", json={"user": user["id"], "role": role})
        assert made.status_code == 200, made.text
        return user["id"], made.json()["key"]


def chat(queen: RunningQueen, key: str, times: int) -> None:
    with httpx.Client(base_url=queen.base_url, headers={"authorization": f"Bearer {key}"},
                      timeout=60) as client:
        for _ in range(times):
            answer = client.post("/v1/chat/completions", json={
                "model": "rbee-fake", "max_tokens": 4,
                "messages": [{"role": "user", "content": "hello"}]})
            assert answer.status_code == 200, answer.text


def test_revoke_asks_first_then_the_key_is_refused(new_page: Pages, queen: RunningQueen) -> None:
    _, key = make_user_key(queen, "beta", "bo")
    key_id = key.split("-")[1]
    page = open_as(new_page, queen, queen.admin_key)
    visit(page, queen, "keys")
    page.locator(f"[data-revoke='{key_id}']").click()
    expect(page.locator(f"[data-confirm-revoke='{key_id}']")).to_be_focused()
    page.get_by_role("button", name="Cancel").click()
    chat(queen, key, 1)  # cancelled: still good
    page.locator(f"[data-revoke='{key_id}']").click()
    page.locator(f"[data-confirm-revoke='{key_id}']").click()
    expect(page.locator("[data-table=keys] tr", has_text=key_id)).to_contain_text("revoked")
    refused = httpx.get(f"{queen.base_url}/v1/models", headers={"authorization": f"Bearer {key}"})
    assert refused.status_code == 401


def test_usage_chart_limits_and_prices(new_page: Pages, queen: RunningQueen) -> None:
    _, key = make_user_key(queen, "gamma", "cy")
    chat(queen, key, 2)
    page = open_as(new_page, queen, queen.admin_key)
    visit(page, queen, "usage")
    chart = page.locator("[data-chart='tokens-by-day'] svg")
    expect(chart.locator("rect.biz-bar").first).to_be_visible()
    page.locator("#biz-usage-group").select_option("model")
    expect(page.locator("[data-chart='tokens-by-model'] svg text", has_text="rbee-fake").first
           ).to_be_visible()
    page.locator("#biz-usage-metric").select_option("requests")
    page.locator("#biz-usage-tenant").select_option(label="gamma")  # other tests chat too
    page.get_by_role("button", name="Show usage").click()
    expect(page.locator("[data-table=usage] tbody tr")).to_have_count(1)
    bars = page.locator("[data-chart='requests-by-model'] rect.biz-bar")
    assert [bars.nth(i).get_attribute("data-value") for i in range(bars.count())] == ["2"]

    limits = page.locator("[data-form=limits]")
    limits.locator("#biz-limits-id").fill("gamma")
    limits.locator("#biz-limits-id").press("Tab")  # shows what is in force: none yet
    expect(limits).to_have_attribute("data-shown", "gamma")
    limits.locator("#biz-limit-requests_per_minute").fill("lots")
    limits.get_by_role("button", name="Set limits").click()
    expect(limits.locator("[data-error=limits]")).to_contain_text("requests_per_minute")
    limits.locator("#biz-limit-requests_per_minute").fill("100")
    limits.get_by_role("button", name="Set limits").click()
    expect(page.locator("[data-table=limits]")).to_contain_text("gamma")
    expect(page.locator("[data-table=limits] tr", has_text="gamma")).to_contain_text("100")
    prices = page.locator("[data-form=prices]")
    prices.locator("#biz-price-model").fill("rbee-fake")
    prices.locator("#biz-price-output_tokens").fill("0.5")
    prices.get_by_role("button", name="Set prices").click()
    expect(page.locator("[data-table=prices]")).to_contain_text("0.5")
    shot(page, "usage")
    with admin_api(queen) as api:
        assert api.get("/v1/admin/tenants/gamma/limits").json()["requests_per_minute"] == 100


def test_audit_verify_and_export(new_page: Pages, queen: RunningQueen) -> None:
    page = open_as(new_page, queen, queen.admin_key)
    visit(page, queen, "audit")
    expect(page.locator("[data-table=audit] tbody tr").first).to_be_visible()
    page.get_by_role("button", name="Verify the chain").click()
    expect(page.locator("[data-verdict=ok]")).to_contain_text("Chain verified")
    page.locator("#biz-audit-action").fill("admin.")
    page.get_by_role("button", name="Filter").click()
    actions = page.locator("[data-table=audit] tbody tr td:nth-child(3)").all_inner_texts()
    assert actions and all(a.startswith("admin.") for a in actions), actions
    with page.expect_download() as got:
        page.locator("[data-export=audit]").click()
    lines = Path(got.value.path()).read_text().splitlines()
    assert len(lines) > len(actions) and "head" in json.loads(lines[0])
    shot(page, "audit")


def test_gdpr_export_and_erasure_with_receipt(new_page: Pages, queen: RunningQueen) -> None:
    subject, key = make_user_key(queen, "delta", "dee")
    chat(queen, key, 1)
    page = open_as(new_page, queen, queen.admin_key)
    visit(page, queen, "gdpr")
    export = page.locator("[data-form=gdpr-export]")
    export.locator("#biz-export-subject").fill("usr_nobody")
    export.get_by_role("button", name="Export as JSON").click()
    expect(export.locator("[data-error=gdpr-export]")).to_contain_text("no subject")
    export.locator("#biz-export-subject").fill(subject)
    with page.expect_download() as got:
        export.get_by_role("button", name="Export as JSON").click()
    data = json.loads(Path(got.value.path()).read_text())
    assert data["user"]["id"] == subject and got.value.suggested_filename.endswith(".json")

    consent = page.locator("[data-form=gdpr-consent]")
    consent.locator("#biz-consent-subject").fill(subject)
    consent.locator("#biz-consent-purpose").fill("no spaces allowed")
    consent.get_by_role("button", name="Record consent").click()
    expect(consent.locator("[data-error=gdpr-consent]")).to_contain_text("purpose")
    consent.locator("#biz-consent-purpose").fill("processing")
    consent.get_by_role("button", name="Record consent").click()
    expect(consent.locator("[data-consent-result]")).to_have_text(f"{subject}: processing granted")

    erase = page.locator("[data-form=gdpr-delete]")
    erase.locator("#biz-delete-subject").fill(subject)
    erase.locator("#biz-delete-confirm").fill("someone else")
    erase.get_by_role("button", name="Erase this person").click()
    expect(erase.locator("[data-error=gdpr-delete]")).to_contain_text("does not match")
    erase.locator("#biz-delete-confirm").fill(subject)
    erase.get_by_role("button", name="Erase this person").click()
    receipt = page.locator("[data-receipt]")
    expect(receipt).to_contain_text("hmac-sha256:")
    receipt.get_by_role("button", name="Check the signature").click()
    expect(receipt.locator("[data-receipt-check]")).to_contain_text("Valid")
    shot(page, "gdpr-receipt")
    refused = httpx.get(f"{queen.base_url}/v1/models", headers={"authorization": f"Bearer {key}"})
    assert refused.status_code == 401


def test_a_user_key_is_not_permitted_on_admin_pages(new_page: Pages, queen: RunningQueen) -> None:
    _, key = make_user_key(queen, "eps", "eve")
    chat(queen, key, 1)
    page = open_as(new_page, queen, key)
    expect(page.locator("#nav a[data-page='usage']")).to_be_visible()
    for admin_only in ("audit", "tenants", "keys", "gdpr"):
        expect(page.locator(f"#nav a[data-page='{admin_only}']")).to_have_count(0)
        page.goto(f"{queen.base_url}/#/{admin_only}")
        expect(page.locator("#page [role=alert]")).to_contain_text(
            "Not permitted: this page needs an admin key")
        expect(page.locator(f"[data-page-id='{admin_only}']")).to_have_count(0)
        assert page.locator("[data-table=audit], [data-form=key]").count() == 0
    # The real guard: the API refuses this session's own requests, from inside the page.
    status = page.evaluate("async () => (await fetch('/v1/admin/audit')).status")
    assert status == 403
    forbidden = httpx.get(f"{queen.base_url}/v1/admin/audit",
                          headers={"authorization": f"Bearer {key}"})
    assert forbidden.status_code == 403 and forbidden.json()["error"]["type"]
    visit(page, queen, "usage")  # a user's own tenant's usage, no admin forms
    expect(page.locator("[data-chart] rect.biz-bar").first).to_be_visible()
    tenants = page.locator("[data-table=usage] tbody td:nth-child(2)").all_inner_texts()
    assert len(set(tenants)) == 1, tenants  # its own tenant's, though others have usage
    assert page.locator("[data-form=limits]").count() == 0
    assert page.locator("#biz-usage-tenant").count() == 0
    shot(page, "user-usage")
