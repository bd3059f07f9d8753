"""Browser tests: real Chromium (Playwright, the Debian binary) against real queens.

Fixtures:
- `chromium`: one browser per test module. (Not per session: while Playwright's sync API
  is open it keeps its event loop marked running on the main thread, and every async test
  collected after the browser tests would fail with "cannot be called from a running event
  loop". A launch takes about 0.4 s.)
- `start_queen(model=None, **env)`: a real queen with its local hive and an admin token;
  `model` is preloaded ("rbee-fake" for the fake engine, None for none, or a real model
  such as "smollm2-135m-instruct"). Returns a `RunningQueen`, which unpacks as
  `(base_url, admin_key)` and has `.daemon`. Stopped at the end of the test (or module,
  with `module_queen_factory`), with a check that nothing it started survives.
- `new_page(url)`: a fresh browser context and page; every page is screenshotted into
  test-artifacts/screenshots/<test>-<n>.png when the test ends (pass or fail).
- `logged_in_page(page, base_url, key)`: log in through the form, wait for the shell.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.support.daemons import REPO, Daemon, rbee_env, start_queen

SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]


@dataclass
class RunningQueen:
    base_url: str
    admin_key: str
    daemon: Daemon

    def __iter__(self) -> Iterator[str]:
        return iter((self.base_url, self.admin_key))


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _queens(root: Callable[[], Path]) -> Iterator[Callable[..., RunningQueen]]:
    started: list[Daemon] = []

    def start(model: str | None = None, **env: str) -> RunningQueen:
        token = f"dash-{secrets.token_urlsafe(24)}"
        extra = {"RBEE_QUEEN_API_TOKEN": token, "RBEE_QUEEN_WORKER_THREADS": "1", **env}
        if model is not None:
            extra["RBEE_QUEEN_PRELOAD_MODEL"] = model
        daemon = start_queen(rbee_env(root(), **extra))
        started.append(daemon)
        return RunningQueen(daemon.url, token, daemon)

    yield start
    for daemon in started:
        daemon.stop()
    for daemon in started:
        leftovers = daemon.leftovers()
        assert not leftovers, f"orphan processes after queen stop: {leftovers}"


@pytest.fixture
def queen_factory(tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Callable[..., RunningQueen]]:
    yield from _queens(lambda: tmp_path_factory.mktemp("dash"))


@pytest.fixture(scope="module")
def module_queen_factory(tmp_path_factory: pytest.TempPathFactory
                         ) -> Iterator[Callable[..., RunningQueen]]:
    yield from _queens(lambda: tmp_path_factory.mktemp("dash"))


@pytest.fixture
def new_page(chromium: Browser, request: pytest.FixtureRequest
             ) -> Iterator[Callable[..., Page]]:
    contexts: list[BrowserContext] = []
    pages: list[Page] = []

    def make(url: str | None = None, **context_args: Any) -> Page:
        context = chromium.new_context(**context_args)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        pages.append(page)
        if url is not None:
            page.goto(url)
        return page

    yield make
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
    for i, page in enumerate(pages):
        if not page.is_closed():
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{i}.png"), full_page=True)
    for context in contexts:
        context.close()


def logged_in_page(page: Page, base_url: str, key: str) -> Page:
    """Log in through the form, as a person would; returns once the shell shows a page."""
    page.goto(f"{base_url}/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#page .page")).to_be_visible()
    return page
