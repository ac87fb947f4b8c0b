"""From a recipe's data section to DataLoaders of model-ready batches (built on ``audiovec.data``).

Audio batches carry log-mel features, tokenized captions and the false-negative keys; text-pair batches
carry tokenized anchors/positives/negatives. Decoding, feature extraction and tokenization run inside
DataLoader workers; the batch sampler holds the resume position.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset

from audiovec.data.datasets import (
    BucketBatchSampler,
    ManifestDataset,
    MixtureDataset,
    SampleKey,
    collate_audio_text,
)
from audiovec.data.fsdd import bundled_files as fsdd_files
from audiovec.data.manifest import read_manifest
from audiovec.data.text_pairs import TextPairDataset, collate_text_pairs
from audiovec.errors import ConfigError
from audiovec.features import LogMelExtractor
from audiovec.train.batches import AudioCaptionBatch, TextPairBatch, Tokens
from audiovec.train.config import Recipe
from audiovec.train.loss import facet_label_keys, label_keys, text_keys

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_FSDD = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def fsdd_rows(n: int | None = None, split: str = "train", dev_every: int = 10) -> list[dict[str, Any]]:
    """Manifest rows for the bundled FSDD speech digits (tiny recipes, tests): ``{digit}_{speaker}_{k}.wav``
    → captions "a man saying seven" / "seven spoken by george", label the digit word. Recordings with
    ``k % dev_every == 0`` form the dev split."""
    rows = []
    for path in fsdd_files():
        match = _FSDD.match(path.name)
        if not match:
            continue
        digit, speaker, take = match.group(1), match.group(2), int(match.group(3))
        if (take % dev_every == 0) != (split == "dev"):
            continue
        word = DIGITS[int(digit)]
        rows.append(
            {
                "id": path.stem,
                "audio": str(path),
                "captions": [f"a man saying {word}", f"{word} spoken by {speaker}"],
                "labels": [word],
                "source": "fsdd",
            }
        )
    order = np.random.default_rng(0).permutation(len(rows))  # mix digits and speakers before cutting to n
    rows = [rows[i] for i in order]
    return rows[:n] if n is not None else rows


def manifest_entry(recipe: Recipe, entry: Any) -> tuple[Any, float]:
    """One ``data.train`` entry → (manifest path or rows, weight)."""
    weight = 1.0
    if isinstance(entry, dict):
        if "fsdd" in entry:
            return fsdd_rows(**(entry["fsdd"] or {})), float(entry.get("weight", 1.0))
        if "path" not in entry:
            raise ConfigError(f"data entry {entry!r}: expected a path, {{path, weight}} or {{fsdd: {{n}}}}")
        weight = float(entry.get("weight", 1.0))
        entry = entry["path"]
    if not isinstance(entry, str):
        raise ConfigError(f"data entry {entry!r}: expected a manifest path")
    return str(recipe.resolve(entry)), weight


def audio_dataset(
    recipe: Recipe,
    entries: list[Any],
    seed: int,
    balance: str = "none",
    rows: list[dict] | None = None,
    augment: bool = False,
) -> ManifestDataset | MixtureDataset:
    """The training clips of ``entries`` (manifest paths, ``{path, weight}``, ``{fsdd: ...}``; ``rows``: rows
    given directly, weight 1), plain or balanced by group (``balance="sqrt"``); ``augment``: apply the
    recipe's ``data.augment`` (training only: dev clips stay as recorded)."""
    parts = [manifest_entry(recipe, e) for e in entries] + ([(rows, 1.0)] if rows else [])
    kw = {
        "seed": seed,
        "max_seconds": recipe.data.max_seconds,
        "fields": recipe.train.false_negative_facets,
        "augment": recipe.data.augment if augment else None,
    }
    if balance == "sqrt":
        return _balanced(parts, recipe.data.balance_by, kw, seed)
    if len(parts) == 1:
        return ManifestDataset(parts[0][0], **kw)
    datasets = [ManifestDataset(source, **kw) for source, _ in parts]
    return MixtureDataset(datasets, [w for _, w in parts], seed=seed)


