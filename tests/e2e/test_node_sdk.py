"""Issue 11 through the official OpenAI Node SDK (pinned in tests/e2e/node/package-lock.json)
against a queen serving the real SmolLM2 model: a streamed chat completion, tool calls and
json_schema structured outputs (20 runs each), an agent loop and the Responses API; and, with
the built-in MiniLM and Piper models, embeddings (the SDK's base64 default and float) and
speech (whole and streamed). The Node
script (tests/e2e/node/sdk.mjs) prints what the SDK returned; the assertions are here.

The SDK is installed once per lock file into ~/.cache/rbee-tests/node. No node or npm, or a
registry that cannot be reached, fails the test: it is never skipped."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from rbee.engines.onnx_embedding import OnnxEmbedder
from rbee.models.catalog import builtin_path, builtin_tokenizer_path
from tests.support.daemons import Daemon, rbee_env, running_queen

pytestmark = [pytest.mark.e2e, pytest.mark.model]
MODEL = "smollm2-135m-instruct"
NODE_DIR = Path(__file__).parent / "node"
MANIFESTS = ("package.json", "package-lock.json")


class WeatherArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: str
    unit: Literal["celsius", "fahrenheit"]


class Pet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=40)
    species: Literal["cat", "dog", "bird"]
    age: int
    toys: list[Annotated[str, Field(max_length=30)]] = Field(max_length=3)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not on PATH: run scripts/system-deps.sh (as root) to install "
                    "nodejs and npm")
    return found


def _sdk_modules() -> Path:
    """node_modules with the pinned SDK, installed once per lock file (atomically, so two
    test runs never see a half-installed folder)."""
    digest = hashlib.sha256(b"".join((NODE_DIR / m).read_bytes() for m in MANIFESTS))
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rbee-tests"
    done = cache / "node" / digest.hexdigest()[:16]
    if (done / "node_modules" / "openai" / "package.json").exists():
        return done / "node_modules"
    staging = done.with_name(f"{done.name}.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for m in MANIFESTS:
        shutil.copy(NODE_DIR / m, staging / m)
    try:
        npm = subprocess.run([_tool("npm"), "install", "--no-audit", "--no-fund"],
                             cwd=staging, capture_output=True, text=True, timeout=300,
                             check=False)
        if npm.returncode != 0:
            pytest.fail(f"npm install of the OpenAI Node SDK failed (is the npm registry "
                        f"reachable?):\n{npm.stderr[-2000:]}")
        staging.rename(done)
    except OSError:  # another run finished first: use its copy
        pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return done / "node_modules"


@pytest.fixture(scope="module")
def queen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    yield from running_queen(rbee_env(tmp_path_factory.mktemp("node-sdk"),
                                      RBEE_QUEEN_WORKER_THREADS="1"))


@pytest.fixture(scope="module")
def node_modules() -> Path:
    return _sdk_modules()


@pytest.fixture(scope="module")
def sdk_run(node_modules: Path, queen: Daemon, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, Any]:
    """Run sdk.mjs once for the module: ESM resolves `openai` next to the script, so the
    script is copied beside a link to the cached node_modules."""
    work = tmp_path_factory.mktemp("node-run")
    (work / "node_modules").symlink_to(node_modules, target_is_directory=True)
    shutil.copy(NODE_DIR / "sdk.mjs", work / "sdk.mjs")
    env = {**os.environ, "RBEE_BASE_URL": f"{queen.url}/v1", "RBEE_MODEL": MODEL,
           "RBEE_RUNS": "20"}
    done = subprocess.run([_tool("node"), "sdk.mjs"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=280, check=False)
    assert done.returncode == 0, f"sdk.mjs failed:\n{done.stderr[-4000:]}"
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def test_the_pinned_sdk_ran(sdk_run: dict[str, Any]) -> None:
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    assert sdk_run["sdk"] == lock["packages"]["node_modules/openai"]["version"]
    assert MODEL in sdk_run["models"]


def test_a_streamed_chat_completion(sdk_run: dict[str, Any]) -> None:
    stream = sdk_run["stream"]
    assert stream["text"].strip() and stream["chunks"] > 3
    assert stream["finish_reason"] in ("stop", "length")
    assert stream["usage"]["completion_tokens"] > 0 and stream["usage"]["prompt_tokens"] > 0


def test_tool_calls_are_valid_every_time(sdk_run: dict[str, Any]) -> None:
    assert len(sdk_run["tools"]) == 20
    for i, run in enumerate(sdk_run["tools"]):
        assert run["finish_reason"] == "tool_calls", (i, run)
        calls = run["message"]["tool_calls"]
        assert calls, (i, run)
        for call in calls:
            assert call["type"] == "function" and call["id"].startswith("call_")
            assert call["function"]["name"] == "get_weather"
            WeatherArgs.model_validate_json(call["function"]["arguments"])


def test_structured_outputs_validate_every_time(sdk_run: dict[str, Any]) -> None:
    assert len(sdk_run["structured"]) == 20
    for i, run in enumerate(sdk_run["structured"]):
        assert run["finish_reason"] == "stop", (i, run)
        pet = Pet.model_validate_json(run["content"])
        assert Pet.model_validate(run["parsed"]) == pet  # the SDK's .parse() agrees


def test_an_agent_loop(sdk_run: dict[str, Any]) -> None:
    agent = sdk_run["agent"]
    WeatherArgs.model_validate_json(agent["call"]["function"]["arguments"])
    assert agent["final_reason"] in ("stop", "length")
    assert agent["final"]["content"].strip() and not agent["final"].get("tool_calls")


def test_the_responses_api(sdk_run: dict[str, Any]) -> None:
    responses = sdk_run["responses"]
    plain = responses["plain"]
    assert plain["id"].startswith("resp_") and plain["output_text"].strip()
    assert plain["status"] in ("completed", "incomplete") and plain["usage"]["input_tokens"] > 0
    calls = [o for o in responses["tool"]["output"] if o["type"] == "function_call"]
    assert calls and calls[0]["name"] == "get_weather"
    WeatherArgs.model_validate_json(calls[0]["arguments"])
    assert responses["json"]["status"] == "completed"
    Pet.model_validate_json(responses["json"]["output_text"])


def test_embeddings_base64_and_float_are_the_engines_vectors(sdk_run: dict[str, Any]) -> None:
    got = sdk_run["embeddings"]
    assert got["model"] == "all-minilm-l6-v2"
    engine = OnnxEmbedder(str(builtin_path(got["model"])),
                          str(builtin_tokenizer_path(got["model"])))
    engine.load(lambda _f, _s: None)
    try:
        ids = engine.tokenize(["cat", "kitten", "GPU"])
        want = engine.embed(ids)
    finally:
        engine.close()
    assert got["usage"]["prompt_tokens"] == sum(map(len, ids))
    for vectors in (got["base64"], got["float"]):
        for v, w in zip(vectors, want, strict=True):
            assert len(v) == 384 and max(abs(a - b) for a, b in zip(v, w, strict=True)) < 1e-6
    cat, kitten, gpu = got["float"]

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert math.isclose(cos(cat, cat), 1.0, rel_tol=1e-5)
    assert cos(cat, kitten) > cos(cat, gpu) + 0.3


def test_speech_whole_and_streamed(sdk_run: dict[str, Any]) -> None:
    got = sdk_run["speech"]
    assert got["content_type"] == "audio/wav"
    wav = base64.b64decode(got["wav_b64"])
    with wave.open(io.BytesIO(wav)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24_000)
    seconds = (len(wav) - 44) / 2 / 24_000
    assert 2.0 < seconds < 12.0  # 15 words of speech
    assert got["pcm_chunks"] >= 2  # read as it came, not as one buffer
    assert abs(got["pcm_bytes"] - (len(wav) - 44)) < 0.1 * len(wav)
