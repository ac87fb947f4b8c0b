"""Manifest datasets, mixtures and the length-bucketed, resumable, rank-splitting batch sampler."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiovec.audio import load_audio
from audiovec.data.datasets import (
    BucketBatchSampler,
    ManifestDataset,
    MixtureDataset,
    SampleKey,
    collate_audio_text,
    make_dataloader,
)
from audiovec.data.fsdd import bundled_files as fsdd_files
from audiovec.data.manifest import write_manifest
from audiovec.errors import AudioDecodeError, ConfigError, DataError

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _rows(files: list[Path], source: str = "fsdd", durations: bool = True) -> list[dict]:
    rows = []
    for path in files:
        digit = DIGITS[int(path.name[0])]
        row = {
            "id": f"{source}:{path.stem}",
            "audio": str(path),
            "captions": [digit, f"a person says {digit}", f"the spoken word {digit}"],
            "labels": [digit],
            "source": source,
        }
        if durations:
            row["duration"] = sf.info(path).duration
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def clips() -> list[Path]:
    files = fsdd_files()
    return files[::19][:24]  # 24 real recordings of varied length, several digits and speakers


@pytest.fixture(scope="module")
def manifest(clips: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("manifests") / "fsdd.jsonl"
    write_manifest(_rows(clips), path)
    return path


def test_item_decodes_to_16k_mono_and_picks_caption_deterministically(
    manifest: Path, clips: list[Path]
) -> None:
    dataset = ManifestDataset(manifest, seed=3)
    item = dataset[SampleKey(5, epoch=2)]
    assert item["waveform"].dtype == np.float32 and item["waveform"].ndim == 1
    assert item["waveform"].shape[0] == pytest.approx(sf.info(clips[5]).frames * 2, abs=2)  # 8 kHz -> 16 kHz
    assert item["caption"] in dataset.rows[5]["captions"]
    assert item["labels"] == tuple(dataset.rows[5]["labels"])
    again = ManifestDataset(manifest, seed=3)
    assert all(again.caption_for(i, e) == dataset.caption_for(i, e) for i in range(24) for e in range(4))
    per_epoch = {dataset.caption_for(5, e) for e in range(30)}
    assert len(per_epoch) == 3  # every caption gets used across epochs
    other_seed = ManifestDataset(manifest, seed=4)
    assert any(other_seed.caption_for(i, 0) != dataset.caption_for(i, 0) for i in range(24))


def test_each_visit_draws_its_own_caption_and_crop_keyed_by_clip_id(clips: list[Path]) -> None:
    # a balanced mixture draws a small group's clips several times per epoch: each visit (batch position)
    # gets its own caption and crop, and two groups' clips at the same row do not draw in lockstep
    one = ManifestDataset(_rows(clips, source="a"), max_seconds=0.1, seed=0)
    two = ManifestDataset(_rows(clips, source="b"), max_seconds=0.1, seed=0)
    assert len({one.caption_for(3, 0, position) for position in range(30)}) == 3
    assert len({one[SampleKey(3, 0, position)]["waveform"].tobytes() for position in range(10)}) > 1
    assert one.caption_for(3, 0, 7) == ManifestDataset(_rows(clips, source="a"), seed=0).caption_for(3, 0, 7)
    same_row = [one.caption_for(i, 0, 5) == two.caption_for(i, 0, 5) for i in range(24)]
    assert not all(same_row)  # keyed by id ("a:..." vs "b:..."), not by row number


def test_crop_is_a_deterministic_window_of_the_clip(manifest: Path) -> None:
    full = ManifestDataset(manifest)[0]["waveform"]
    dataset = ManifestDataset(manifest, max_seconds=0.1, seed=1)
    a = dataset[SampleKey(0, 0)]["waveform"]
    b = ManifestDataset(manifest, max_seconds=0.1, seed=1)[SampleKey(0, 0)]["waveform"]
    assert a.shape[0] == 1600 and np.array_equal(a, b)
    starts = [i for i in range(full.shape[0] - 1600 + 1) if np.array_equal(full[i : i + 1600], a)]
    assert starts  # it is a real slice of the decoded clip
    head = ManifestDataset(manifest, max_seconds=0.1, crop="start")[0]["waveform"]
    assert np.array_equal(head, full[:1600])
    assert dataset.durations.max() <= 0.1


def test_durations_fall_back_to_file_headers(clips: list[Path]) -> None:
    dataset = ManifestDataset(_rows(clips[:4], durations=False))
    assert dataset.durations == pytest.approx([sf.info(p).duration for p in clips[:4]], abs=1e-3)


def test_decode_errors_raise_or_skip(clips: list[Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really audio")
    rows = _rows(clips[:2]) + [{"id": "bad", "audio": str(broken), "captions": ["x"], "duration": 1.0}]
    with pytest.raises(AudioDecodeError, match="broken.wav"):
        ManifestDataset(rows)[2]
    skipping = ManifestDataset(rows, on_error="skip")
    batch = collate_audio_text([skipping[i] for i in range(3)])
    assert batch["ids"] == ["fsdd:" + clips[0].stem, "fsdd:" + clips[1].stem]
    with pytest.raises(DataError, match="every sample"):
        collate_audio_text([None])


def test_collate_lengths_and_padding(manifest: Path) -> None:
    dataset = ManifestDataset(manifest)
    items = [dataset[i] for i in range(3)]
    batch = collate_audio_text(items, pad=True)
    lengths = [item["waveform"].shape[0] for item in items]
    assert batch["audio_lengths"].tolist() == lengths
    assert batch["audio"].shape == (3, max(lengths))
    for row, item in enumerate(items):
        assert np.array_equal(batch["audio"][row, : lengths[row]].numpy(), item["waveform"])
        assert batch["audio"][row, lengths[row] :].abs().sum() == 0


# --- the batch sampler ---------------------------------------------------------------------------------


def _all_batches(sampler: BucketBatchSampler) -> list[list[int]]:
    return [[key.index for key in batch] for batch in sampler]


def test_sampler_covers_epoch_and_buckets_by_length(manifest: Path) -> None:
    dataset = ManifestDataset(manifest)
    sampler = BucketBatchSampler(dataset, 4, seed=0, bucket_batches=6)
    batches = _all_batches(sampler)
    assert len(batches) == len(sampler) == 6
    assert sorted(i for b in batches for i in b) == list(range(24))
    spread = np.mean([np.ptp(dataset.durations[b]) for b in batches])
    unsorted = BucketBatchSampler(dataset, 4, seed=0, bucket_batches=1)
    spread_unsorted = np.mean([np.ptp(dataset.durations[b]) for b in _all_batches(unsorted)])
    assert spread < spread_unsorted  # similar lengths share a batch: less padding


def test_sampler_is_deterministic_and_reshuffles_each_epoch(manifest: Path) -> None:
    dataset = ManifestDataset(manifest)
    a = BucketBatchSampler(dataset, 4, seed=7, bucket_batches=2)
    b = BucketBatchSampler(dataset, 4, seed=7, bucket_batches=2)
    first = _all_batches(a)
    assert first == _all_batches(b)
    second = _all_batches(a)  # the finished iteration moved it to epoch 1
    assert a.epoch == 2 and second != first
    assert _all_batches(BucketBatchSampler(dataset, 4, seed=8, bucket_batches=2)) != first


def test_ranks_take_contiguous_slices_of_the_global_batch(manifest: Path) -> None:
    dataset = ManifestDataset(manifest)
    single = _all_batches(BucketBatchSampler(dataset, 6, seed=1, num_replicas=1, rank=0, bucket_batches=2))
    ranks = [
        _all_batches(BucketBatchSampler(dataset, 3, seed=1, num_replicas=2, rank=r, bucket_batches=2))
        for r in (0, 1)
    ]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    assert [r0 + r1 for r0, r1 in zip(ranks[0], ranks[1], strict=True)] == single
    with pytest.raises(ConfigError, match="rank 2"):
        BucketBatchSampler(dataset, 3, num_replicas=2, rank=2)


def test_drop_last_false_pads_by_wrapping(manifest: Path) -> None:
    dataset = ManifestDataset(manifest)
    batches = _all_batches(BucketBatchSampler(dataset, 5, seed=0, drop_last=False))
    assert len(batches) == 5 and all(len(b) == 5 for b in batches)
    counts = Counter(i for b in batches for i in b)
    assert set(counts) == set(range(24)) and sum(counts.values()) == 25
    assert len(_all_batches(BucketBatchSampler(dataset, 5, seed=0))) == 4
    with pytest.raises(DataError, match="fewer than one global batch"):
        BucketBatchSampler(dataset, 25)


def test_sampler_resumes_mid_epoch_and_across_epochs(manifest: Path) -> None:
    dataset = ManifestDataset(manifest)
    reference = BucketBatchSampler(dataset, 4, seed=2)
    uninterrupted = _all_batches(reference) + _all_batches(reference)
    run = BucketBatchSampler(dataset, 4, seed=2)
    seen = []
    for batch in run:
        seen.append([k.index for k in batch])
        if len(seen) == 4:
            break
    state = run.state_dict()
    resumed = BucketBatchSampler(dataset, 4, seed=2)
    resumed.load_state_dict(state)
    resumed.set_epoch(state["epoch"])  # what a trainer loop does: keeps the restored position
    seen += _all_batches(resumed) + _all_batches(resumed)
    assert seen == uninterrupted
    # a different world size with the same global batch resumes too; another seed does not
    BucketBatchSampler(dataset, 2, seed=2, num_replicas=2, rank=1).load_state_dict(state)
    with pytest.raises(ConfigError, match="seed"):
        BucketBatchSampler(dataset, 4, seed=3).load_state_dict(state)
    with pytest.raises(ConfigError, match="global_batch_size"):
        BucketBatchSampler(dataset, 8, seed=2).load_state_dict(state)


def _loader_batches(loader, limit: int | None = None) -> list[tuple[list[str], list[str], int]]:
    out = []
    for batch in loader:
        out.append((batch["ids"], batch["captions"], int(batch["audio_lengths"].sum())))
        if limit is not None and len(out) == limit:
            break
    return out


def test_dataloader_workers_match_main_process_and_resume_after_consumed_batch(manifest: Path) -> None:
    dataset = ManifestDataset(manifest, seed=5, max_seconds=0.3)
    main_process = _loader_batches(make_dataloader(dataset, 4, seed=5, num_workers=0))
    workers = make_dataloader(dataset, 4, seed=5, num_workers=2)
    consumed = []
    for batch in workers:
        consumed.append((batch["ids"], batch["captions"], int(batch["audio_lengths"].sum())))
        if len(consumed) == 2:
            state = workers.batch_sampler.state_dict(after_batch=batch)  # workers have prefetched more
            break
    assert workers.batch_sampler.position > 2
    assert state["position"] == 2
    resumed = make_dataloader(ManifestDataset(manifest, seed=5, max_seconds=0.3), 4, seed=5, num_workers=0)
    resumed.batch_sampler.load_state_dict(state)
    assert consumed + _loader_batches(resumed) == main_process


# --- mixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parts(clips: list[Path]) -> list[ManifestDataset]:
    return [ManifestDataset(_rows(clips[:4], "small")), ManifestDataset(_rows(clips[4:24], "large"))]


def test_mixture_draws_by_weight_and_walks_each_part_without_repeats(parts: list[ManifestDataset]) -> None:
    mixture = MixtureDataset(parts, weights=[1, 1], seed=0, epoch_size=16)
    orders = [mixture.epoch_order(e) for e in range(5)]
    for order in orders:
        assert len(order) == 16
        assert (order < 4).sum() == 8  # half from the 4-clip part: upsampled
    for order in orders:  # 8 draws from 4 clips: two full passes, no clip three times
        assert set(Counter(order[order < 4].tolist()).values()) == {2}
    first_two = np.concatenate([o[o >= 4] for o in orders[:2]])
    assert len(set(first_two.tolist())) == 16  # the large part repeats nothing before it is used up
    large = np.concatenate([o[o >= 4] for o in orders])
    assert set(Counter(large.tolist()).values()) == {2}  # 40 draws over 20 clips: each twice
    assert np.array_equal(MixtureDataset(parts, [1, 1], seed=0, epoch_size=16).epoch_order(3), orders[3])


def test_mixture_items_and_sampler(parts: list[ManifestDataset]) -> None:
    mixture = MixtureDataset(parts, weights=[3, 1], seed=0)
    assert len(mixture) == 24 and mixture.epoch_size == 24 and mixture.counts.tolist() == [18, 6]
    item = mixture[SampleKey(6, 1)]
    assert item["index"] == 6 and item["source"] == "large" and item["id"] == parts[1].rows[2]["id"]
    assert np.array_equal(item["waveform"], load_audio(parts[1].rows[2]["audio"]))
    batches = _all_batches(BucketBatchSampler(mixture, 4, seed=0))
    sources = Counter("small" if i < 4 else "large" for b in batches for i in b)
    assert sources == {"small": 18, "large": 6}
    with pytest.raises(ConfigError, match="weights"):
        MixtureDataset(parts, weights=[1])
    with pytest.raises(ConfigError, match="weights"):
        MixtureDataset(parts, weights=[0, 0])


def test_mixture_from_manifests(manifest: Path, clips: list[Path], tmp_path: Path) -> None:
    other = tmp_path / "other.jsonl"
    write_manifest(_rows(clips[:3], "other"), other)
    mixture = MixtureDataset.from_manifests([manifest, other], [1, 1], seed=2, max_seconds=0.2)
    assert len(mixture) == 27 and mixture.parts[1].max_seconds == 0.2
    loader = make_dataloader(mixture, 6, seed=2)
    batch = next(iter(loader))
    assert len(batch["ids"]) == 6 and int(batch["audio_lengths"].max()) <= 3200
