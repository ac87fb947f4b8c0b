"""The encode pipeline: decoding (and log-mel) overlapped with the model gives exactly what the sequential
pipeline gives — vectors, NaN rows, reasons, the error raised, the progress — and blocks are bounded by
duration as well as by count without changing any vector."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import audiovec.model as model_module
from audiovec.audio import SAMPLE_RATE, load_audio
from audiovec.data.fsdd import bundled_files as fsdd_files
from audiovec.errors import AudioDecodeError
from audiovec.model import AudioTextEmbedder
from audiovec.tiny import tiny_embedder
from helpers.badaudio import BadInput, make_corpus, restore_permissions


@pytest.fixture(scope="module")
def model() -> AudioTextEmbedder:
    return tiny_embedder()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, fsdd_dir: Path) -> list[str]:
    """Real FSDD recordings as WAV, and the same recordings re-encoded as FLAC and OGG Vorbis."""
    root = tmp_path_factory.mktemp("clips")
    wavs = [str(p) for p in fsdd_files()[::50][:6]]
    out = list(wavs)
    for fmt, ext, subtype in (("FLAC", "flac", None), ("OGG", "ogg", "VORBIS")):
        for wav in wavs[:3]:
            data, rate = sf.read(wav, dtype="float32")
            path = root / f"{Path(wav).stem}.{ext}"
            sf.write(str(path), data, rate, format=fmt, subtype=subtype)
            out.append(str(path))
    return out


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory: pytest.TempPathFactory, fsdd_dir: Path) -> str:
    """~95 s of real speech at 8 kHz: four 30 s windows, streamed when stream_over_seconds is below it."""
    clip = np.concatenate([sf.read(str(f), dtype="float32")[0] for f in fsdd_files()[::40][:15]])
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(str(path), np.resize(clip, 95 * 8000), 8000, subtype="PCM_16")
    return str(path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, fsdd_dir: Path) -> list[BadInput]:
    cases = make_corpus(tmp_path_factory.mktemp("bad") / "corpus", fsdd_files()[::60][:3])
    yield cases
    restore_permissions(cases)


def mixed_inputs(clips: list[str], corpus: list[BadInput], long_wav: str) -> list:
    """Good clips in three formats, every bad/odd file of the corpus (decode errors among them), a long
    file to stream, an array and bytes, interleaved so errors fall in several blocks."""
    folder = corpus[0].path.parent
    bad = sorted(str(p) for p in folder.iterdir()) + [
        str(c.path) for c in corpus if not os.path.lexists(c.path)
    ]
    array = load_audio(clips[0])
    extra = [array, Path(clips[1]).read_bytes(), long_wav]
    good = clips + extra
    mixed: list = []
    for k in range(max(len(bad), len(good))):
        mixed += bad[k : k + 1] + good[k : k + 1]
    return mixed


def assert_same(a: model_module.EncodeResult, b: model_module.EncodeResult, atol: float = 0.0) -> None:
    assert a.errors == b.errors  # same failed rows, same reasons
    assert np.array_equal(np.isnan(a.vectors), np.isnan(b.vectors))
    ok = a.ok
    assert np.abs(a.vectors[ok] - b.vectors[ok]).max() <= atol


def test_prefetch_gives_the_sequential_result_on_a_mix_with_bad_files(model, clips, corpus, long_wav):
    inputs = mixed_inputs(clips, corpus, long_wav)
    kw = {
        "on_error": "skip",
        "batch_size": 3,
        "block_size": 4,
        "sample_rate": SAMPLE_RATE,
        "stream_over_seconds": 60,
    }
    overlapped = model.encode_audio_detailed(inputs, prefetch=True, **kw)
    sequential = model.encode_audio_detailed(inputs, prefetch=False, **kw)
    assert 12 <= len(overlapped.errors) < len(inputs) - 10  # both kinds, in many blocks of 4
    assert len({i // 4 for i in overlapped.errors}) >= 6
    assert_same(overlapped, sequential)  # max diff 0.0: the same batches, featurized by the same call
    one_block = model.encode_audio_detailed(inputs, **{**kw, "block_size": 256})
    assert_same(overlapped, one_block, atol=1e-6)  # other blocks, other batches: batch-invariant vectors


@pytest.mark.parametrize("prefetch", [True, False])
def test_on_error_raise_raises_the_first_failure_in_input_order(model, clips, corpus, prefetch):
    by_kind = {c.kind: str(c.path) for c in corpus}
    inputs = [*clips[:5], by_kind["zero_byte"], *clips[5:], by_kind["random_bytes_wav"]]
    with pytest.raises(AudioDecodeError, match="empty.wav"):
        model.encode_audio_detailed(inputs, block_size=3, prefetch=prefetch)


def test_next_block_is_decoded_while_the_model_embeds(model, clips, monkeypatch):
    """With prefetch a file of block 2 is decoded before block 1's embedding returns; without, never."""
    first_of_block_2 = clips[2]
    started = threading.Event()
    real_load = model_module.load_audio

    def load(source, sample_rate=None):
        if str(source) == first_of_block_2:
            started.set()
        return real_load(source, sample_rate)

    monkeypatch.setattr(model_module, "load_audio", load)
    seen: list[bool] = []
    real_embed = model._embed_waves
    wait_s = {True: 10.0, False: 0.5}  # without prefetch nothing can set the event: do not wait long

    def embed(waves, batch_size, ahead=None):
        if not seen:  # block 1: is block 2 being decoded meanwhile?
            seen.append(started.wait(timeout=wait_s[ahead is not None]))
        return real_embed(waves, batch_size, ahead)

    monkeypatch.setattr(model, "_embed_waves", embed)
    for prefetch in (True, False):
        seen.clear()
        started.clear()
        model.encode_audio_detailed(clips[:4], block_size=2, prefetch=prefetch)
        assert seen == [prefetch]


