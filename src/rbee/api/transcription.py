"""OpenAI's transcription and translation requests (POST /v1/audio/transcriptions and
/v1/audio/translations): multipart forms whose fields are strings.

Every check is a 400 naming its field: `response_format` (OpenAI's five), `temperature`
(0 to 1), `language` (an ISO-639-1 code; which languages a model reads is its worker's to
say), `prompt` (at most MAX_PROMPT_CHARS), `timestamp_granularities` (word, segment; only
with verbose_json, as OpenAI requires), `stream` (not with srt, vtt or verbose_json).
The file itself is `web.uploads`'s; its decoding is the worker's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rbee.api.openai import ModelName
from rbee.core.errors import InvalidRequest
from rbee.web.body import describe_errors

TranscriptFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
TRANSCRIPT_FORMATS: tuple[TranscriptFormat, ...] = ("json", "text", "srt", "verbose_json",
                                                    "vtt")
# What each answer is sent as (OpenAI sends text/plain for text, srt and vtt).
TRANSCRIPT_MEDIA_TYPES: dict[TranscriptFormat, str] = {
    "json": "application/json", "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8", "srt": "text/plain; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8"}
Task = Literal["transcribe", "translate"]
Granularity = Literal["word", "segment"]
MAX_PROMPT_CHARS = 4096  # Whisper reads the last 224 tokens of it; more is a client's mistake
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
# rbee's own form field, queen to worker: the limit on the audio's length, which only
# decoding knows (the worker takes the lesser of it and its own).
MAX_AUDIO_FIELD = "max_audio_seconds"
# Form fields the SDK sends as arrays ("name[]"), each kept as a list.
LIST_FIELDS = ("timestamp_granularities", "include", "languages", "keywords",
               "known_speaker_names", "known_speaker_references")
# OpenAI's fields no Whisper model honours: a 400 naming each, never ignored in silence.
UNSUPPORTED = {
    "languages": "is for gpt-transcribe; Whisper takes one `language`",
    "keywords": "is for gpt-transcribe; Whisper takes a `prompt` to bias its spelling",
    "known_speaker_names": "needs a diarizing model; Whisper does not tell speakers apart",
    "known_speaker_references": "needs a diarizing model; Whisper does not tell speakers "
                                "apart"}


def _segments() -> list[Granularity]:
    return ["segment"]


class TranscriptionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: ModelName = Field(min_length=1, max_length=512)
    language: str | None = Field(default=None, description="ISO-639-1 code of the speech "
                                 "(transcriptions only; translations are to English)")
    prompt: str | None = Field(default=None, description="text to continue, in the audio's "
                               f"language; at most {MAX_PROMPT_CHARS} characters")
    response_format: str = Field(default="json", description="json, text, srt, verbose_json "
                                 "or vtt")
    temperature: float = Field(default=0.0, ge=0.0, le=1.0, description="0 to 1; 0 lets "
                               "the model raise it where decoding fails (OpenAI's meaning)")
    timestamp_granularities: list[Granularity] = Field(
        default_factory=_segments, description="word and/or segment; with "
        "verbose_json")
    stream: bool = Field(default=False, description="transcript.text.delta events as the "
                         "text is made (json and text formats)")
    include: list[Literal["logprobs"]] = Field(default_factory=list)
    chunking_strategy: Literal["auto"] | None = Field(
        default=None, description='"auto": voice activity detection cuts the audio at its '
        "silences first (faster-whisper's VAD filter); server_vad settings are not taken")

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is not None and not _LANGUAGE.match(value):
            raise ValueError("must be an ISO-639-1 code such as en or fr")
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str | None) -> str | None:
        if value is not None and len(value) > MAX_PROMPT_CHARS:
            raise ValueError(f"is {len(value)} characters; at most {MAX_PROMPT_CHARS} are "
                             "allowed")
        return value

    @field_validator("response_format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in TRANSCRIPT_FORMATS:
            raise ValueError(f"{value[:40]!r} is not one of {', '.join(TRANSCRIPT_FORMATS)}")
        return value

    @field_validator("include")
    @classmethod
    def _include(cls, value: list[str]) -> list[str]:
        if value:
            raise ValueError("is not supported: rbee's Whisper models return no logprobs")
        return value

    def transcript_format(self) -> TranscriptFormat:
        return self.response_format  # type: ignore[return-value]  # checked by _format

    def words(self) -> bool:
        return "word" in self.timestamp_granularities


def from_form(fields: Mapping[str, Sequence[str]], task: Task) -> TranscriptionRequest:
    """The request from a form's text fields (each field's last value; `name[]` fields as
    lists); any failure a 400 naming the field."""
    values: dict[str, object] = {}
    for raw_name, items in fields.items():
        name = raw_name.removesuffix("[]")
        values[name] = list(items) if name in LIST_FIELDS else items[-1]
    for name, why in UNSUPPORTED.items():
        if name in values:
            raise InvalidRequest(f"{name} is not supported: it {why}", param=name)
    if task == "translate":
        # OpenAI's translation takes no language (the output is English) and no streaming.
        for name in ("language", "stream", "timestamp_granularities", "include",
                     "chunking_strategy"):
            if name in values:
                raise InvalidRequest(f"{name} is not a field of a translation request",
                                     param=name)
    try:
        body = TranscriptionRequest.model_validate(values)
    except ValidationError as exc:
        message, param = describe_errors(exc.errors(include_url=False))
        raise InvalidRequest(message, param=param) from None
    fmt = body.transcript_format()
    if body.stream and fmt not in ("json", "text"):
        raise InvalidRequest(f"stream is not supported with response_format {fmt}: use json "
                             "or text", param="stream")
    if body.timestamp_granularities != ["segment"] and fmt != "verbose_json":
        raise InvalidRequest("timestamp_granularities needs response_format verbose_json",
                             param="timestamp_granularities")
    return body


def to_form(body: TranscriptionRequest, task: Task) -> list[tuple[str, str]]:
    """The validated request as form fields again (the queen's form to a worker)."""
    fields = [("model", body.model), ("response_format", body.response_format),
              ("temperature", repr(body.temperature))]
    if body.prompt is not None:
        fields.append(("prompt", body.prompt))
    if body.chunking_strategy is not None:
        fields.append(("chunking_strategy", body.chunking_strategy))
    if task == "transcribe":
        fields.append(("stream", str(body.stream).lower()))
        if body.language is not None:
            fields.append(("language", body.language))
        fields += [("timestamp_granularities[]", g) for g in body.timestamp_granularities]
    return fields
