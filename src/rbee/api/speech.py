"""OpenAI's speech request (POST /v1/audio/speech); the answer is the audio itself.

Every check here is a 400 naming its field: `input` (empty, or over OpenAI's 4096 characters),
`response_format` (one of OpenAI's six), `speed` (0.25 to 4.0), `voice` (a name; which names
exist is the worker's to say, as only it knows its model's voices).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rbee.api.openai import ModelName

MAX_INPUT_CHARS = 4096  # OpenAI's own limit
AudioFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
AUDIO_FORMATS: tuple[AudioFormat, ...] = ("mp3", "opus", "aac", "flac", "wav", "pcm")
# Content types as OpenAI sends them.
MEDIA_TYPES: dict[AudioFormat, str] = {
    "mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
    "wav": "audio/wav", "pcm": "audio/pcm"}
# OpenAI's `pcm`: raw 24 kHz, 16-bit signed little-endian, mono.
PCM_RATE = 24_000


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: ModelName = Field(min_length=1, max_length=512)
    input: str = Field(description=f"the text to speak, 1 to {MAX_INPUT_CHARS} characters")
    voice: str = Field(min_length=1, max_length=128, description="a voice of the model "
                       "(or one of OpenAI's names: alloy, echo, …, which mean its default)")
    response_format: str = Field(default="mp3", description="mp3, opus, aac, flac, wav or pcm "
                                 "(24 kHz 16-bit mono little-endian)")
    speed: float = Field(default=1.0, ge=0.25, le=4.0, description="0.25 to 4.0; 1 is the "
                         "voice's own pace")
    # Honoured by no Piper voice: a 400 naming it, not dropped in silence (as chat's fields).
    instructions: str | None = Field(default=None, max_length=4096)
    stream_format: Literal["audio"] = Field(default="audio", description="audio only (the "
                                            "bytes stream as they are made); not sse")

    @field_validator("instructions")
    @classmethod
    def _instructions(cls, value: str | None) -> str | None:
        if value:
            raise ValueError("is not supported: rbee's speech models take no instructions "
                             "on how to speak (leave it out)")
        return value

    @field_validator("input")
    @classmethod
    def _input(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        if len(value) > MAX_INPUT_CHARS:
            raise ValueError(f"is {len(value)} characters; at most {MAX_INPUT_CHARS} are "
                             "allowed: split the text over several requests")
        return value

    @field_validator("response_format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in AUDIO_FORMATS:
            raise ValueError(f"{value[:40]!r} is not one of {', '.join(AUDIO_FORMATS)}")
        return value

    @field_validator("speed", mode="before")
    @classmethod
    def _speed(cls, value: object) -> object:
        # strict mode refuses an integer; OpenAI's clients send `speed=1` as often as 1.0.
        return float(value) if type(value) is int else value

    def audio_format(self) -> AudioFormat:
        return self.response_format  # type: ignore[return-value]  # checked by _format
