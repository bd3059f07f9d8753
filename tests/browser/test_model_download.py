"""Download a model from the GUI with its progress: a real queen and hive spawn an `hf:`
model on the CPU from the cluster page, the hive downloading it from a stand-in hub; the
action panel narrates the download (its progress stage) as it happens, then the worker is
ready."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from rbee.queen.local_hive import HIVE_ID
from tests.browser.conftest import RunningQueen, logged_in_page
from tests.support.hub import TINY_FILE, TINY_REPO, StandInHub

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
MODEL = f"hf:{TINY_REPO}:{TINY_FILE}"


@pytest.fixture
def hub(hub_root: Path) -> Iterator[StandInHub]:
    # 8 pieces of 64 KiB, 0.3 s apart: the download lasts long enough to be watched
    with StandInHub(hub_root, chunk_delay=0.3) as running:
        yield running


def test_a_model_downloads_from_the_gui_with_its_progress(
        hub: StandInHub, queen_factory: Callable[..., RunningQueen],
        new_page: Callable[..., Page]) -> None:
    queen = queen_factory(RBEE_QUEEN_HF_ENDPOINT=hub.url)
    page = logged_in_page(new_page(viewport={"width": 1100, "height": 900}), *queen)
    form = page.locator(f"form[data-spawn='{HIVE_ID}/cpu']")
    form.get_by_label("Model to run on cpu").fill(MODEL)
    form.get_by_role("button", name="Spawn on cpu").click()
    log = page.locator("#action-log")
    expect(log.locator("[data-event='progress']").filter(has_text="downloading").first
           ).to_be_visible(timeout=30_000)
    expect(log.locator("[data-event='done']")).to_be_visible(timeout=60_000)
    # The download's stage names its size (huggingface_hub reports every 10 MB read, so a
    # file this small shows one step; tests/e2e/test_hf_models.py checks the format)
    events = log.locator("[data-event]").evaluate_all("els => els.map(e => e.textContent)")
    first = next(i for i, text in enumerate(events) if "downloading" in text)
    assert "/0.5 MB" in events[first] and first < events.index("done: {}")
    worker = page.locator(f".worker[data-model='{MODEL}']")
    expect(worker.locator("[data-state]")).to_have_text("ready", timeout=30_000)
    listed = httpx.get(f"{queen.base_url}/v1/workers", timeout=10,
                       headers={"Authorization": f"Bearer {queen.admin_key}"}).json()
    assert [(w["model"], w["device"], w["state"]) for w in listed] == [(MODEL, "cpu", "ready")]
    assert hub.count("GET", TINY_REPO, TINY_FILE, status=200) == 1
