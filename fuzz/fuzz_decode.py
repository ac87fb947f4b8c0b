"""Coverage-guided fuzz target (atheris / libFuzzer) for the audio decode path.

``load_audio(bytes)`` must return finite float32 mono samples or raise ``AudioDecodeError``; any other
exception, a crash, a hang (``-timeout``) or runaway memory (``-rss_limit_mb``) is a bug. Usage::

    python fuzz/fuzz_decode.py --write-seeds SEEDS      # a few valid files in several formats
    python fuzz/fuzz_decode.py WORK SEEDS -max_total_time=60 -timeout=20 -rss_limit_mb=3072 -max_len=65536

libFuzzer writes new interesting inputs into the first folder (WORK) and a failing input as ``crash-*``
(or ``timeout-*`` / ``oom-*``) under ``-artifact_prefix``.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import atheris
import numpy as np
import soundfile as sf

with atheris.instrument_imports(include=["audiovec"]):
    from audiovec.audio import load_audio
    from audiovec.errors import AudioDecodeError

SEED_FORMATS = [
    ("pcm16.wav", "WAV", "PCM_16", 16000),
    ("float.wav", "WAV", "FLOAT", 22050),
    ("u8.wav", "WAV", "PCM_U8", 8000),
    ("clip.flac", "FLAC", "PCM_16", 44100),
    ("clip.mp3", "MP3", "MPEG_LAYER_III", 16000),
    ("clip.ogg", "OGG", "VORBIS", 16000),
    ("clip.opus", "OGG", "OPUS", 16000),
    ("clip.aiff", "AIFF", "PCM_24", 16000),
]


def test_one_input(data: bytes) -> None:
    try:
        wave = load_audio(data)
    except AudioDecodeError:
        return
    if wave.dtype != np.float32 or wave.ndim != 1 or wave.size == 0:
        raise AssertionError(f"bad output: dtype={wave.dtype} shape={wave.shape}")
    if not np.isfinite(wave).all():
        raise AssertionError("non-finite samples returned instead of an AudioDecodeError")


def write_seeds(folder: Path) -> list[Path]:
    """Small valid files (0.2 s of a chirp) in the formats libsndfile reads; FFmpeg-only ones come from
    the test corpus (tests/badaudio.py)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fmt, subtype, rate in SEED_FORMATS:
        t = np.arange(int(0.2 * rate)) / rate
        wave = (0.4 * np.sin(2 * np.pi * (200 + 2000 * t) * t)).astype(np.float32)
        buf = io.BytesIO()
        sf.write(buf, wave, rate, format=fmt, subtype=subtype)
        (folder / name).write_bytes(buf.getvalue())
        paths.append(folder / name)
    return paths


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "--write-seeds":
        for path in write_seeds(Path(argv[2])):
            print(path)
        return
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
