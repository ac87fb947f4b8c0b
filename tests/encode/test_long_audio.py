"""Long recordings are embedded window batch by window batch: the same vector as decoding them whole, in
memory that does not grow with their length, and a failure mid-stream is a decode error like any other."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import audiovec.model as model_module
from audiovec.apps.index import embed_source, embed_windows, pool_windows
from audiovec.audio import SAMPLE_RATE, header_seconds, iter_windows
from audiovec.data.fsdd import bundled_files as fsdd_files
from audiovec.errors import AudioDecodeError
from audiovec.model import AudioTextEmbedder
from audiovec.tiny import tiny_embedder
from helpers.badaudio import fail_decoding_after

FILE_RATE = 8000  # FSDD's own rate: the streaming resampler runs too


def write_long_wav(path: Path, seconds: float, rate: int = FILE_RATE, subtype: str = "PCM_16") -> Path:
    """Real speech (FSDD digits) tiled with quiet noise, written block by block (never whole in memory)."""
    clip = np.concatenate([sf.read(str(f), dtype="float32")[0] for f in fsdd_files()[::30][:20]])
    rng = np.random.default_rng(0)
    total, block = int(seconds * rate), rate * 60
    with sf.SoundFile(str(path), "w", rate, 1, subtype=subtype) as out:
        for start in range(0, total, block):
            n = min(block, total - start)
            tiled = np.resize(np.roll(clip, start % clip.size), n)
            out.write(0.5 * tiled + rng.normal(0, 0.01, n).astype(np.float32))
    return path


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> AudioTextEmbedder:
    return AudioTextEmbedder.from_pretrained(tiny_model_dir)


@pytest.fixture()
def decoded_whole(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sources encode_audio decodes whole (load_audio); streamed ones never appear."""
    seen: list[str] = []  # in the decode threads' order
    real = model_module.load_audio

    def spy(source, sample_rate=None):
        seen.append(str(source))
        return real(source, sample_rate)

    monkeypatch.setattr(model_module, "load_audio", spy)
    return seen


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param({"window_seconds": 30.0, "log_mel_floor": "window"}, id="30s-windows"),
        pytest.param({}, id="tower-policy"),  # Qwen3-Omni: 152 s windows (2048 positions), one floor per file
    ],
)
def test_long_file_streams_to_the_same_vector_as_the_whole_file(policy, tmp_path, decoded_whole):
    model = tiny_embedder(**policy)
    window = model.config.window_seconds
    n_windows = 7 if window == 30.0 else 3
    long = write_long_wav(tmp_path / "long.wav", (n_windows - 1) * window + 7.3)  # a short tail
    assert header_seconds(long) == pytest.approx((n_windows - 1) * window + 7.3)
    files = [*map(str, fsdd_files(3)), str(long)]

    # batch_size 3: three window batches (30 s windows: the tail alone, length_batches keeps padding low;
    # 152 s windows: one per batch, as a batch holds at most 3 x 30 s of audio)
    streamed = model.encode_audio_detailed(files, batch_size=3, stream_over_seconds=60)
    assert sorted(decoded_whole) == sorted(files[:3])  # the long file never decoded whole
    decoded_whole.clear()
    whole = model.encode_audio_detailed(files, batch_size=3, stream_over_seconds=None)
    assert sorted(decoded_whole) == sorted(files)
    decoded_whole.clear()
    default = model.encode_audio(files)  # under the default threshold: the batched path
    assert sorted(decoded_whole) == sorted(files)

    assert not streamed.errors and not whole.errors
    print(f"max |streamed - whole| = {np.abs(streamed.vectors - whole.vectors).max():.2e}")
    np.testing.assert_allclose(streamed.vectors, whole.vectors, atol=1e-5)
    np.testing.assert_allclose(default, whole.vectors, atol=1e-5)
    assert abs(np.linalg.norm(streamed.vectors[-1]) - 1) < 1e-6

    # index.embed_source is the same streaming path, and equals pool_windows over every window
    np.testing.assert_allclose(embed_source(model, long, batch_size=3), whole.vectors[-1], atol=1e-5)
    windows = list(iter_windows(long, window))
    assert len(windows) == n_windows
    peak = model.stream_peak(long)  # the file's log-mel peak where the model floors per file
    assert (peak is None) == (model.config.log_mel_floor == "window")
    vectors = embed_windows(model, [w for *_, w in windows], peak=peak)
    pooled = pool_windows(vectors, [e - s for s, e, _ in windows])
    np.testing.assert_allclose(pooled, whole.vectors[-1], atol=1e-5)


