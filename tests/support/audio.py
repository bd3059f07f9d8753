"""Audio files for transcription tests: WAV with the stdlib, other containers with PyAV."""

from __future__ import annotations

import io
import math
import wave
from array import array


def tone_wav(levels: list[float], rate: int = 16_000, pitch: float = 440.0) -> bytes:
    """A mono 16-bit WAV, one second per entry of `levels` (the sine's amplitude, 0 to 1)."""
    samples = array("h")
    for amplitude in levels:
        samples.extend(round(32767 * amplitude * math.sin(2 * math.pi * pitch * i / rate))
                       for i in range(rate))
    return wav_bytes(samples.tobytes(), rate)


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


# container -> (codec, sample format) PyAV writes it with
CODECS = {"mp3": ("libmp3lame", "s16p"), "ogg": ("libopus", "s16"),
          "flac": ("flac", "s16"), "webm": ("libopus", "s16"), "m4a": ("aac", "fltp")}


def reencode(wav: bytes, container: str) -> bytes:
    """`wav` in another container (mp3, ogg, flac, webm, m4a), encoded by PyAV."""
    import av

    codec, fmt = CODECS[container]
    out = io.BytesIO()
    with av.open(io.BytesIO(wav)) as src, av.open(
            out, "w", format={"m4a": "mp4", "ogg": "ogg"}.get(container, container)) as dst:
        rate = 48_000 if codec == "libopus" else 16_000  # Opus encodes at 48 kHz only
        stream = dst.add_stream(codec, rate=rate, layout="mono")
        resampler = av.AudioResampler(format=fmt, layout="mono", rate=rate)
        for frame in src.decode(audio=0):
            for piece in resampler.resample(frame):
                for packet in stream.encode(piece):
                    dst.mux(packet)
        for piece in resampler.resample(None):
            for packet in stream.encode(piece):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    return out.getvalue()
