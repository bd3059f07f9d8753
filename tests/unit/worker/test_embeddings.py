"""The worker's /v1/embeddings: batched, exact usage, the window and vocabulary checked
before anything runs, and a worker of the other kind saying what it does."""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx

from rbee.api.cluster import DEADLINE_HEADER
from rbee.api.embeddings import decode_base64
from rbee.engines.fake import FakeEngine
from rbee.engines.fake_embedding import DIMENSIONS, VOCAB_SIZE, WINDOW, FakeEmbedder
from rbee.worker.app import create_app
from rbee.worker.runtime import Runtime


async def _client(engine: FakeEmbedder | FakeEngine) -> httpx.AsyncClient:
    runtime = Runtime(engine)
    await runtime.load_engine()
    app = create_app(runtime, model="emb")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w")


async def test_a_list_is_one_batch_with_exact_usage() -> None:
    engine = FakeEmbedder()
    async with await _client(engine) as client:
        r = await client.post("/v1/embeddings", json={"model": "emb",
                                                      "input": ["a b", "c", "a b"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert engine.batches == [3]
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert body["data"][0]["embedding"] == body["data"][2]["embedding"]
    assert len(body["data"][0]["embedding"]) == DIMENSIONS
    # "a b" is [CLS] a b [SEP]: 4 tokens, "c" 3: what the model read, specials included
    assert body["usage"] == {"prompt_tokens": 11, "total_tokens": 11}
    assert body["model"] == "emb" and body["object"] == "list"


async def test_base64_decodes_to_the_float_answer() -> None:
    async with await _client(FakeEmbedder()) as client:
        floats = (await client.post("/v1/embeddings", json={"model": "emb", "input": "x y"}
                                    )).json()["data"][0]["embedding"]
        b64 = (await client.post("/v1/embeddings", json={
            "model": "emb", "input": "x y", "encoding_format": "base64"})).json()
    assert decode_base64(b64["data"][0]["embedding"]) == floats  # float32 values: exact


async def test_token_ids_are_read_as_the_model_reads_text() -> None:
    engine = FakeEmbedder()
    ids = engine.tokenize(["hello world"])[0][1:-1]
    async with await _client(engine) as client:
        by_text = (await client.post("/v1/embeddings", json={"model": "emb",
                                                             "input": "hello world"})).json()
        by_ids = (await client.post("/v1/embeddings", json={"model": "emb", "input": ids})
                  ).json()
        bad = await client.post("/v1/embeddings", json={"model": "emb",
                                                        "input": [[1], [VOCAB_SIZE]]})
    assert by_ids["data"][0]["embedding"] == by_text["data"][0]["embedding"]
    assert by_ids["usage"] == by_text["usage"]
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"
    assert "input[1]" in bad.json()["error"]["message"]


async def test_too_long_is_a_400_naming_the_limit_and_the_input() -> None:
    engine = FakeEmbedder()
    long = " ".join(["w"] * WINDOW)  # + 2 special tokens: over the window
    async with await _client(engine) as client:
        r = await client.post("/v1/embeddings", json={"model": "emb",
                                                      "input": ["short", long]})
        fits = await client.post("/v1/embeddings", json={
            "model": "emb", "input": " ".join(["w"] * (WINDOW - 2))})
    err = r.json()["error"]
    assert r.status_code == 400 and err["code"] == "context_length_exceeded"
    assert err["param"] == "input" and "input[1]" in err["message"]
    assert f"at most {WINDOW} tokens" in err["message"]
    assert engine.batches == [1]  # the refused request ran nothing
    assert fits.status_code == 200


async def test_dimensions_other_than_the_models_are_refused() -> None:
    async with await _client(FakeEmbedder()) as client:
        same = await client.post("/v1/embeddings", json={"model": "emb", "input": "x",
                                                         "dimensions": DIMENSIONS})
        fewer = await client.post("/v1/embeddings", json={"model": "emb", "input": "x",
                                                          "dimensions": 8})
    assert same.status_code == 200
    assert fewer.status_code == 400 and fewer.json()["error"]["param"] == "dimensions"
    assert str(DIMENSIONS) in fewer.json()["error"]["message"]


async def test_each_kind_of_worker_refuses_the_other_kinds_requests() -> None:
    async with await _client(FakeEmbedder()) as client:
        chat = await client.post("/v1/chat/completions", json={
            "model": "emb", "messages": [{"role": "user", "content": "hi"}]})
    async with await _client(FakeEngine()) as client:
        emb = await client.post("/v1/embeddings", json={"model": "m", "input": "hi"})
    assert chat.status_code == 400 and chat.json()["error"]["code"] == "wrong_model_kind"
    assert "embeddings" in chat.json()["error"]["message"]
    assert emb.status_code == 400 and emb.json()["error"]["code"] == "wrong_model_kind"


async def test_a_loading_worker_refuses_with_503() -> None:
    app = create_app(Runtime(FakeEmbedder()), model="emb")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://w") as client:
        r = await client.post("/v1/embeddings", json={"model": "emb", "input": "x"})
    assert r.status_code == 503


class SlowEmbedder(FakeEmbedder):
    def embed(self, batch: Sequence[Sequence[int]]) -> list[list[float]]:
        time.sleep(0.5)
        return super().embed(batch)


async def test_the_queens_deadline_ends_an_embedding_request() -> None:
    async with await _client(SlowEmbedder()) as client:
        started = time.monotonic()
        r = await client.post("/v1/embeddings", json={"model": "emb", "input": "x"},
                              headers={DEADLINE_HEADER: "0.1"})
    assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
    assert time.monotonic() - started < 0.45
