"""Speech audio encoding: resampling, the streamed WAV header, pcm as is."""

from __future__ import annotations

import io
import struct
import wave

from rbee.worker.audio import PcmEncoder, WavEncoder, resample, wav_header


def test_resample_keeps_duration_and_shape() -> None:
    ramp = struct.pack("<4h", 0, 100, 200, 300)
    out = resample(ramp, 16_000, 24_000)
    assert len(out) // 2 == 6
    values = struct.unpack("<6h", out)
    assert values[0] == 0 and list(values) == sorted(values)
    assert resample(ramp, 24_000) == ramp


def test_a_whole_wav_reads_back() -> None:
    data = struct.pack("<3h", 1, -1, 5)
    with wave.open(io.BytesIO(wav_header(size=len(data)) + data)) as w:
        assert w.getframerate() == 24_000 and w.readframes(3) == data


def test_the_streamed_header_goes_once_and_empty_audio_is_still_a_wav() -> None:
    enc = WavEncoder()
    assert enc.add(b"\x01\x00")[:4] == b"RIFF"
    assert enc.add(b"\x02\x00") == b"\x02\x00" and enc.finish() == b""
    empty = WavEncoder().finish()
    with wave.open(io.BytesIO(empty)) as w:
        assert w.getnframes() == 0
    assert PcmEncoder().add(b"ab") == b"ab"
