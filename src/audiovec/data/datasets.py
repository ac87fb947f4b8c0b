"""Training data over manifests: decoding in DataLoader workers, weighted mixtures, length-bucketed batches.

Randomness is a pure function of the seed and of where in training a clip is asked for (epoch, batch
position) plus the clip's own id: the caption picked for a clip, its crop and the batch order never depend on
worker processes, on where a run was resumed, or on a clip's row number. The batch sampler yields
:class:`SampleKey` tuples, so every worker knows the epoch without shared state.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from audiovec.audio import load_audio
from audiovec.data.augment import AugmentSpec, augment
from audiovec.data.manifest import Row, read_manifest, validate_row
from audiovec.data.prepare.common import audio_duration
from audiovec.dist import world
from audiovec.errors import AudiovecError, ConfigError, DataError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
# salts that keep the random streams apart
_CAPTION, _CROP, _ORDER, _BATCHES, _SOURCE, _VARIANT, _AUGMENT = range(1, 8)


class SampleKey(NamedTuple):
    """What the batch sampler hands a dataset: a row index plus where in training it is asked for."""

    index: int
    epoch: int = 0
    position: int = -1  # batch position within the epoch (-1: not from a batch sampler)


def _rng(seed: int, *words: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFF, *(w & 0xFFFFFFFF for w in words)])


def _unpack(key: int | SampleKey | tuple, default_epoch: int) -> SampleKey:
    if isinstance(key, tuple):
        return SampleKey(*key)
    return SampleKey(int(key), default_epoch)


class ManifestDataset(Dataset):
    """Clips of one manifest: ``dataset[i]`` or ``dataset[SampleKey(i, epoch)]`` -> a sample dict.

    The waveform is decoded with :func:`audiovec.audio.load_audio` (mono float32, 16 kHz) inside the
    worker; clips longer than ``max_seconds`` are cropped (``crop="random"``: an offset drawn per visit;
    ``"start"``: the beginning). A visit is (epoch, batch position) and is keyed by the clip's id, not its row
    number, so a clip a balanced mixture draws several times per epoch gets a caption and crop each time, and
    clips at the same row of different groups draw independently. With an active ``augment`` spec each visit
    also draws one of the clip's fixed versions (:mod:`audiovec.data.augment`; version 0 is the clip as
    recorded).
    """

    def __init__(
        self,
        manifest: str | os.PathLike | Sequence[Row],
        *,
        seed: int = 0,
        max_seconds: float | None = None,
        crop: str = "random",
        on_error: str = "raise",
        fields: Sequence[str] = (),
        augment: AugmentSpec | None = None,
    ) -> None:
        if crop not in ("random", "start"):
            raise ConfigError(f"crop must be 'random' or 'start', got {crop!r}")
        if on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if isinstance(manifest, (str, os.PathLike)):
            self.name = str(manifest)
            self.rows = read_manifest(manifest)
        else:
            self.name = "<rows>"
            self.rows = [validate_row(row, f"row {i}") for i, row in enumerate(manifest)]
        if not self.rows:
            raise DataError(f"{self.name}: manifest has no rows")
        self.seed = seed
        self.epoch = 0
        self.max_seconds = max_seconds
        self.crop = crop
        self.on_error = on_error
        self.fields = tuple(fields)  # row fields copied into each sample (e.g. language, for masking)
        self.augment = augment.validate() if augment is not None and augment.active else None
        self._durations: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain integer indices (the batch sampler passes it explicitly instead)."""
        self.epoch = epoch

    @property
    def durations(self) -> np.ndarray:
        """Seconds per row (capped at ``max_seconds``): the manifest's ``duration``, else the file header."""
        if self._durations is None:
            values = np.array(
                [
                    float(row["duration"])
                    if row.get("duration") is not None
                    else (audio_duration(Path(row["audio"])) or np.nan)
                    for row in self.rows
                ],
                dtype=np.float64,
            )
            known = values[~np.isnan(values)]
            values[np.isnan(values)] = float(np.median(known)) if known.size else 10.0
            if self.max_seconds is not None:
                values = np.minimum(values, self.max_seconds)
            self._durations = values
        return self._durations

    def caption_for(self, index: int, epoch: int, position: int = -1) -> str:
        """The caption one visit (epoch, batch position) of clip ``index`` trains on."""
        captions = self.rows[index]["captions"]
        if len(captions) == 1:
            return captions[0]
        rng = _rng(self.seed, _CAPTION, epoch, position, self.clip_key(index))
        return captions[int(rng.integers(len(captions)))]

    def epoch_order(self, epoch: int) -> np.ndarray:
        """A permutation of all rows for this epoch."""
        return _rng(self.seed, _ORDER, epoch).permutation(len(self.rows))

    def _crop(self, wave: np.ndarray, index: int, epoch: int, position: int) -> np.ndarray:
        if self.max_seconds is None:
            return wave
        limit = int(round(self.max_seconds * SAMPLE_RATE))
        if wave.shape[0] <= limit:
            return wave
        start = 0
        if self.crop == "random":
            rng = _rng(self.seed, _CROP, epoch, position, self.clip_key(index))
            start = int(rng.integers(wave.shape[0] - limit + 1))
        return np.ascontiguousarray(wave[start : start + limit])

    def clip_key(self, index: int) -> int:
        """A 32-bit key from the row's id: captions, crops and augmentation are seeded by it, not by the row's
        number, so clips at the same row of different datasets (the groups of a balanced mixture) differ."""
        row = self.rows[index]
        name = str(row.get("id") or row["audio"]).encode()
        return int.from_bytes(hashlib.blake2b(name, digest_size=4).digest(), "little")

    def version(self, index: int, epoch: int, position: int = -1) -> int:
        """Which fixed version of clip ``index`` one visit trains on (0: as recorded). A visit is its epoch and
        batch position, so a clip drawn several times per epoch (balanced sampling) gets a version each time."""
        if self.augment is None:
            return 0
        rng = _rng(self.seed, _VARIANT, epoch, position, self.clip_key(index))
        return int(rng.integers(self.augment.variants))

    def _augmented(self, wave: np.ndarray, index: int, epoch: int, position: int) -> np.ndarray:
        version = self.version(index, epoch, position)
        if version == 0 or self.augment is None:
            return wave
        return augment(wave, self.augment, _rng(self.seed, _AUGMENT, self.clip_key(index), version))

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any] | None:
        index, epoch, position = _unpack(key, self.epoch)
        row = self.rows[index]

        try:
            wave = load_audio(row["audio"])
        except AudiovecError as exc:
            if self.on_error == "skip":
                log.warning("skipping %s (row %d of %s): %s", row["id"], index, self.name, exc)
                return None
            raise
        return {
            "index": index,
            "id": row["id"],
            "waveform": self._augmented(self._crop(wave, index, epoch, position), index, epoch, position),
            "caption": self.caption_for(index, epoch, position),
            "labels": tuple(sorted(row.get("labels") or ())),
            "fields": {name: row.get(name) for name in self.fields},
            "source": row.get("source", ""),
            "epoch": epoch,
            "position": position,
        }