def _balanced(parts: list[tuple[Any, float]], key: str, kw: dict[str, Any], seed: int) -> MixtureDataset:
    """One mixture part per group of rows (``row[key]``, else its source, else itself), drawn in proportion
    to ``entry weight * sqrt(group size)``; an epoch still draws as many samples as there are rows."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for n, (source, _) in enumerate(parts):
        rows = read_manifest(source) if isinstance(source, str) else source
        for row in rows:
            name = str(row.get(key) or row.get("source") or row.get("id") or row["audio"])
            groups.setdefault((n, name), []).append(row)
    ordered = sorted(groups)
    datasets = [ManifestDataset(groups[g], **kw) for g in ordered]
    weights = [parts[n][1] * float(np.sqrt(len(groups[(n, name)]))) for n, name in ordered]
    return MixtureDataset(datasets, weights, seed=seed)


class TextPairs(Dataset):
    """Text-pair rows in the shape the bucketed batch sampler expects (epoch order, lengths)."""

    def __init__(self, sources: list[Any], recipe: Recipe, seed: int) -> None:
        rows: list[dict[str, Any]] = []
        for source in sources:
            rows.extend(
                TextPairDataset(str(recipe.resolve(source)) if isinstance(source, str) else source).rows
            )
        self.rows = rows
        self.seed = seed
        self.durations = np.array([len(r["anchor"]) + len(r["positive"]) for r in rows], dtype=np.float64)
        # one answer for the whole dataset, so every batch on every rank has the same parts (DDP gathers them)
        self.has_negatives = any(r.get("negative") is not None for r in rows)

    def __len__(self) -> int:
        return len(self.rows)

    def epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 7, epoch]).permutation(len(self.rows))

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        index, epoch, position = key
        return {**self.rows[index], "epoch": epoch, "position": position}


def collate_audio(
    items: list[dict[str, Any] | None],
    *,
    tokenizer: Any,
    n_mels: int,
    min_seconds: float = 0.0,
    facets: tuple[str, ...] = (),
) -> AudioCaptionBatch:
    """Waveforms → padded log-mel + lengths; captions → token ids; captions/labels (and the ``facets``
    captions name) → masking keys."""
    batch = collate_audio_text(items)
    audio = _extractor(n_mels, min_seconds).batch(batch["waveforms"])
    if facets:
        labels = facet_label_keys(batch["labels"], batch["fields"], batch["captions"], facets)
    else:
        labels = label_keys(batch["labels"])
    return AudioCaptionBatch(
        features=audio["features"],
        lengths=audio["lengths"],
        content_lengths=audio.get("content_lengths"),
        captions=_tokens(tokenizer, batch["captions"]),
        keys=[text_keys(batch["captions"]), labels],
        epoch=int(batch["epoch"]),
        position=int(batch["position"]),
    )


def _tokens(tokenizer: Any, texts: list[str]) -> Tokens:
    out = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    return Tokens(out["input_ids"], out["attention_mask"])


@functools.lru_cache(maxsize=4)
def _extractor(n_mels: int, min_seconds: float = 0.0) -> Any:
    return LogMelExtractor(n_mels, min_seconds=min_seconds)


def collate_pairs(
    items: list[dict[str, Any]], *, tokenizer: Any, with_negatives: bool | None = None
) -> TextPairBatch:
    """Anchors/positives (and hard negatives) → token ids and masking keys.

    With ``with_negatives`` (default: when any row of this batch has one) every batch carries a negative part:
    rows without a negative repeat their positive there and ``negative_valid`` marks them, so the loss drops
    those columns. Pass the dataset-wide answer under DDP, where every rank must gather the same parts.
    """
    batch = collate_text_pairs(items)
    has = batch["has_negative"]
    if with_negatives is None:
        with_negatives = bool(has.any())
    out = TextPairBatch(
        anchor=_tokens(tokenizer, batch["anchors"]),
        positive=_tokens(tokenizer, batch["positives"]),
        keys=[text_keys(batch["positives"]), text_keys(batch["anchors"])],
        epoch=int(items[0]["epoch"]),
        position=int(items[0]["position"]),
    )
    if with_negatives:
        negatives = [n if n is not None else p for n, p in zip(batch["negatives"], batch["positives"])]
        out.negative = _tokens(tokenizer, negatives)
        out.negative_keys = [text_keys(negatives)]
        out.negative_valid = has.clone()
    return out


def make_loader(
    recipe: Recipe,
    tokenizer: Any,
    n_mels: int,
    *,
    rank: int,
    world: int,
    dev: bool = False,
    min_seconds: float = 0.0,
) -> DataLoader:
    """The training (or dev) DataLoader for this process's slice of each global batch."""
    t, d = recipe.train, recipe.data
    if t.batch_size % world:
        raise ConfigError(f"train.batch_size {t.batch_size} is not divisible by the {world} processes")
    local = t.batch_size // world
    if dev:  # evaluation runs on rank 0 alone, over whole batches
        local, rank, world = t.batch_size, 0, 1
    if t.mode == "text" and not dev:
        dataset: Any = TextPairs(d.text_pairs, recipe, t.seed)
        collate = functools.partial(collate_pairs, tokenizer=tokenizer, with_negatives=dataset.has_negatives)
    else:
        entries = [d.dev] if dev else d.train
        dataset = audio_dataset(recipe, entries, t.seed, "none" if dev else d.balance, augment=not dev)
        if dev:
            dataset.rows = dataset.rows[: d.dev_max_items]
        collate = functools.partial(
            collate_audio,
            tokenizer=tokenizer,
            n_mels=n_mels,
            min_seconds=min_seconds,
            facets=tuple(t.false_negative_facets),
        )
    sampler = BucketBatchSampler(
        dataset,
        local,
        seed=t.seed,
        num_replicas=world,
        rank=rank,
        drop_last=not dev,
        bucket_batches=d.bucket_size,
        shuffle=not dev,
    )
    return DataLoader(dataset, batch_sampler=sampler, num_workers=d.num_workers, collate_fn=collate)