@pytest.mark.parametrize("prefetch", [True, False])
def test_progress_counts_every_input_once(model, clips, corpus, monkeypatch, prefetch):
    updates: list[int] = []

    class Bar:
        def update(self, n: int) -> None:
            updates.append(n)

        def close(self) -> None:
            updates.append(-1)

    monkeypatch.setattr(model_module, "_progress", lambda *a, **k: Bar())
    inputs = [*clips[:4], str(corpus[0].path), *clips[4:7]]
    model.encode_audio_detailed(inputs, show_progress=True, on_error="skip", block_size=3, prefetch=prefetch)
    assert updates == [3, 3, 2, -1]


def blocks_seen(model: AudioTextEmbedder, monkeypatch: pytest.MonkeyPatch) -> list[list[float]]:
    """The decoded durations (s) of the clips of every block ``_embed_waves`` is given, block by block."""
    blocks: list[list[float]] = []
    real = model._embed_waves

    def spy(waves, batch_size, ahead=None):
        blocks.append([w.shape[0] / SAMPLE_RATE for w in waves.values()])
        return real(waves, batch_size, ahead)

    monkeypatch.setattr(model, "_embed_waves", spy)
    return blocks


@pytest.mark.parametrize("prefetch", [True, False])
def test_tiny_block_seconds_forces_many_blocks_and_changes_no_vector(
    model, clips, long_wav, monkeypatch, prefetch
):
    inputs = [*clips, long_wav, *clips[:3]]  # FSDD clips of 0.3-0.8 s, and one 95 s file
    reference = model.encode_audio_detailed(inputs, stream_over_seconds=None, prefetch=prefetch)
    blocks = blocks_seen(model, monkeypatch)
    split = model.encode_audio_detailed(
        inputs, stream_over_seconds=None, block_seconds=1.0, prefetch=prefetch
    )
    assert_same(split, reference, atol=1e-6)
    assert len(blocks) >= 7 and sum(len(b) for b in blocks) == len(inputs)
    assert [95.0] in [[round(s) for s in b] for b in blocks]  # longer than block_seconds: a block alone
    assert all(sum(b) <= 1.0 + 1e-3 for b in blocks if len(b) > 1)


def test_block_seconds_counts_arrays_by_shape_and_unknown_durations_by_number(model, clips, monkeypatch):
    arrays = [load_audio(c) for c in clips[:6]]  # 16 kHz arrays of ~0.3-0.8 s
    blocks = blocks_seen(model, monkeypatch)
    split = model.encode_audio_detailed(arrays, sample_rate=SAMPLE_RATE, block_seconds=0.9, block_size=4)
    assert len(blocks) >= 4 and all(sum(b) <= 0.9 + 1e-3 for b in blocks if len(b) > 1)
    blocks.clear()
    as_bytes = [io.BytesIO(Path(c).read_bytes()) for c in clips[:6]]  # no header duration: by count only
    by_count = model.encode_audio_detailed(as_bytes, block_seconds=0.9, block_size=4)
    assert [len(b) for b in blocks] == [4, 2]
    np.testing.assert_allclose(by_count.vectors, split.vectors, atol=1e-6)


def test_block_limit_of_the_issue_holds(model, monkeypatch, tmp_path):
    """Headers of clips just under the streaming threshold: blocks of 3 (30 min), not 256 (~9.8 GB)."""
    monkeypatch.setattr(model_module, "header_seconds", lambda item: 599.0)
    monkeypatch.setattr(model_module, "load_audio", lambda item, sample_rate=None: np.zeros(160, np.float32))
    blocks = blocks_seen(model, monkeypatch)
    model.encode_audio_detailed([str(tmp_path / f"{i}.wav") for i in range(10)])
    assert [len(b) for b in blocks] == [3, 3, 3, 1]


@pytest.mark.parametrize("prefetch", [True, False])
def test_stream_read_ahead_gives_the_same_vector(model, long_wav, prefetch):
    streamed = model.encode_audio_stream(long_wav, batch_size=1, prefetch=prefetch)
    other = model.encode_audio_stream(long_wav, batch_size=3, prefetch=not prefetch)
    whole = model.encode_audio_detailed([long_wav], stream_over_seconds=None, prefetch=prefetch).vectors[0]
    assert np.abs(streamed - other).max() <= 1e-6 and np.abs(streamed - whole).max() <= 1e-6
    assert np.array_equal(streamed, model.encode_audio_stream(long_wav, batch_size=1, prefetch=not prefetch))


@pytest.mark.parametrize("prefetch", [True, False])
def test_stream_failure_is_raised_with_and_without_read_ahead(model, tmp_path, prefetch):
    bad = tmp_path / "nan_at_70s.wav"
    rng = np.random.default_rng(0)
    wave = rng.normal(0, 0.1, 100 * SAMPLE_RATE).astype(np.float32)
    wave[70 * SAMPLE_RATE] = np.nan
    sf.write(str(bad), wave, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match="non-finite"):
        model.encode_audio_stream(str(bad), batch_size=1, prefetch=prefetch)
