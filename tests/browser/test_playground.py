"""The Playground in real Chromium against a real queen: chat streams token by token from
the REAL built-in model (SmolLM2), the stop button ends a stream, an embedding and a spoken
answer from the real built-in models, and nothing a prompt carries runs as script (issue 14).
Tests whose built-in model package is missing are skipped, one by one."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from rbee.models.catalog import builtin_path
from tests.browser.conftest import RunningQueen, logged_in_page
from tests.support.audio import tone_wav

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
CHAT = "smollm2-135m-instruct"

# Every change to the newest answer while it streams: [state, length of its text].
WATCH = """() => {
  window.__growth = [];
  const log = document.querySelector("[data-testid='chat-log']");
  new MutationObserver(() => {
    const answers = log.querySelectorAll("[data-testid='answer']");
    const a = answers[answers.length - 1];
    if (a) window.__growth.push([a.dataset.state, a.textContent.length]);
  }).observe(log, { subtree: true, childList: true, characterData: true, attributes: true });
}"""


def need(model: str) -> None:
    if builtin_path(model) is None:
        pytest.skip(f"{model} is not installed (scripts/install.sh installs it)")


@pytest.fixture(scope="module")
def queen(module_queen_factory: Callable[..., RunningQueen]) -> RunningQueen:
    """No model preloaded: each test's model starts on its first request (so a missing
    package skips only the tests that need it)."""
    return module_queen_factory()


def playground(page: Page, queen: RunningQueen, tab: str, model: str) -> Page:
    logged_in_page(page, *queen)
    page.locator("#nav a[data-page='playground']").click()
    page.locator(f".tabs button[data-tab='{tab}']").click()
    page.get_by_test_id("model").select_option(model)
    return page


@pytest.mark.model
def test_chat_streams_the_real_models_answer_token_by_token(
        queen: RunningQueen, new_page: Callable[..., Page]) -> None:
    need(CHAT)
    page = playground(new_page(), queen, "chat", CHAT)
    page.get_by_text("System prompt and sampling").click()
    page.get_by_test_id("system-prompt").fill("You are a helpful assistant.")
    page.get_by_test_id("temperature").fill("0")
    page.get_by_test_id("seed").fill("7")
    page.get_by_test_id("max-tokens").fill("48")
    page.evaluate(WATCH)
    page.get_by_test_id("chat-input").fill("Write two sentences about honey bees.")
    page.get_by_test_id("send").click()
    answer = page.get_by_test_id("answer")
    expect(answer).to_have_attribute("data-state", "done", timeout=120_000)
    growth = page.evaluate("window.__growth")
    streaming = sorted({n for state, n in growth if state == "streaming" and n > 0})
    assert len(streaming) >= 2, growth  # seen growing at least twice before the end
    final = len(answer.text_content() or "")
    assert final > streaming[0] > 0
    expect(page.get_by_text("finish: ")).to_be_visible()


@pytest.mark.model
def test_stop_ends_the_stream(queen: RunningQueen, new_page: Callable[..., Page]) -> None:
    need(CHAT)
    page = playground(new_page(), queen, "chat", CHAT)
    page.get_by_text("System prompt and sampling").click()
    page.get_by_test_id("max-tokens").fill("2000")
    page.get_by_test_id("chat-input").fill("Tell me a very long story about a bee.")
    page.get_by_test_id("send").click()
    answer = page.get_by_test_id("answer")
    expect(answer).not_to_have_text("", timeout=60_000)  # it has begun
    page.get_by_test_id("stop").click()
    expect(answer).to_have_attribute("data-state", "stopped")
    length = len(answer.text_content() or "")
    page.wait_for_timeout(1000)
    assert len(answer.text_content() or "") == length  # nothing more arrives
    expect(page.get_by_test_id("send")).to_be_enabled()


@pytest.mark.model
def test_an_embedding_from_the_real_model(queen: RunningQueen,
                                          new_page: Callable[..., Page]) -> None:
    need("all-minilm-l6-v2")
    page = playground(new_page(), queen, "embeddings", "all-minilm-l6-v2")
    page.get_by_test_id("embed-input").fill("Bees make honey.")
    page.get_by_role("button", name="Embed").click()
    expect(page.get_by_test_id("dimensions")).to_have_text("384", timeout=120_000)
    expect(page.get_by_test_id("vector")).to_contain_text(", …]")


@pytest.mark.model
def test_speech_from_the_real_voice_plays(queen: RunningQueen,
                                          new_page: Callable[..., Page]) -> None:
    need("piper-joe")
    page = playground(new_page(), queen, "speech", "piper-joe")
    page.get_by_test_id("speech-input").fill("Hello from the hive.")
    page.get_by_test_id("audio-format").select_option("wav")
    page.get_by_role("button", name="Speak").click()
    audio = page.get_by_test_id("audio")
    expect(audio).to_have_attribute("src", re.compile(r"^blob:"), timeout=120_000)
    # Chromium decodes it: a playable source has a duration (a broken one fires `error`).
    duration = page.wait_for_function("""() => {
        const a = document.querySelector("[data-testid='audio']");
        return a && a.readyState >= 1 && a.duration > 0 ? a.duration : null;
    }""").json_value()
    assert 0.5 < duration < 10


def test_a_prompt_is_shown_as_text_never_run(queen: RunningQueen,
                                             new_page: Callable[..., Page]) -> None:
    """With the fake engine (no model needed): hostile markup in a prompt stays text."""
    page = playground(new_page(), queen, "chat", "rbee-fake")
    hostile = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    page.get_by_test_id("chat-input").fill(hostile)
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("answer")).to_have_attribute("data-state", "done",
                                                            timeout=60_000)
    expect(page.locator(".msg.user")).to_have_text(hostile)
    assert page.locator(".chat-log img, .chat-log script").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_images_transcription_and_video_with_the_fake_engines(
        queen: RunningQueen, new_page: Callable[..., Page], tmp_path: Path) -> None:
    """The other modalities' forms, end to end through the queen (fake engines: quick)."""
    page = playground(new_page(), queen, "images", "rbee-fake-image")
    page.get_by_test_id("image-prompt").fill("a bee")
    page.get_by_test_id("image-size").select_option("256x256")
    page.get_by_role("button", name="Paint").click()
    image = page.get_by_test_id("image")
    expect(image).to_have_attribute("src", re.compile(r"^data:image/png;base64,"),
                                    timeout=60_000)
    assert page.wait_for_function("""() => {
        const i = document.querySelector("[data-testid='image']");
        return i && i.complete && i.naturalWidth;
    }""").json_value() == 256

    wav = tmp_path / "tone.wav"
    wav.write_bytes(tone_wav([0.5, 0.0]))
    page.locator(".tabs button[data-tab='transcription']").click()
    page.get_by_test_id("model").select_option("rbee-fake-transcription")
    page.get_by_test_id("audio-file").set_input_files(str(wav))
    page.get_by_role("button", name="Transcribe").click()
    expect(page.get_by_test_id("transcript")).to_contain_text("Second 1 is loud",
                                                              timeout=60_000)

    page.locator(".tabs button[data-tab='video']").click()
    page.get_by_test_id("model").select_option("rbee-fake-video")
    page.get_by_test_id("video-prompt").fill("bees dancing")
    page.get_by_role("button", name="Make video").click()
    expect(page.get_by_test_id("video")).to_have_attribute("src", re.compile(r"^blob:"),
                                                           timeout=120_000)
    expect(page.get_by_test_id("video-status")).to_contain_text("completed")
