"""Client mistakes get the OpenAI envelope with the right status, never a 500."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"
MSG = [{"role": "user", "content": "hi"}]


def _envelope(r: httpx.Response, status: int, code: str | None = None) -> dict[str, object]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code
    return err


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "rbee-fake"}, "messages"),
    ({"messages": MSG}, "model"),
    ({"model": "rbee-fake", "messages": "hi"}, "messages"),
    ({"model": "rbee-fake", "messages": []}, "messages"),
    ({"model": "rbee-fake", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ({"model": "rbee-fake", "messages": MSG, "max_tokens": 0}, "max_tokens"),
    ({"model": "rbee-fake", "messages": MSG, "max_tokens": "ten"}, "max_tokens"),
    ({"model": "rbee-fake", "messages": MSG, "top_p": 1.5}, "top_p"),
    ({"model": "rbee-fake", "messages": MSG, "temperature": -1}, "temperature"),
    ({"model": "rbee-fake", "messages": MSG, "n": 3}, "n"),
    ({"model": "rbee-fake", "messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"model": "rbee-fake", "messages": MSG, "stream": "yes please"}, "stream"),
])
def test_invalid_fields_are_400_with_param(http: httpx.Client, body: dict[str, object],
                                           param: str) -> None:
    err = _envelope(http.post(CHAT, json=body), 400, "invalid_request")
    assert err["param"] == param


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b"null", b"\xff\xfe", b'{"a":'])
def test_malformed_bodies_are_400(http: httpx.Client, raw: bytes) -> None:
    for path in (CHAT, "/v1/completions", "/v1/jobs"):
        _envelope(http.post(path, content=raw, headers={"content-type": "application/json"}),
                  400)


def test_deeply_nested_json_is_a_clean_400(http: httpx.Client) -> None:
    raw = b"[" * 100_000 + b"]" * 100_000
    r = http.post(CHAT, content=raw)
    assert r.status_code in (400, 413)
    _envelope(r, r.status_code)


def test_oversized_body_is_413(http: httpx.Client) -> None:
    big = {"model": "rbee-fake", "messages": [{"role": "user", "content": "x" * (9 * 2**20)}]}
    _envelope(http.post(CHAT, json=big), 413, "body_too_large")


def test_oversized_chunked_body_is_413(http: httpx.Client) -> None:
    def chunks() -> object:
        for _ in range(10):
            yield b"x" * 2**20

    _envelope(http.post(CHAT, content=chunks()), 413, "body_too_large")


@pytest.mark.parametrize("model", ["gpt-4", "llama3:8b", "../../etc/passwd"])
def test_unknown_models_are_404(http: httpx.Client, model: str) -> None:
    _envelope(http.post(CHAT, json={"model": model, "messages": MSG}), 404, "model_not_found")
    r = http.get(f"/v1/models/{model}")
    _envelope(r, 404, None if ".." in model else "model_not_found")


@pytest.mark.parametrize("model", ["file:relative/x.gguf", "hf:../../x:y.gguf", "hf:org/repo",
                                   "hf:org/repo:../../etc/passwd", "file:/etc/passwd"])
def test_hostile_model_references_are_rejected(http: httpx.Client, model: str) -> None:
    r = http.post(CHAT, json={"model": model, "messages": MSG})
    assert r.status_code in (400, 404)
    _envelope(r, r.status_code)


def test_missing_model_file_is_404(http: httpx.Client) -> None:
    _envelope(http.post(CHAT, json={"model": "file:/nonexistent/m.gguf", "messages": MSG}), 404,
              "model_not_found")


def test_unknown_operation_is_400_and_creates_no_job(http: httpx.Client) -> None:
    before = len(http.get("/v1/jobs", params={"limit": 1000}).json()["data"])
    for body in ({"operation": "rm_rf"}, {"operation": 7}, {"no": "operation"}):
        _envelope(http.post("/v1/jobs", json=body), 400, "unknown_operation")
    assert len(http.get("/v1/jobs", params={"limit": 1000}).json()["data"]) == before


def test_operation_fields_are_validated_at_submission(http: httpx.Client) -> None:
    _envelope(http.post("/v1/jobs", json={"operation": "infer"}), 400)
    _envelope(http.post("/v1/jobs", json={"operation": "infer", "prompt": "x", "messages": MSG}),
              400)
    _envelope(http.post("/v1/jobs", json={"operation": "worker_stop"}), 400)
    _envelope(http.post("/v1/jobs", json={"operation": "status", "surprise": 1}), 400)
    _envelope(http.post("/v1/jobs", json={"operation": "infer", "prompt": "x",
                                          "temperature": 9}), 400)


@pytest.mark.parametrize("path", ["/v1/jobs/job-nope", "/v1/jobs/job-nope/stream",
                                  "/v1/jobs/%3Cscript%3Ealert(1)"])
def test_unknown_job_is_404(http: httpx.Client, path: str) -> None:
    _envelope(http.get(path), 404, "job_not_found")


def test_cancel_unknown_job_is_404(http: httpx.Client) -> None:
    _envelope(http.delete("/v1/jobs/job-nope"), 404, "job_not_found")


def test_bad_last_event_id_is_400(http: httpx.Client) -> None:
    job = http.post("/v1/jobs", json={"operation": "status"}).json()["job_id"]
    _envelope(http.get(f"/v1/jobs/{job}/stream", headers={"Last-Event-ID": "abc"}), 400)


def test_unknown_path_and_method_use_the_envelope(http: httpx.Client) -> None:
    _envelope(http.get("/v1/nothing-here"), 404)
    _envelope(http.put(CHAT, json={}), 405)


def test_telemetry_from_an_unknown_hive_is_refused(http: httpx.Client) -> None:
    body = {"hive_id": "intruder", "url": "http://127.0.0.1:1", "version": "0", "pid": 1,
            "devices": [], "workers": []}
    _envelope(http.post("/v1/hives/telemetry", json=body), 401)
    body["hive_id"] = "localhost"
    _envelope(http.post("/v1/hives/telemetry", json=body), 401)
    assert [h for h in http.get("/v1/workers").json() if h["hive_id"] == "intruder"] == []


@pytest.mark.parametrize("query", ["limit=0", "limit=ten", "limit=100000"])
def test_invalid_query_parameters_are_400_with_param(http: httpx.Client, query: str) -> None:
    err = _envelope(http.get(f"/v1/jobs?{query}"), 400, "invalid_request")
    assert err["param"] == "limit" and "limit" in str(err["message"])
