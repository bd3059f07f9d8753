"""The built-in embedding model (all-MiniLM-L6-v2, int8 ONNX) through the queen, with the
official client: meaning, the same vectors as the engine gives directly, base64, the window."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import httpx
import openai
import pytest

from rbee.engines.onnx_embedding import OnnxEmbedder
from rbee.models.catalog import builtin_path, builtin_tokenizer_path
from tests.support.daemons import Daemon, rbee_env, run_cli, running_queen

pytestmark = [pytest.mark.e2e, pytest.mark.model]
MODEL = "all-minilm-l6-v2"
TEXTS = ["cat", "kitten", "GPU"]


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def queen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    if builtin_path(MODEL) is None or builtin_tokenizer_path(MODEL) is None:
        pytest.skip("all-minilm-l6-v2 is not installed (scripts/install.sh installs it)")
    yield from running_queen(rbee_env(tmp_path_factory.mktemp("minilm")))


@pytest.fixture(scope="module")
def client(queen: Daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{queen.url}/v1", api_key="unused", max_retries=0,
                         timeout=120)


@pytest.fixture(scope="module")
def direct() -> Iterator[OnnxEmbedder]:
    engine = OnnxEmbedder(str(builtin_path(MODEL)), str(builtin_tokenizer_path(MODEL)))
    engine.load(lambda _f, _s: None)
    yield engine
    engine.close()


def test_meaning_and_the_same_vectors_as_the_engine(client: openai.OpenAI,
                                                    direct: OnnxEmbedder) -> None:
    r = client.embeddings.create(model="minilm", input=TEXTS, encoding_format="float")
    cat, kitten, gpu = (d.embedding for d in r.data)
    assert len(cat) == 384 and math.isclose(_cos(cat, cat), 1.0, rel_tol=1e-5)
    assert _cos(cat, kitten) > _cos(cat, gpu) + 0.3
    expected = direct.embed(direct.tokenize(TEXTS))
    for got, want in zip((cat, kitten, gpu), expected, strict=True):
        assert max(abs(g - w) for g, w in zip(got, want, strict=True)) < 1e-6
    assert r.usage.prompt_tokens == sum(map(len, direct.tokenize(TEXTS)))
    assert r.model == MODEL


def test_base64_decodes_to_the_same_floats(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    default = client.embeddings.create(model=MODEL, input=TEXTS)  # base64 underneath
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]


def test_too_long_is_a_400_naming_the_window(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, input=["fine", "word " * 300])
    assert info.value.code == "context_length_exceeded"
    assert "input[1]" in info.value.message and "256 tokens" in info.value.message
    fits = client.embeddings.create(model=MODEL, input="word " * 254)  # + [CLS] [SEP]
    assert fits.usage.prompt_tokens == 256


def test_dimensions_other_than_384_are_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, input="x", dimensions=128)
    assert info.value.param == "dimensions" and "384" in info.value.message


def test_a_chat_request_to_it_says_what_it_does(client: openai.OpenAI, queen: Daemon) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "wrong_model_kind" and "embedding model" in info.value.message
    workers = httpx.get(f"{queen.url}/v1/workers", timeout=30).json()
    rows = workers if isinstance(workers, list) else workers.get("data", workers)
    kinds = {w["model"]: w["kind"] for w in rows}
    assert kinds[MODEL] == "embedding"


def test_the_cli(queen: Daemon) -> None:
    r = run_cli(queen.env, "embed", "cat", "kitten", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["model"] == MODEL and result["dimensions"] == 384
