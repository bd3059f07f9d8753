"""Any audio container (wav, mp3, m4a, ogg, flac, webm, …) to 16 kHz mono int16, with PyAV.

PyAV's wheel bundles ffmpeg's demuxers and decoders, so what ffmpeg reads, rbee reads. The
length is checked while decoding (the worker decodes anyway, and only decoding knows it:
a header's duration may be missing or lie), so a file over the limit stops at the limit.
Anything ffmpeg cannot read is a 400 naming `file`.
"""

from __future__ import annotations

import threading
from pathlib import Path

from rbee.core.errors import DeadlineExceeded, InvalidRequest
from rbee.engines.base import TRANSCRIPTION_RATE

BYTES_PER_SECOND = TRANSCRIPTION_RATE * 2


def decode(path: Path, *, max_seconds: float, cancel: threading.Event) -> bytes:
    """The file's first audio stream as little-endian int16 mono at 16 kHz."""
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise InvalidRequest(f"the file is not audio that can be decoded ({_why(exc)}): "
                             "send wav, mp3, m4a, ogg, flac or webm", param="file") from None
    limit = int(max_seconds * BYTES_PER_SECOND)
    out = bytearray()
    with container:
        if not container.streams.audio:
            raise InvalidRequest("the file has no audio stream", param="file")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=TRANSCRIPTION_RATE)
        try:
            for frame in container.decode(container.streams.audio[0]):
                for piece in resampler.resample(frame):
                    out += piece.to_ndarray().tobytes()
                if len(out) > limit:
                    raise InvalidRequest(f"the audio is longer than {max_seconds:g} seconds, "
                                         "this server's limit: split it", param="file")
                if cancel.is_set():
                    raise DeadlineExceeded("the request ended while its audio was decoded")
            for piece in resampler.resample(None):
                out += piece.to_ndarray().tobytes()
        except (av.FFmpegError, ValueError) as exc:
            raise InvalidRequest(f"the audio is corrupt ({_why(exc)})", param="file") from None
    if not out:
        raise InvalidRequest("the file holds no audio", param="file")
    return bytes(out[:limit])


def _why(exc: Exception) -> str:
    return (str(exc) or type(exc).__name__)[:200]