def test_file_failing_mid_stream_is_a_decode_error(model, tmp_path, decoded_whole):
    """NaN samples two minutes in: the windows before were already embedded when the stream fails."""
    bad = write_long_wav(tmp_path / "nan_at_2min.wav", 3 * 60, rate=SAMPLE_RATE, subtype="FLOAT")
    with sf.SoundFile(str(bad), "r+") as handle:
        handle.seek(120 * SAMPLE_RATE)
        handle.write(np.full(100, np.nan, dtype=np.float32))
    good = [str(f) for f in fsdd_files(2)]
    files = [good[0], str(bad), good[1]]

    result = model.encode_audio_detailed(files, batch_size=2, stream_over_seconds=60, on_error="skip")
    assert str(bad) not in decoded_whole
    assert list(result.errors) == [1] and np.isnan(result.vectors[1]).all()
    assert str(bad) in result.errors[1] and "non-finite" in result.errors[1]
    np.testing.assert_allclose(result.vectors[[0, 2]], model.encode_audio(good), atol=1e-5)
    whole = model.encode_audio_detailed(files, stream_over_seconds=None, on_error="skip")
    assert whole.errors == result.errors  # the same report as decoding it whole
    with pytest.raises(AudioDecodeError, match="non-finite"):
        model.encode_audio_detailed(files, stream_over_seconds=60)


def test_read_error_mid_stream_names_the_file(model, tmp_path, monkeypatch):
    """An I/O error from the decoder after some windows becomes an AudioDecodeError, not a crash (in the
    pass that measures the file's log-mel peak, which reads the file first)."""
    window = model.config.window_seconds  # 152 s
    long = write_long_wav(tmp_path / "flaky.wav", 3 * window)
    fail_decoding_after(monkeypatch, long, 1.5 * window)
    clip = str(fsdd_files(1)[0])
    result = model.encode_audio_detailed([str(long), clip], stream_over_seconds=60, on_error="skip")
    assert list(result.errors) == [0] and np.isnan(result.vectors[0]).all()
    assert result.errors[0] == f"{long}: failed after {window:.1f} s: [Errno 5] Input/output error"
    assert np.isfinite(result.vectors[1]).all()
    with pytest.raises(AudioDecodeError, match=f"flaky.wav: failed after {window:.1f} s"):
        embed_source(model, long)


# Both measuring scripts below start with this: VmHWM is the process's own peak (ru_maxrss also keeps the
# parent's peak across exec, pytest's).
PEAK_MB = textwrap.dedent(
    """
    import resource

    def peak_mb():
        try:
            with open("/proc/self/status") as status:
                return next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) / 1024
        except (OSError, StopIteration):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    """
)

# Encodes a 10-minute file (twice: the allocator reaches its steady state) then a 2-hour one through
# encode_audio_detailed, streamed or decoded whole ("whole"), and reports the process's peak RSS after
# loading the model, after the 10-minute file and after the 2-hour file, and the 2-hour vector.
MEASURE = PEAK_MB + textwrap.dedent(
    """
    import json, resource, sys
    from audiovec.data.fsdd import bundled_files as fsdd_files
    from audiovec.tiny import tiny_embedder


    ten_minutes, two_hours, mode, batch_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    over = None if mode == "whole" else 60.0
    model = tiny_embedder(window_seconds=30.0)  # the 30 s bound; the working set scales with the window
    model.encode_audio([str(f) for f in fsdd_files(4)])
    loaded = peak_mb()
    for _ in range(2):
        model.encode_audio_detailed([ten_minutes], batch_size, stream_over_seconds=over)
    after_ten = peak_mb()
    result = model.encode_audio_detailed([two_hours], batch_size, stream_over_seconds=over)
    print(json.dumps({"loaded_mb": loaded, "ten_mb": after_ten, "peak_mb": peak_mb(),
                      "errors": result.errors, "vector": result.vectors[0].tolist()}))
    """
)


