"""Speech audio on the worker: an engine's samples to the format asked for, chunk by chunk.

Every format is made from 24 kHz 16-bit mono (OpenAI's own rate: its `pcm` is exactly that),
so an engine's rate is resampled first. `wav` and `pcm` are written here; mp3, opus (in Ogg),
aac (ADTS) and flac are encoded by PyAV (ffmpeg's codecs), imported only when asked for. Each
`add` returns the bytes ready so far, so audio streams as it is made.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rbee.api.speech import PCM_RATE, AudioFormat
from rbee.core.errors import InvalidRequest

if TYPE_CHECKING:
    from numpy.typing import NDArray

# PyAV container and codec per format.
_AV_FORMATS: dict[AudioFormat, tuple[str, str]] = {
    "mp3": ("mp3", "libmp3lame"), "opus": ("ogg", "libopus"), "aac": ("adts", "aac"),
    "flac": ("flac", "flac")}
# A streamed WAV's length is not known when its header goes out: the largest sizes stand in,
# as OpenAI's streamed WAVs do; readers take the data to the end of the file.
_UNKNOWN = 0xFFFFFFFF


def resample(samples: bytes, rate: int, to: int = PCM_RATE) -> bytes:
    """16-bit mono samples at `rate` as samples at `to` (linear interpolation)."""
    if rate == to or not samples:
        return samples
    x = np.frombuffer(samples, dtype="<i2").astype(np.float64)
    n = round(len(x) * to / rate)
    at = np.arange(n) * (rate / to)
    out: NDArray[Any] = np.interp(at, np.arange(len(x)), x)
    return bytes(np.clip(np.round(out), -32768, 32767).astype("<i2").tobytes())


def wav_header(rate: int = PCM_RATE, size: int = _UNKNOWN) -> bytes:
    """A RIFF/WAVE header for 16-bit mono PCM of `size` data bytes."""
    riff = _UNKNOWN if size == _UNKNOWN else 36 + size
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", size))


class Encoder(Protocol):
    def add(self, pcm: bytes) -> bytes:
        """24 kHz 16-bit mono samples in; the encoded bytes ready so far out."""
        ...

    def finish(self) -> bytes:
        """The encoded bytes left once every sample is in."""
        ...


class PcmEncoder:
    def add(self, pcm: bytes) -> bytes:
        return pcm

    def finish(self) -> bytes:
        return b""


class WavEncoder:
    def __init__(self) -> None:
        self._started = False

    def add(self, pcm: bytes) -> bytes:
        if self._started:
            return pcm
        self._started = True
        return wav_header() + pcm

    def finish(self) -> bytes:
        return b"" if self._started else wav_header(size=0)


class _Sink:
    """The file PyAV writes to: what it wrote since last taken."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class AvEncoder:
    def __init__(self, audio_format: AudioFormat) -> None:
        import av  # ~0.1 s: only for the formats that need it

        container, codec = _AV_FORMATS[audio_format]
        self._av = av
        self._sink = _Sink()
        self._out = av.open(self._sink, mode="w", format=container)
        stream: Any = self._out.add_stream(codec, rate=PCM_RATE)
        stream.layout = "mono"
        self._stream = stream

    def add(self, pcm: bytes) -> bytes:
        if pcm:
            samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
            frame = self._av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate = PCM_RATE
            for packet in self._stream.encode(frame):
                self._out.mux(packet)
        return self._sink.take()

    def finish(self) -> bytes:
        for packet in self._stream.encode(None):
            self._out.mux(packet)
        self._out.close()
        return self._sink.take()


def av_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("av") is not None


def encoder(audio_format: AudioFormat) -> Encoder:
    """An encoder for `audio_format`; a 400 naming response_format when it can't be made."""
    if audio_format == "pcm":
        return PcmEncoder()
    if audio_format == "wav":
        return WavEncoder()
    if not av_available():
        raise InvalidRequest(f"response_format {audio_format} needs PyAV, which is not "
                             "installed on this worker's machine (pip install 'rbee[speech]'); "
                             "wav and pcm need nothing", param="response_format")
    return AvEncoder(audio_format)
