"""The dashboard's business pages in real Chromium against a real queen (bootstrap token,
its local hive, the fake engine): tenants, users and keys are made through the pages, a
key is shown once, quotas are set, usage from real requests is charted, the audit chain
verifies, a person is exported and erased with a receipt, and a user key is kept out."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from tests.support.daemons import Daemon, rbee_env, running_queen

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
BOOT = "bootstrap-token-for-the-dashboard-business-test"
HOSTILE = "<img src=x onerror=alert(1)>"
REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "src" / "rbee" / "queen" / "dashboard" / "static"
SHOTS = REPO / "test-artifacts" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def queen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    env = rbee_env(tmp_path_factory.mktemp("biz"), RBEE_QUEEN_API_TOKEN=BOOT)
    yield from running_queen(env)


def _serve_static(route: Route) -> None:
    path = route.request.url.split("/", 3)[3].split("?")[0]
    if path == "harness.html":
        route.fulfill(path=str(Path(__file__).parent / "_harness.html"))
    else:
        route.fulfill(path=str(STATIC / path.removeprefix("static/")),
                      content_type="text/javascript")


def open_as(chromium: Browser, queen: Daemon, token: str, role: str) -> Page:
    page = chromium.new_context(accept_downloads=True).new_page()
    page.route(f"{queen.url}/harness.html", _serve_static)
    page.route(f"{queen.url}/static/**", _serve_static)
    page.on("dialog", lambda d: pytest.fail(f"a dialog opened: {d.message}"))
    page.goto(f"{queen.url}/harness.html")
    page.evaluate("([t, r]) => { sessionStorage.setItem('token', t); "
                  "sessionStorage.setItem('role', r); }", [token, role])
    return page


def visit(page: Page, queen: Daemon, page_id: str) -> None:
    page.goto(f"{queen.url}/harness.html#/{page_id}")
    page.reload()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"biz-{name}.png"), full_page=True)


def admin_api(queen: Daemon) -> httpx.Client:
    return httpx.Client(base_url=queen.url, headers={"authorization": f"Bearer {BOOT}"},
                        timeout=30)


def test_tenants_users_and_a_key_shown_once(chromium: Browser, queen: Daemon) -> None:
    page = open_as(chromium, queen, BOOT, "admin")
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


def make_user_key(queen: Daemon, tenant: str, name: str, role: str = "user") -> tuple[str, str]:
    """(user id, key) made through the API, for the pages to find."""
    with admin_api(queen) as api:
        api.post("/v1/admin/tenants", json={"name": tenant})  # 400 if it exists: fine
        user = api.post("/v1/admin/users", json={"tenant": tenant, "name": name}).json()
        made = api.post("/v1/admin/keys", json={"user": user["id"], "role": role})
        assert made.status_code == 200, made.text
        return user["id"], made.json()["key"]


def chat(queen: Daemon, key: str, times: int) -> None:
    with httpx.Client(base_url=queen.url, headers={"authorization": f"Bearer {key}"},
                      timeout=60) as client:
        for _ in range(times):
            answer = client.post("/v1/chat/completions", json={
                "model": "rbee-fake", "max_tokens": 4,
                "messages": [{"role": "user", "content": "hello"}]})
            assert answer.status_code == 200, answer.text


def test_revoke_asks_first_then_the_key_is_refused(chromium: Browser, queen: Daemon) -> None:
    _, key = make_user_key(queen, "beta", "bo")
    key_id = key.split("-")[1]
    page = open_as(chromium, queen, BOOT, "admin")
    visit(page, queen, "keys")
    page.locator(f"[data-revoke='{key_id}']").click()
    expect(page.locator(f"[data-confirm-revoke='{key_id}']")).to_be_focused()
    page.get_by_role("button", name="Cancel").click()
    chat(queen, key, 1)  # cancelled: still good
    page.locator(f"[data-revoke='{key_id}']").click()
    page.locator(f"[data-confirm-revoke='{key_id}']").click()
    expect(page.locator("[data-table=keys] tr", has_text=key_id)).to_contain_text("revoked")
    refused = httpx.get(f"{queen.url}/v1/models", headers={"authorization": f"Bearer {key}"})
    assert refused.status_code == 401


def test_usage_chart_limits_and_prices(chromium: Browser, queen: Daemon) -> None:
    _, key = make_user_key(queen, "gamma", "cy")
    chat(queen, key, 2)
    page = open_as(chromium, queen, BOOT, "admin")
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


def test_audit_verify_and_export(chromium: Browser, queen: Daemon) -> None:
    page = open_as(chromium, queen, BOOT, "admin")
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


def test_gdpr_export_and_erasure_with_receipt(chromium: Browser, queen: Daemon) -> None:
    subject, key = make_user_key(queen, "delta", "dee")
    chat(queen, key, 1)
    page = open_as(chromium, queen, BOOT, "admin")
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
    refused = httpx.get(f"{queen.url}/v1/models", headers={"authorization": f"Bearer {key}"})
    assert refused.status_code == 401


def test_a_user_key_is_not_permitted_on_admin_pages(chromium: Browser, queen: Daemon) -> None:
    _, key = make_user_key(queen, "eps", "eve")
    chat(queen, key, 1)
    page = open_as(chromium, queen, key, "user")
    for admin_only in ("audit", "tenants", "keys", "gdpr"):
        visit(page, queen, admin_only)
        expect(page.get_by_role("alert")).to_contain_text("Not permitted")
        assert page.locator("form").count() == 0
    forbidden = httpx.get(f"{queen.url}/v1/admin/audit",
                          headers={"authorization": f"Bearer {key}"})
    assert forbidden.status_code == 403 and forbidden.json()["error"]["type"]
    visit(page, queen, "usage")  # a user's own tenant's usage, no admin forms
    expect(page.locator("[data-chart] rect.biz-bar").first).to_be_visible()
    assert page.locator("[data-form=limits]").count() == 0
    assert page.locator("#biz-usage-tenant").count() == 0
    shot(page, "user-usage")
