"""Logging in to the dashboard in real Chromium against a real queen (issue 14, Access)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import RunningQueen, logged_in_page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture(scope="module")
def queen(module_queen_factory: Callable[..., RunningQueen]) -> RunningQueen:
    return module_queen_factory()


def test_a_bad_key_is_refused_with_the_reason_shown(queen: RunningQueen,
                                                    new_page: Callable[..., Page]) -> None:
    page = new_page(f"{queen.base_url}/")
    page.get_by_label("API key").fill("rbee-nope-notakey")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_have_text("invalid API key")
    expect(page.locator("#page .page")).to_have_count(0)
    assert page.context.cookies() == []


def test_login_sets_an_httponly_strict_cookie_and_shows_the_cluster(
        queen: RunningQueen, new_page: Callable[..., Page]) -> None:
    page = logged_in_page(new_page(), *queen)
    expect(page.locator("#who")).to_contain_text("bootstrap · admin")
    expect(page.locator("#nav a[data-page='cluster']")).to_be_visible()
    (cookie,) = page.context.cookies()
    assert cookie["name"] == "rbee_session"
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/" and cookie["secure"] is False  # plain http on loopback
    assert queen.admin_key not in cookie["value"]
    # Scripts cannot read it, and a reload keeps the session (the queen holds it).
    assert "rbee_session" not in page.evaluate("document.cookie")
    page.reload()
    expect(page.locator("#page .page")).to_be_visible()
    expect(page.locator("#login")).to_be_hidden()


def test_logout_ends_the_session_on_the_server(queen: RunningQueen,
                                               new_page: Callable[..., Page]) -> None:
    page = logged_in_page(new_page(), *queen)
    (cookie,) = page.context.cookies()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    # The old cookie value is dead on the server, not only forgotten by the browser.
    r = httpx.get(f"{queen.base_url}/ui/session",
                  headers={"Cookie": f"rbee_session={cookie['value']}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_a_write_without_the_csrf_header_is_refused(queen: RunningQueen,
                                                    new_page: Callable[..., Page]) -> None:
    """The page's own fetch with the cookie but no X-CSRF-Token (what a forged form or a
    script elsewhere would send) is a 403 csrf_failed; with the header it passes."""
    page = logged_in_page(new_page(), *queen)
    status = page.evaluate("""async () => {
        const r = await fetch('/v1/jobs', {method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({operation: 'status'})});
        return [r.status, (await r.json()).error.code];
    }""")
    assert status == [403, "csrf_failed"]
    token = page.evaluate("async () => (await (await fetch('/ui/session')).json()).csrf_token")
    ok = page.evaluate("""async (token) => {
        const r = await fetch('/v1/jobs', {method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': token},
            body: JSON.stringify({operation: 'status'})});
        return r.status;
    }""", token)
    assert ok == 200


def test_a_cross_site_page_cannot_post_with_the_cookie(queen: RunningQueen,
                                                       new_page: Callable[..., Page]) -> None:
    """A page on another origin (another loopback port) submits a form and a fetch at the
    queen: SameSite=Strict keeps the cookie home, and the Origin check refuses the fetch."""
    page = logged_in_page(new_page(), *queen)
    jobs_before = _job_count(queen)
    evil = page.context.new_page()
    evil.route("http://evil.test/", lambda route: route.fulfill(
        content_type="text/html", body=f"""<form id=f method=post action="{queen.base_url}/v1/jobs"
            enctype="text/plain"><input name='{{"operation":"status","x":"' value='"}}'></form>
            <script>document.getElementById('f').submit()</script>"""))
    with evil.expect_navigation():
        evil.goto("http://evil.test/")
    body = evil.inner_text("body")
    assert "permission_error" in body or "authentication_error" in body, body
    refused = evil.evaluate(f"""async () => {{
        try {{
            const r = await fetch('{queen.base_url}/v1/jobs', {{method: 'POST',
                credentials: 'include', headers: {{'Content-Type': 'application/json'}},
                body: JSON.stringify({{operation: 'status'}})}});
            return 'status ' + r.status;
        }} catch (e) {{ return 'blocked'; }}
    }}""")
    # Refused either way: the preflight fails (blocked) or the request itself is a 403.
    assert refused in ("blocked", "status 403"), refused
    assert _job_count(queen) == jobs_before
    evil.close()


def _job_count(queen: RunningQueen) -> int:
    r = httpx.get(f"{queen.base_url}/v1/jobs", params={"limit": 200},
                  headers={"Authorization": f"Bearer {queen.admin_key}"})
    assert r.status_code == 200, r.text
    return len(r.json()["data"])


def test_a_users_key_sees_no_operator_actions_and_works_at_phone_width(
        queen: RunningQueen, new_page: Callable[..., Page]) -> None:
    admin = {"Authorization": f"Bearer {queen.admin_key}"}
    base = queen.base_url
    httpx.post(f"{base}/v1/admin/tenants", json={"name": "acme"}, headers=admin)
    user = httpx.post(f"{base}/v1/admin/users", json={"tenant": "acme", "name": "ann"},
                      headers=admin).json()
    key = httpx.post(f"{base}/v1/admin/keys", json={"user": user["id"], "role": "user"},
                     headers=admin).json()
    page = logged_in_page(new_page(viewport={"width": 375, "height": 740}, is_mobile=True),
                          base, key["key"])
    expect(page.locator("#who")).to_contain_text(f"rbee-{key['id']} · user · acme")
    expect(page.locator("[data-hive] [data-state]").first).to_have_text("up")
    expect(page.locator("form[data-spawn]")).to_have_count(0)
    expect(page.locator("[data-action]")).to_have_count(0)
    # Nothing is wider than the phone's screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    # Keyboard: the skip link, then the navigation, reached with Tab alone.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.page") == "cluster"
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#page h1")).to_have_text("Jobs")


def test_a_second_tab_logging_in_does_not_break_the_first(queen: RunningQueen,
                                                          new_page: Callable[..., Page]) -> None:
    """Tabs opened before anyone logged in each show the form; each login replaces the
    browser's one session cookie. The first tab's next write is refused csrf_failed once,
    takes the new session's token (the same key) and goes through; with another key's
    session in the cookie, nothing is done and the tab says so."""
    first = new_page(f"{queen.base_url}/")
    second, third = (first.context.new_page() for _ in range(2))  # same browser, cookies
    for tab in (second, third):
        tab.set_default_timeout(15_000)
        tab.goto(f"{queen.base_url}/")
        expect(tab.get_by_label("API key")).to_be_visible()
    with httpx.Client(base_url=queen.base_url, timeout=30,
                      headers={"authorization": f"Bearer {queen.admin_key}"}) as api:
        assert api.post("/v1/admin/tenants", json={"name": "second-tab-co"}).status_code == 200
        user = api.post("/v1/admin/users", json={"tenant": "second-tab-co", "name": "u"})
        user_key = api.post("/v1/admin/keys", json={"user": user.json()["id"]}).json()["key"]
    _log_in(first, queen.admin_key)
    _log_in(second, queen.admin_key)  # the cookie is the second tab's session now
    first.goto(f"{queen.base_url}/#/tenants")
    form = first.locator("[data-form=tenant]")
    form.locator("#biz-tenant-name").fill("made-from-the-first-tab")
    form.get_by_role("button", name="Create tenant").click()
    expect(first.locator("[data-table=tenants]")).to_contain_text("made-from-the-first-tab")
    _log_in(third, user_key)  # a user's session in the cookie: the admin tab must not act
    form.locator("#biz-tenant-name").fill("never-made-co")
    form.get_by_role("button", name="Create tenant").click()
    expect(first.locator(".toast.error")).to_contain_text("Another tab logged in as")
    expect(first.locator("#who")).to_contain_text("· user")
    with httpx.Client(base_url=queen.base_url, timeout=30,
                      headers={"authorization": f"Bearer {queen.admin_key}"}) as api:
        names = {t["name"] for t in api.get("/v1/admin/tenants").json()["data"]}
    assert "made-from-the-first-tab" in names and "never-made-co" not in names


def _log_in(page: Page, key: str) -> None:
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#page .page")).to_be_visible()
