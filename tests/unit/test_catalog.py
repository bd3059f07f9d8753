from __future__ import annotations

import pytest

from rbee.core.errors import InvalidRequest, ModelNotFound
from rbee.models.catalog import DEFAULT_MODEL, builtin_path, parse_ref


@pytest.mark.parametrize("text", ["", "default", "smollm2", "smollm2:135m", DEFAULT_MODEL])
def test_aliases_resolve_to_the_default_builtin(text: str) -> None:
    ref = parse_ref(text)
    assert (ref.source, ref.name, ref.engine) == ("builtin", DEFAULT_MODEL, "llama_cpp")


def test_fake_builtin_needs_no_weights() -> None:
    ref = parse_ref("rbee-fake")
    assert ref.engine == "fake" and builtin_path("rbee-fake") is None


def test_file_reference() -> None:
    ref = parse_ref("file:/models/x.gguf")
    assert (ref.source, ref.path, ref.engine) == ("file", "/models/x.gguf", "llama_cpp")


def test_hf_reference() -> None:
    ref = parse_ref("hf:org/repo:sub/model.Q4.gguf")
    assert (ref.repo, ref.filename, ref.name) == ("org/repo", "sub/model.Q4.gguf",
                                                  "hf:org/repo:sub/model.Q4.gguf")


# (hf:org/repo, a whole repository, is a diffusers pipeline: tests/unit/queen/test_video_workers)
@pytest.mark.parametrize("text", ["file:rel.gguf", "hf:bad:x.gguf",
                                  "hf:org/repo:../x.gguf", "hf:org/repo:x.safetensors",
                                  "file:/x.bin"])
def test_malformed_references_are_invalid(text: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_ref(text)


@pytest.mark.parametrize("text", ["gpt-4", "llama3", "../../etc/passwd"])
def test_unknown_names_are_model_not_found(text: str) -> None:
    with pytest.raises(ModelNotFound) as info:
        parse_ref(text)
    assert info.value.http_status == 404 and info.value.code == "model_not_found"


def test_default_model_ships_in_a_package() -> None:
    path = builtin_path(DEFAULT_MODEL)
    assert path is not None and path.stat().st_size > 50_000_000


def test_embedding_builtins_say_what_they_do() -> None:
    from rbee.core.errors import WrongModelKind
    from rbee.models.catalog import require_kind

    assert parse_ref("minilm").name == "all-minilm-l6-v2"
    assert parse_ref("minilm").kind == "embedding" and parse_ref("minilm").engine == "onnx"
    assert parse_ref("rbee-fake-embedding").kind == "embedding"
    assert parse_ref("rbee-fake").kind == "chat"
    with pytest.raises(WrongModelKind) as info:
        require_kind(parse_ref("minilm"), "chat")
    assert "is an embedding model" in info.value.message and info.value.param == "model"
    with pytest.raises(WrongModelKind) as info:
        require_kind(parse_ref("rbee-fake"), "embedding")
    assert "is a chat model" in info.value.message