def measure(ten_minutes: Path, two_hours: Path, mode: str, batch_size: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(ten_minutes), str(two_hours), mode, str(batch_size)],
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_hours_stream_in_bounded_memory(tmp_path: Path) -> None:
    ten = write_long_wav(tmp_path / "ten_minutes.wav", 10 * 60)
    two = write_long_wav(tmp_path / "two_hours.wav", 2 * 3600)
    assert len(list(iter_windows(two))) == 240
    decoded_mb = 2 * 3600 * SAMPLE_RATE * 4 / 2**20  # the decoded 2 h clip alone: ~440 MB
    runs = {
        "streamed": measure(ten, two, "stream", 16),
        "whole": measure(ten, two, "whole", 16),
        "streamed, batch 1": measure(ten, two, "stream", 1),
    }
    ratio: dict[str, tuple[float, float]] = {}
    for name, r in runs.items():
        assert not r["errors"]
        # (peak over the loaded model, growth from 10 min to 2 h) as fractions of the decoded file
        ratio[name] = (
            (r["peak_mb"] - r["loaded_mb"]) / decoded_mb,
            (r["peak_mb"] - r["ten_mb"]) / decoded_mb,
        )
        print(
            f"{name}: peak RSS {r['peak_mb']:.0f} MB, over the loaded model {ratio[name][0]:.2f}x the decoded "
            f"file ({decoded_mb:.0f} MB), growth 10 min -> 2 h {ratio[name][1]:.3f}x"
        )
    # Decoding whole costs the file itself (the measurement sees it); streaming costs nothing more for 2 h
    # than for 10 min, and its whole working set (windows, features, activations: per window in the batch)
    # is a fraction of the file when windows are embedded one at a time.
    # whole: ~11/12 of the file is new between 10 min and 2 h (0.88-0.97 measured; memory the 10-minute run
    # freed is reused), so half the file is a safe floor that still shows the measurement sees it
    assert ratio["whole"][1] > 0.5
    # streamed at batch 16: a ~550 MB working set whose allocator keeps settling for a while (RSS peak after
    # 10 min twice, then 30 min, 1 h, 2 h, measured here: +23, +31, +4, +0 MB); CI saw 65 MB (0.15) from
    # 10 min to 2 h. Bounded, so a quarter of the file is the ceiling; batch 1 shows the tight bound.
    assert ratio["streamed"][1] < 0.25
    assert ratio["streamed, batch 1"][1] < 0.1
    assert ratio["streamed, batch 1"][0] < 0.3
    for name in ("whole", "streamed, batch 1"):
        np.testing.assert_allclose(runs[name]["vector"], runs["streamed"]["vector"], atol=1e-5)


# Indexes a 10-minute file (twice, into two fresh indexes: the allocator reaches its steady state) then a
# 2-hour one with AudioIndex.add, and reports the peak RSS after loading the model and LanceDB (a first small
# index), after the 10-minute file and after the 2-hour file, the 2-hour file's rows pooled by duration, and
# (after the peak is taken) encode_audio_stream's vector of the same file.
MEASURE_INDEX = PEAK_MB + textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    from audiovec.apps.index import AudioIndex, pool_windows
    from audiovec.data.fsdd import bundled_files as fsdd_files
    from audiovec.tiny import tiny_embedder


    ten_minutes, two_hours, root, batch_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    model = tiny_embedder(window_seconds=30.0)  # the 30 s bound; the working set scales with the window
    AudioIndex(f"{root}/warm").add(model, [str(f) for f in fsdd_files(4)], batch_size=batch_size)
    loaded = peak_mb()
    for name in ("ten-1", "ten-2"):
        AudioIndex(f"{root}/{name}").add(model, [ten_minutes], batch_size=batch_size)
    after_ten = peak_mb()
    index = AudioIndex(f"{root}/two")
    report = index.add(model, [two_hours], batch_size=batch_size)
    peak = peak_mb()
    rows = sorted(index.rows(["window", "start", "end", "vector"]).to_pylist(), key=lambda r: r["window"])
    pooled = pool_windows(np.array([r["vector"] for r in rows]), [r["end"] - r["start"] for r in rows])
    print(json.dumps({"loaded_mb": loaded, "ten_mb": after_ten, "peak_mb": peak, "rows": len(rows),
                      "windows": sorted({r["window"] for r in rows}) == list(range(len(rows))),
                      "failed": report.failed, "vector": pooled.tolist(),
                      "streamed": model.encode_audio_stream(two_hours, batch_size).tolist()}))
    """
)


def measure_index(ten_minutes: Path, two_hours: Path, root: Path, batch_size: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE_INDEX, str(ten_minutes), str(two_hours), str(root), str(batch_size)],
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_indexing_two_hours_in_bounded_memory(tmp_path: Path) -> None:
    """`audiovec index` streams too: a 2-hour file costs no more memory than a 10-minute one, its rows are
    complete (240 windows), and pooled by duration they give encode_audio_stream's vector."""
    ten = write_long_wav(tmp_path / "ten_minutes.wav", 10 * 60)
    two = write_long_wav(tmp_path / "two_hours.wav", 2 * 3600)
    decoded_mb = 2 * 3600 * SAMPLE_RATE * 4 / 2**20  # the decoded 2 h clip alone: ~440 MB
    for batch_size in (16, 1):
        r = measure_index(ten, two, tmp_path / f"db-{batch_size}", batch_size)
        assert not r["failed"] and r["rows"] == 240 and r["windows"]
        over, growth = (r["peak_mb"] - r["loaded_mb"]) / decoded_mb, (r["peak_mb"] - r["ten_mb"]) / decoded_mb
        print(
            f"index, batch {batch_size}: peak RSS {r['peak_mb']:.0f} MB, over the loaded model and LanceDB "
            f"{over:.2f}x the decoded file ({decoded_mb:.0f} MB), growth 10 min -> 2 h {growth:.3f}x"
        )
        assert growth < (0.25 if batch_size > 1 else 0.1)  # the allocator's settling at batch 16 (above)
        if batch_size == 1:
            assert over < 0.3
        np.testing.assert_allclose(r["vector"], r["streamed"], atol=1e-5)
