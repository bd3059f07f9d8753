"""Transcription real-time factor through the queen vs the engine called directly.

Audio: the built-in voice (piper-joe) speaks a short and a long text once, in this process;
the WAV files are the inputs of both sides. Direct: `WhisperTranscriber` (whisper-tiny-en,
int8, 1 thread) in this process, timed from the WAV file on disk to the last segment
(decoding with rbee.worker.decode, as the worker does). Through the queen: the official
`openai` client uploads the same file to /v1/audio/transcriptions (a whisper worker with
`--threads 1`: RBEE_QUEEN_WORKER_THREADS=1), timed from the call to the answer; so the
queen's side adds the upload to the queen's disk, the relay, the form to the worker, its
spool and the JSON. The two alternate run by run; medians.

RTF = seconds taken / seconds of audio (below 1: faster than real time).

    .venv/bin/python bench/transcription.py [--quick] [--runs 5]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, median, table, tempdir
from tests.support.audio import wav_bytes
from tests.support.daemons import rbee_env, start_queen

from rbee.engines.base import TranscriptionOptions
from rbee.models.catalog import builtin_path
from rbee.worker.decode import BYTES_PER_SECOND, decode

SHORT = "Hello world, the orchestrator is running three workers."
LONG = (SHORT + " The queen routes every request to a worker, and the worker answers it. "
        "Nothing leaves this machine. A hive starts the workers and reports what its devices "
        "hold. The scheduler places each model where its memory fits, and unloads the idle "
        "ones when another model needs the room.")


def speak(text: str) -> bytes:
    from piper import PiperVoice

    voice = PiperVoice.load(str(builtin_path("piper-joe")))
    pcm = b"".join(c.audio_int16_bytes for c in voice.synthesize(text))
    return wav_bytes(pcm, int(voice.config.sample_rate))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = 2 if args.quick else args.runs
    header("Transcription: through the queen vs the engine directly", args.quick)
    from rbee.engines.whisper import WhisperTranscriber

    engine = WhisperTranscriber(str(builtin_path("whisper-tiny-en")), threads=1)
    engine.load(lambda _f, _s: None)
    with tempdir("rbee-bench-stt-") as root:
        clips = {}
        for name, text in (("short", SHORT), ("long", LONG)):
            path = root / f"{name}.wav"
            path.write_bytes(speak(text))
            clips[name] = path
        queen = start_queen(rbee_env(root / "rbee", RBEE_QUEEN_WORKER_THREADS="1"))
        try:
            client = openai.OpenAI(base_url=f"{queen.url}/v1", api_key="x", max_retries=0,
                                   timeout=300)
            client.audio.transcriptions.create(model="whisper-1", file=clips["short"])  # load
            rows = []
            for name, path in clips.items():
                audio = len(decode(path, max_seconds=3600, cancel=threading.Event())
                            ) / BYTES_PER_SECOND
                direct, queened = [], []
                for _ in range(runs):
                    t = time.perf_counter()
                    samples = decode(path, max_seconds=3600, cancel=threading.Event())
                    list(engine.transcribe(samples, TranscriptionOptions(), threading.Event()))
                    direct.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    client.audio.transcriptions.create(model="whisper-1", file=path)
                    queened.append(time.perf_counter() - t)
                d, q = median(direct), median(queened)
                rows.append((name, f"{audio:.2f}", f"{d:.3f}", f"{q:.3f}", f"{d / audio:.3f}",
                             f"{q / audio:.3f}", f"{(q - d) * 1000:.0f}"))
        finally:
            queen.stop()
    print(table(f"whisper-tiny-en, 1 thread, medians of {runs} alternating runs",
                ["clip", "audio s", "direct s", "queen s", "RTF direct", "RTF queen",
                 "queen adds ms"], rows))


if __name__ == "__main__":
    main()