class MixtureDataset(Dataset):
    """Several manifest datasets sampled with weights.

    Global indices concatenate the parts. Each epoch draws ``epoch_size`` samples (default: all rows of
    all parts) split between parts in proportion to ``weights`` (default: their sizes); a part walks its
    own reshuffled stream, so it repeats a clip only after using every clip (small parts are upsampled,
    large ones spread over epochs).
    """

    def __init__(
        self,
        parts: Sequence[ManifestDataset],
        weights: Sequence[float] | None = None,
        *,
        seed: int = 0,
        epoch_size: int | None = None,
    ) -> None:
        if not parts:
            raise ConfigError("a mixture needs at least one dataset")
        weights = [float(len(p)) for p in parts] if weights is None else [float(w) for w in weights]
        if (
            len(weights) != len(parts)
            or any(w < 0 or not np.isfinite(w) for w in weights)
            or sum(weights) <= 0
        ):
            raise ConfigError(f"mixture weights must be one non-negative number per part, got {weights}")
        self.parts = list(parts)
        self.weights = np.asarray(weights) / sum(weights)
        self.seed = seed
        self.epoch_size = int(epoch_size or sum(len(p) for p in parts))
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self.counts = self._allocate()
        self.epoch = 0

    @classmethod
    def from_manifests(
        cls,
        manifests: Sequence[str | os.PathLike],
        weights: Sequence[float] | None = None,
        *,
        seed: int = 0,
        epoch_size: int | None = None,
        **dataset_kwargs: Any,
    ) -> MixtureDataset:
        parts = [ManifestDataset(m, seed=seed, **dataset_kwargs) for m in manifests]
        return cls(parts, weights, seed=seed, epoch_size=epoch_size)

    def _allocate(self) -> np.ndarray:
        """Samples per part per epoch (largest remainder, so they sum to ``epoch_size``)."""
        exact = self.weights * self.epoch_size
        counts = np.floor(exact).astype(np.int64)
        for i in np.argsort(-(exact - counts), kind="stable")[: self.epoch_size - counts.sum()]:
            counts[i] += 1
        return counts

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def durations(self) -> np.ndarray:
        return np.concatenate([p.durations for p in self.parts])

    def _part_stream(self, part: int, start: int, count: int) -> np.ndarray:
        size = len(self.parts[part])
        out = []
        position = start
        while position < start + count:
            cycle, offset = divmod(position, size)
            perm = _rng(self.seed, _SOURCE, part, cycle).permutation(size)
            take = min(size - offset, start + count - position)
            out.append(perm[offset : offset + take])
            position += take
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The global indices drawn for ``epoch``, shuffled across parts."""
        chunks = [
            self.offsets[i] + self._part_stream(i, epoch * int(count), int(count))
            for i, count in enumerate(self.counts)
            if count
        ]
        order = np.concatenate(chunks)
        return _rng(self.seed, _ORDER, epoch).permutation(order)

    def locate(self, index: int) -> tuple[int, int]:
        part = int(np.searchsorted(self.offsets, index, side="right") - 1)
        if not 0 <= part < len(self.parts):
            raise IndexError(index)
        return part, index - int(self.offsets[part])

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any] | None:
        index, epoch, position = _unpack(key, self.epoch)
        part, local = self.locate(index)
        item = self.parts[part][SampleKey(local, epoch, position)]
        if item is not None:
            item["index"] = index
        return item


class BucketBatchSampler(Sampler[list[SampleKey]]):
    """Batches of similar-length clips, deterministic for a seed, resumable, split across ranks.

    Each epoch takes the dataset's ``epoch_order``, cuts it into pools of ``bucket_batches`` global batches,
    sorts each pool by duration, cuts it into global batches (``batch_size * num_replicas``) and shuffles the
    batch order. Rank ``r`` gets the ``r``-th contiguous slice of each global batch, so gathering the ranks'
    embeddings in rank order reproduces the single-process global batch. Without ``drop_last`` the last
    global batch is completed by wrapping around to the start of the epoch's order.
    """

    def __init__(
        self,
        dataset: ManifestDataset | MixtureDataset,
        batch_size: int,
        *,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = True,
        bucket_batches: int = 32,
        shuffle: bool = True,
    ) -> None:
        if num_replicas is None or rank is None:
            group_rank, group_size = world()
            num_replicas = num_replicas or group_size
            rank = rank if rank is not None else group_rank
        if batch_size < 1 or bucket_batches < 1:
            raise ConfigError(
                f"batch_size and bucket_batches must be >= 1, got {batch_size}, {bucket_batches}"
            )
        if not 0 <= rank < num_replicas:
            raise ConfigError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.drop_last = drop_last
        self.bucket_batches = bucket_batches
        self.shuffle = shuffle
        self.epoch = 0
        self.position = 0
        if self.num_batches() == 0:
            raise DataError(
                f"{len(self._order(0))} samples per epoch are fewer than one global batch of "
                f"{self.global_batch_size}; lower batch_size or set drop_last=False"
            )

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.num_replicas

    def _order(self, epoch: int) -> np.ndarray:
        if self.shuffle:
            return np.asarray(self.dataset.epoch_order(epoch))
        if isinstance(self.dataset, MixtureDataset):
            return np.sort(self.dataset.epoch_order(epoch))
        return np.arange(len(self.dataset))

    def num_batches(self, epoch: int | None = None) -> int:
        samples = len(self._order(self.epoch if epoch is None else epoch))
        whole, rest = divmod(samples, self.global_batch_size)
        return whole + (1 if rest and not self.drop_last else 0)

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """Every global batch of an epoch, in the order they will be served."""
        order = self._order(epoch)
        size = self.global_batch_size
        count = self.num_batches(epoch)
        order = np.resize(order, count * size)  # wraps around when padding, truncates when dropping
        durations = self.dataset.durations
        pool = size * self.bucket_batches
        batches: list[np.ndarray] = []
        for start in range(0, order.size, pool):
            chunk = order[start : start + pool]
            chunk = chunk[np.argsort(durations[chunk], kind="stable")]
            batches.extend(chunk[i : i + size] for i in range(0, chunk.size, size))
        if self.shuffle:
            batches = [batches[i] for i in _rng(self.seed, _BATCHES, epoch).permutation(len(batches))]
        return batches

    def __len__(self) -> int:
        return self.num_batches()

    def __iter__(self):
        epoch = self.epoch
        batches = self.global_batches(epoch)
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        while self.position < len(batches):
            position = self.position
            self.position += 1
            yield [SampleKey(int(i), epoch, position) for i in batches[position][lo:hi]]
        self.epoch, self.position = epoch + 1, 0

    def set_epoch(self, epoch: int) -> None:
        """Move to ``epoch`` from its start; calling it with the current epoch keeps a restored position."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def state_dict(self, after_batch: Any = None) -> dict[str, Any]:
        """Where to resume. Pass the last batch the trainer *consumed* (workers prefetch ahead of it)."""
        epoch, position = self.epoch, self.position
        if after_batch is not None:
            epoch, position = _epoch_position(after_batch)
            position += 1
            if position >= self.num_batches(epoch):
                epoch, position = epoch + 1, 0
        return {
            "epoch": epoch,
            "position": position,
            "seed": self.seed,
            "global_batch_size": self.global_batch_size,
            "samples": len(self.dataset),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, mine in (
            ("seed", self.seed),
            ("global_batch_size", self.global_batch_size),
            ("samples", len(self.dataset)),
        ):
            if state.get(key, mine) != mine:
                raise ConfigError(
                    f"cannot resume the batch sampler: saved {key}={state[key]} but this run has {mine}"
                )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def collate_audio_text(items: list[dict[str, Any] | None], *, pad: bool = False) -> dict[str, Any]:
    """Batch samples: waveform list with ``audio_lengths``; ``pad=True`` adds a zero-padded ``audio`` tensor.

    Samples that failed to decode under ``on_error="skip"`` (None) are dropped.
    """
    items = [item for item in items if item is not None]
    if not items:
        raise DataError("every sample of the batch failed to decode")
    waves = [item["waveform"] for item in items]
    lengths = torch.tensor([w.shape[0] for w in waves], dtype=torch.long)
    batch: dict[str, Any] = {
        "waveforms": waves,
        "audio_lengths": lengths,
        "captions": [item["caption"] for item in items],
        "labels": [item["labels"] for item in items],
        "fields": [item.get("fields") or {} for item in items],
        "ids": [item["id"] for item in items],
        "sources": [item["source"] for item in items],
        "indices": torch.tensor([item["index"] for item in items], dtype=torch.long),
        "epoch": items[0]["epoch"],
        "position": items[0]["position"],
    }
    if pad:
        audio = torch.zeros(len(waves), int(lengths.max()), dtype=torch.float32)
        for row, wave in enumerate(waves):
            audio[row, : wave.shape[0]] = torch.from_numpy(np.asarray(wave, dtype=np.float32))
        batch["audio"] = audio
    return batch


def make_dataloader(
    dataset: ManifestDataset | MixtureDataset,
    batch_size: int,
    *,
    seed: int = 0,
    num_workers: int = 0,
    num_replicas: int | None = None,
    rank: int | None = None,
    drop_last: bool = True,
    bucket_batches: int = 32,
    shuffle: bool = True,
) -> DataLoader:
    """A DataLoader decoding in ``num_workers`` processes; its ``batch_sampler`` holds the resume state."""
    sampler = BucketBatchSampler(
        dataset,
        batch_size,
        seed=seed,
        num_replicas=num_replicas,
        rank=rank,
        drop_last=drop_last,
        bucket_batches=bucket_batches,
        shuffle=shuffle,
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_audio_text,
        persistent_workers=False,
    )


def _epoch_position(batch: Any) -> tuple[int, int]:
    """Where a collated batch came from: a dict's keys or a typed batch's attributes."""
    if isinstance(batch, dict):
        return int(batch["epoch"]), int(batch["position"])
    return int(batch.epoch), int(batch.position)
