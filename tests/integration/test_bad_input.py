"""Client mistakes get the OpenAI envelope with the right status, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"
MSG = [{"role": "user", "content": "hi"}]
JSON = {"content-type": "application/json"}
# Every route that takes a JSON body, with a body it would accept.
JSON_ROUTES = [
    (CHAT, {"model": "rbee-fake", "messages": MSG, "max_tokens": 1}),
    ("/v1/completions", {"model": "rbee-fake", "prompt": "hi", "max_tokens": 1}),
    ("/v1/jobs", {"operation": "status"}),
    ("/v1/scheduler/explain", {"model": "rbee-fake"}),
    ("/v1/hives/telemetry", {"hive_id": "x", "url": "http://127.0.0.1:1", "version": "0",
                             "pid": 1, "devices": [], "workers": []}),
]


def _envelope(r: httpx.Response, status: int, code: str | None = None) -> dict[str, object]:
    assert r.status_code == status, r.text
    err: dict[str, object] = r.json()["error"]
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
    ({"model": "rbee-fake", "messages": MSG, "n": 9}, "n"),  # above the default max_n 8
    ({"model": "rbee-fake", "messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"model": "rbee-fake", "messages": MSG, "stream": "yes please"}, "stream"),
    # Strict types: what the spec calls a boolean, number or integer is one, not coerced.
    ({"model": "rbee-fake", "messages": MSG, "stream": 0}, "stream"),
    ({"model": "rbee-fake", "messages": MSG, "stream": "true"}, "stream"),
    ({"model": "rbee-fake", "messages": MSG, "top_p": False}, "top_p"),
    ({"model": "rbee-fake", "messages": MSG, "temperature": "1"}, "temperature"),
    ({"model": "rbee-fake", "messages": MSG, "max_tokens": True}, "max_tokens"),
    ({"model": "rbee-fake", "messages": MSG, "max_tokens": 2.0}, "max_tokens"),
    ({"model": "rbee-fake", "messages": MSG, "n": True}, "n"),
    ({"model": "rbee-fake", "messages": MSG, "logprobs": 1}, "logprobs"),
    ({"model": "rbee-fake", "messages": MSG, "stream": True,
      "stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
    ({"model": "rbee-fake\n", "messages": MSG}, "model"),
    ({"model": "rbee-fake\x1b[2J", "messages": MSG}, "model"),
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


@pytest.mark.parametrize("path", [p for p, _ in JSON_ROUTES])
@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000,
                                 b'{"a":' * 100_000 + b"1" + b"}" * 100_000])
def test_deeply_nested_json_is_a_clean_400(http: httpx.Client, path: str, raw: bytes) -> None:
    """The job API parsed with json.loads (RecursionError: 500); every route shares one
    parser now."""
    _envelope(http.post(path, content=raw, headers=JSON), 400, "invalid_request")


def test_completions_type_checks_its_own_fields(http: httpx.Client) -> None:
    body = {"model": "rbee-fake", "prompt": "hi", "max_tokens": 1}
    for extra, param in (({"echo": 1}, "echo"), ({"logprobs": True}, "logprobs"),
                         ({"stream": 1}, "stream")):
        err = _envelope(http.post("/v1/completions", json={**body, **extra}), 400)
        assert err["param"] == param


def test_what_the_spec_allows_is_still_accepted(http: httpx.Client) -> None:
    """Strict, not stricter than OpenAI: an integer is a number, `stop` a string or a list,
    nullable fields take null."""
    body = {"model": "rbee-fake", "messages": MSG, "max_tokens": 2, "temperature": 1,
            "top_p": 1, "presence_penalty": 0, "stop": "zzz", "stream": None, "n": 1,
            "logprobs": False, "seed": 3}
    assert http.post(CHAT, json=body).status_code == 200, "chat"
    assert http.post(CHAT, json={**body, "stop": ["y", "z"]}).status_code == 200, "stop list"


@pytest.mark.parametrize("body", [
    {"operation": "infer", "prompt": "x", "stream": 0},
    {"operation": "infer", "prompt": "x", "top_p": False},
    {"operation": "infer", "prompt": "x", "model": "rbee-fake\nforged line"},
    {"operation": "worker_spawn", "model": "rbee-fake", "keep_warm": 1},
    {"operation": "worker_spawn", "model": "rbee-fake", "threads": "4"},
    {"operation": "worker_spawn", "model": "rbee-fake\r"},
    {"operation": "model_get", "model": "rbee-fake\u2028"},
    {"operation": "script_save", "name": "s", "source": "x", "activate": 1},
])
def test_job_operations_have_strict_types_too(http: httpx.Client, body: dict[str, object]
                                              ) -> None:
    before = len(http.get("/v1/jobs", params={"limit": 1000}).json()["data"])
    _envelope(http.post("/v1/jobs", json=body), 400, "invalid_request")
    assert len(http.get("/v1/jobs", params={"limit": 1000}).json()["data"]) == before


def test_a_model_name_with_control_characters_is_never_echoed(http: httpx.Client) -> None:
    for path, body in ((CHAT, {"model": "x\x1b]0;pwned\x07\n", "messages": MSG}),
                       ("/v1/scheduler/explain", {"model": "x\x1b]0;pwned\x07\n"})):
        r = http.post(path, json=body)
        err = _envelope(r, 400, "invalid_request")
        assert err["param"] == "model"
        assert "\x1b" not in r.text and "\\u001b" not in r.text and "pwned" not in r.text


@pytest.mark.parametrize(("path", "body"), JSON_ROUTES)
@pytest.mark.parametrize("content_type", [None, "text/plain", "text/plain; charset=utf-8",
                                          "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/xml",
                                          "application/jsonx", "text/json"])
def test_json_routes_refuse_other_content_types(http: httpx.Client, path: str,
                                                body: dict[str, object],
                                                content_type: str | None) -> None:
    """What a web page can send cross-origin without a preflight (text/plain, forms) must
    not drive the queen: 415 before the body is parsed, and nothing happens."""
    jobs = len(http.get("/v1/jobs", params={"limit": 1000}).json()["data"])
    headers = {"content-type": content_type} if content_type else {}
    r = http.post(path, content=json.dumps(body).encode(), headers=headers)
    err = _envelope(r, 415, "unsupported_media_type")
    assert err["type"] == "invalid_request_error"
    assert len(http.get("/v1/jobs", params={"limit": 1000}).json()["data"]) == jobs


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON;charset=UTF-8",
                                          "application/vnd.rbee+json"])
def test_json_content_types_with_parameters_are_accepted(http: httpx.Client,
                                                         content_type: str) -> None:
    for path, body in JSON_ROUTES[:4]:
        r = http.post(path, content=json.dumps(body).encode(),
                      headers={"content-type": content_type})
        assert r.status_code == 200, (path, r.text)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("path", "body"), JSON_ROUTES[:2])
def test_answers_have_no_null_system_fingerprint(http: httpx.Client, path: str,
                                                 body: dict[str, object], stream: bool) -> None:
    """The spec types `system_fingerprint` a string: rbee, having none, leaves it out."""
    r = http.post(path, json={**body, "stream": stream})
    assert r.status_code == 200, r.text
    if stream:
        frames = [json.loads(line[6:]) for line in r.text.splitlines()
                  if line.startswith("data: {")]
    else:
        frames = [r.json()]
    assert frames
    for frame in frames:
        assert isinstance(frame.get("system_fingerprint", ""), str), frame


def test_oversized_body_is_413(http: httpx.Client) -> None:
    big = {"model": "rbee-fake", "messages": [{"role": "user", "content": "x" * (9 * 2**20)}]}
    _envelope(http.post(CHAT, json=big), 413, "body_too_large")


def test_oversized_chunked_body_is_413(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
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
