"""The OpenAI endpoints through the official client, against real daemons (fake engine)."""

from __future__ import annotations

import openai
import pytest

from tests.support.daemons import Daemon

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(shared_queen: Daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{shared_queen.url}/v1", api_key="unused", max_retries=0)


def test_models_list_has_default_and_fake(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"smollm2-135m-instruct", "rbee-fake"} <= ids
    assert client.models.retrieve("rbee-fake").id == "rbee-fake"


def test_chat_non_stream_respects_max_tokens_and_reports_usage(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="rbee-fake", messages=[{"role": "user", "content": "hello there"}], max_tokens=7,
        temperature=0.3, top_p=0.9, seed=1)
    assert r.choices[0].message.role == "assistant"
    assert len(r.choices[0].message.content.split()) == 7
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 7
    assert r.usage.total_tokens == r.usage.prompt_tokens + 7


def test_seed_makes_answers_reproducible(client: openai.OpenAI) -> None:
    def ask(seed: int) -> str:
        r = client.chat.completions.create(
            model="rbee-fake", messages=[{"role": "user", "content": "same"}], max_tokens=12,
            seed=seed)
        return r.choices[0].message.content or ""

    assert ask(5) == ask(5)
    assert ask(5) != ask(6)


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="rbee-fake", messages=[{"role": "user", "content": "stream please"}], max_tokens=5,
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 5
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and all(f is None for f in finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


def test_stop_sequence_ends_generation(client: openai.OpenAI) -> None:
    full = client.completions.create(model="rbee-fake", prompt="abc", max_tokens=20, seed=3)
    words = full.choices[0].text.split()
    stop_word = words[3]
    cut = client.completions.create(model="rbee-fake", prompt="abc", max_tokens=20, seed=3,
                                    stop=[stop_word])
    assert cut.choices[0].finish_reason == "stop"
    assert stop_word not in cut.choices[0].text.split()
    assert len(cut.choices[0].text.split()) < len(words)


def test_text_completion_stream(client: openai.OpenAI) -> None:
    chunks = list(client.completions.create(model="rbee-fake", prompt="x", max_tokens=4,
                                            stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices).split().__len__() == 4


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "model_not_found"


def test_out_of_range_temperature_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="rbee-fake", temperature=3.5,
                                       messages=[{"role": "user", "content": "x"}])
    assert info.value.body is not None and "temperature" in str(info.value.body)
