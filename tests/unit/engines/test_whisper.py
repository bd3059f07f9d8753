"""The faster-whisper adapter's pure parts: rbee's device strings to CTranslate2's, the
model folder from a model.bin path, and a clear error for a folder without a model."""

from __future__ import annotations

from pathlib import Path

import pytest

from rbee.core.errors import EngineError
from rbee.engines.whisper import WhisperTranscriber, device_args, model_folder


def test_devices() -> None:
    assert device_args("cpu") == ("cpu", 0, "int8")
    assert device_args("cuda:1") == ("cuda", 1, "float16")
    assert device_args("cuda") == ("cuda", 0, "float16")
    with pytest.raises(EngineError, match="metal"):
        device_args("metal")


def test_model_folder() -> None:
    assert model_folder("/m/tiny/model.bin") == Path("/m/tiny")
    assert model_folder("/m/faster-whisper-small") == Path("/m/faster-whisper-small")


def test_a_folder_without_a_model_fails_to_load(tmp_path: Path) -> None:
    engine = WhisperTranscriber(str(tmp_path / "whisper-x"))
    with pytest.raises(EngineError, match="no CTranslate2 Whisper model"):
        engine.load(lambda _f, _s: None)
    assert engine.languages == ("en",)
