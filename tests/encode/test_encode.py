"""The named pieces of the encode path (audiovec.encode): which windows share a forward pass, which inputs
share a block, what the decoder reports, and how window vectors are pooled by duration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiovec.audio import SAMPLE_RATE, load_audio
from audiovec.data.fsdd import bundled_files as fsdd_files
from audiovec.encode import (
    BatchRunner,
    BlockDecoder,
    BlockPlanner,
    DurationPool,
    Window,
    WindowGroups,
    embed_waves,
    embed_windows,
    encode_shard,
    plan_batches,
    pool_windows,
    split_windows,
)
from audiovec.errors import AudioDecodeError
from audiovec.model import AudioTextEmbedder
from audiovec.tiny import tiny_embedder

SECOND = SAMPLE_RATE


def window(key: int, samples: int) -> Window:
    return Window(key, np.zeros(samples, dtype=np.float32), None)


def keys(batches: list[list[Window]]) -> list[list[int]]:
    return [[w.key for w in batch] for batch in batches]


# ------------------------------------------------------------------------------ planning


def test_plan_batches_sorts_by_length_and_cuts_where_padding_would_grow():
    lengths = {0: 16_000, 1: 8_000, 2: 16_000, 3: 15_900, 4: 30 * SECOND, 5: 8_100}
    windows = [window(k, n) for k, n in lengths.items()]
    # by length: 1, 5 | 3, 0, 2 | 4 -- adding 3 (15 900) to [1, 5] would leave 16 100 + 15 900 useful of
    # 3 x 15 900 padded samples (67 % < 95 %), adding the 30 s window to [3, 0, 2] far less
    assert keys(plan_batches(windows, batch_size=4)) == [[1, 5], [3, 0, 2], [4]]
    # at most batch_size windows a pass; equal lengths keep their input order
    assert keys(plan_batches(windows, batch_size=2)) == [[1, 5], [3, 0], [2], [4]]


def test_plan_batches_holds_at_most_batch_size_30s_windows_of_audio():
    long = [window(k, 40 * SECOND) for k in range(3)]  # 40 s windows: two would be 80 s > 2 x 30 s
    assert keys(plan_batches(long, batch_size=2)) == [[0], [1], [2]]
    short = [window(k, 10 * SECOND) for k in range(7)]  # 10 s windows: 6 fit in 2 x 30 s, but 2 a pass
    assert keys(plan_batches(short, batch_size=2)) == [[0, 1], [2, 3], [4, 5], [6]]


def test_block_planner_counts_inputs_and_seconds():
    arrays = [np.zeros(int(s * SECOND), np.float32) for s in (0.5, 0.5, 0.5, 0.5, 3.0, 0.2)]
    planner = BlockPlanner(arrays, block_size=3, block_seconds=2.0, sample_rate=SAMPLE_RATE)
    # three inputs at most; 0.5 + 3.0 s would pass 2 s; the 3 s clip is a block alone
    assert [list(b.indices) for b in planner] == [[0, 1, 2], [3], [4], [5]]
    no_limit = BlockPlanner(arrays, block_size=4, block_seconds=None, sample_rate=SAMPLE_RATE)
    assert [list(b.indices) for b in no_limit] == [[0, 1, 2, 3], [4, 5]]


def test_block_planner_leaves_long_files_to_streaming_and_counts_them_for_nothing():
    headers = {"short.wav": 100.0, "long.wav": 700.0, "unknown.mp3": None}
    inputs = ["short.wav", "long.wav", "unknown.mp3", "short.wav", "short.wav"]
    planner = BlockPlanner(
        inputs, block_size=10, block_seconds=150.0, stream_over_seconds=600.0, header=headers.__getitem__
    )
    blocks = list(planner)
    assert [list(b.indices) for b in blocks] == [[0, 1, 2], [3], [4]]
    assert blocks[0].headers == [100.0, 700.0, None]
    assert planner.streams(700.0) and not planner.streams(100.0) and not planner.streams(None)


def test_window_groups_read_only_as_consumed():
    read: list[int] = []

    def items():
        for i in range(7):
            read.append(i)
            yield i

    groups = WindowGroups(items(), 3)
    assert next(groups) == [0, 1, 2] and read == [0, 1, 2]
    assert list(groups) == [[3, 4, 5], [6]]


# ------------------------------------------------------------------------------ decoding


def write_wav(path: Path, seconds: float) -> str:
    rng = np.random.default_rng(0)
    sf.write(str(path), (0.1 * rng.standard_normal(int(seconds * SECOND))).astype(np.float32), SECOND)
    return str(path)


def test_decoder_reports_errors_naming_the_file_and_never_decodes_a_streamed_one(tmp_path):
    good = write_wav(tmp_path / "good.wav", 0.3)
    long = write_wav(tmp_path / "long.wav", 1.0)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n" * 20)
    inputs = [good, str(empty), long, str(text)]
    loaded: list[str] = []

    def load(item, sample_rate=None):
        loaded.append(str(item))
        return load_audio(item, sample_rate)

    planner = BlockPlanner(inputs, stream_over_seconds=0.5)
    decoder = BlockDecoder(inputs, planner, workers=2, load=load)
    try:
        decoded = decoder.result(decoder.submit(next(iter(planner))))
    finally:
        decoder.close()
    assert list(decoded.waves) == [0] and decoded.waves[0].shape == (int(0.3 * SECOND),)
    assert decoded.streamed == [2] and long not in loaded
    assert [i for i, _ in decoded.failures] == [1, 3]
    for (_, exc), name in zip(decoded.failures, ("empty.wav", "notes.wav")):
        assert isinstance(exc, AudioDecodeError) and str(tmp_path / name) in str(exc)


# ------------------------------------------------------------------------------ pooling


def test_duration_pool_is_the_length_weighted_mean_by_hand():
    vectors = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]], np.float32)
    pool = DurationPool()
    pool.add([0, 0], [3, 1], vectors[:2])
    pool.add([1, 0, 1], [2, 4, 5], vectors[[2, 3, 3]])  # key 0 gets a window in a later batch too
    by_hand_0 = np.array([3.0 + 4.0, 1.0 + 4.0, 0.0]) / np.sqrt(7.0**2 + 5.0**2)
    by_hand_1 = np.array([5.0, 5.0, 2.0]) / np.sqrt(5.0**2 + 5.0**2 + 2.0**2)
    np.testing.assert_allclose(pool.vector(0), by_hand_0, atol=1e-7)
    np.testing.assert_allclose(pool.vector(1), by_hand_1, atol=1e-7)
    np.testing.assert_allclose(pool_windows(vectors[[0, 1, 3]], [3.0, 1.0, 4.0]), by_hand_0, atol=1e-7)
    assert pool.vector(0).dtype == np.float32


@pytest.fixture(scope="module")
def model() -> AudioTextEmbedder:
    return tiny_embedder(window_seconds=1.0, log_mel_floor="window")


def test_a_clip_is_its_windows_weighted_by_duration(model):
    """2.3 s of speech in 1 s windows: 1 s, 1 s and 0.3 s, each embedded alone by hand, then weighted."""
    speech = np.concatenate([load_audio(f) for f in fsdd_files(6)])[: int(2.3 * SECOND)]
    windows = split_windows(model, 7, speech)
    assert [w.samples.shape[0] for w in windows] == [SECOND, SECOND, int(0.3 * SECOND)]
    alone = np.stack(
        [model.forward_audio(**model.featurize([w.samples])).detach().numpy()[0] for w in windows]
    ).astype(np.float64)
    weighted = alone.T @ np.array([1.0, 1.0, 0.3])
    by_hand = weighted / np.linalg.norm(weighted)
    got = embed_waves(model, {7: speech}, batch_size=4)
    np.testing.assert_allclose(got[7], by_hand, atol=1e-5)
    np.testing.assert_allclose(model.encode_audio(speech, sample_rate=SAMPLE_RATE), by_hand, atol=1e-5)
    np.testing.assert_allclose(embed_windows(model, [w.samples for w in windows]), alone, atol=1e-5)
    plain = alone.sum(0) / np.linalg.norm(alone.sum(0))  # the unweighted mean: what a wrong pool gives
    assert np.abs(plain - by_hand).max() > 20 * 1e-5


def test_batch_runner_counts_passes_and_featurizing_ahead_changes_nothing(model):
    from concurrent.futures import ThreadPoolExecutor

    waves = {i: load_audio(f) for i, f in enumerate(fsdd_files(5))}
    passes: list[int] = []
    plain = embed_waves(model, waves, batch_size=2, on_batch=passes.append)
    assert sum(passes) == sum(len(split_windows(model, i, w)) for i, w in waves.items())
    assert len(passes) >= 3 and max(passes) <= 2
    with ThreadPoolExecutor(max_workers=1) as ahead:
        early = embed_waves(model, waves, batch_size=2, ahead=ahead)
    assert set(early) == set(plain) == set(waves)
    for i in waves:
        assert np.array_equal(early[i], plain[i])
    batches = plan_batches([w for i, wave in waves.items() for w in split_windows(model, i, wave)], 2)
    n = len(batches)
    assert len(list(BatchRunner(model).run(batches))) == n and batches == []  # consumed as it runs


def test_encode_shard_takes_every_world_th_input_and_keys_by_position(model, tmp_path):
    files = [str(f) for f in fsdd_files(4)]
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    inputs = [files[0], files[1], str(bad), files[2], files[3]]
    vectors, errors = encode_shard(model, inputs, rank=0, world=2)
    assert sorted(vectors) == [0, 4] and list(errors) == [2] and "broken.wav" in errors[2]
    other, none = encode_shard(model, inputs, rank=1, world=2)
    assert sorted(other) == [1, 3] and none == {}
    np.testing.assert_allclose(vectors[4], model.encode_audio(files[3]), atol=1e-6)
