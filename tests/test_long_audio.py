"""A 2-hour recording is windowed and embedded in bounded memory: peak RSS does not grow with its length."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiovec.audio import SAMPLE_RATE
from audiovec.testing import fsdd_files, tiny_embedder

FILE_RATE = 8000  # FSDD's own rate: the streaming resampler runs too

# Streams the file through iter_windows, embeds each 30 s window with a tiny model and pools the window
# vectors (duration-weighted), then reports its own peak RSS.
STREAMER = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    import torch
    from audiovec.audio import iter_windows
    from audiovec.testing import tiny_embedder

    model = tiny_embedder()
    total, seconds, windows = 0.0, 0.0, 0
    with torch.inference_mode():
        for start, end, wave in iter_windows(sys.argv[1], window_seconds=30.0):
            vec = model.forward_audio(**model.featurize([wave]))[0].double().numpy()
            total = total + (end - start) * vec
            seconds, windows = end, windows + 1
    vector = total / np.linalg.norm(total)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "windows": windows, "peak_mb": peak_mb, "vector": vector.tolist()}))
    """
)


def write_long_wav(path: Path, seconds: int) -> Path:
    """Real speech (FSDD digits) tiled with quiet noise, written block by block (never whole in memory)."""
    clip = np.concatenate([sf.read(str(f), dtype="float32")[0] for f in fsdd_files()[::150][:20]])
    rng = np.random.default_rng(0)
    block = FILE_RATE * 60
    with sf.SoundFile(str(path), "w", FILE_RATE, 1, subtype="PCM_16") as out:
        for start in range(0, seconds * FILE_RATE, block):
            n = min(block, seconds * FILE_RATE - start)
            tiled = np.resize(np.roll(clip, start % clip.size), n)
            out.write(0.5 * tiled + rng.normal(0, 0.01, n).astype(np.float32))
    return path


def stream(path: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", STREAMER, str(path)], capture_output=True, text=True, timeout=3000
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_hours_in_bounded_memory(tmp_path: Path) -> None:
    short = stream(write_long_wav(tmp_path / "ten_minutes.wav", 10 * 60))
    long = stream(write_long_wav(tmp_path / "two_hours.wav", 2 * 3600))
    assert (short["windows"], long["windows"]) == (20, 240)
    assert long["seconds"] == pytest.approx(2 * 3600, abs=0.01)
    whole_mb = 2 * 3600 * SAMPLE_RATE * 4 / 2**20  # the decoded 2 h clip alone: ~440 MB
    growth = long["peak_mb"] - short["peak_mb"]
    print(f"peak RSS 10 min {short['peak_mb']:.0f} MB, 2 h {long['peak_mb']:.0f} MB, growth {growth:.0f} MB")
    assert growth < 0.1 * whole_mb
    for result in (short, long):
        vector = np.asarray(result["vector"])
        assert np.isfinite(vector).all() and abs(np.linalg.norm(vector) - 1) < 1e-6


@pytest.mark.slow
def test_streamed_vector_equals_encode_audio(tmp_path: Path) -> None:
    """The streaming path and encode_audio (whole decode, same windows) give the same vector."""
    path = write_long_wav(tmp_path / "four_minutes.wav", 4 * 60 + 7)
    streamed = np.asarray(stream(path)["vector"])
    whole = tiny_embedder().encode_audio(path)
    np.testing.assert_allclose(streamed, whole, atol=1e-5)
