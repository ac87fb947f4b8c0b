"""Retrieval benchmarks from local disk: manifests, the official AudioCaps / Clotho / AudioSet-strong
layouts, and MTEB task datasets saved with ``datasets.save_to_disk`` or as parquet.

Everything becomes a :class:`RetrievalSet`: audio clips, caption texts and the (text, clip) pairs that are
relevant. Identical captions (after trimming whitespace) are merged into one text relevant to every clip
that carries it, as MTEB's v2 audio tasks do, so a repeated query is not scored against itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audiovec.data.manifest import read_manifest
from audiovec.data.prepare import preparer
from audiovec.errors import DataError

# a clip: a file path, encoded bytes, or a decoded (waveform, sample_rate) pair
AudioRef = str | bytes | tuple[np.ndarray, int]


@dataclass
class RetrievalSet:
    """Clips, texts and which texts describe which clips (binary relevance)."""

    name: str
    audio: list[AudioRef]
    audio_ids: list[str]
    texts: list[str]
    pairs: list[tuple[int, int]]  # (text index, audio index)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.audio:
            raise DataError(f"{self.name}: no audio clips")
        if not self.texts:
            raise DataError(f"{self.name}: no captions")
        if len(self.audio_ids) != len(self.audio):
            raise DataError(f"{self.name}: {len(self.audio)} clips but {len(self.audio_ids)} ids")
        for t, a in self.pairs:
            if not (0 <= t < len(self.texts) and 0 <= a < len(self.audio)):
                raise DataError(f"{self.name}: relevance pair ({t}, {a}) out of range")
        self.pairs = sorted(set(self.pairs))
        described = {t for t, _ in self.pairs}
        if len(described) != len(self.texts):
            missing = next(i for i in range(len(self.texts)) if i not in described)
            raise DataError(f"{self.name}: caption {self.texts[missing]!r} is relevant to no clip")

    def t2a_relevant(self) -> list[list[int]]:
        """For every text, the clips it describes."""
        out: list[list[int]] = [[] for _ in self.texts]
        for t, a in self.pairs:
            out[t].append(a)
        return out

    def a2t_relevant(self) -> tuple[list[int], list[list[int]]]:
        """Clips that have at least one caption (the a2t queries) and, for each, its captions."""
        by_clip: dict[int, list[int]] = {}
        for t, a in self.pairs:
            by_clip.setdefault(a, []).append(t)
        clips = sorted(by_clip)
        return clips, [by_clip[a] for a in clips]


def from_captioned_clips(
    name: str,
    clips: Iterable[tuple[str, AudioRef, Sequence[str]]],
    *,
    meta: dict[str, Any] | None = None,
) -> RetrievalSet:
    """Build a set from (clip id, audio, captions); identical captions are merged across clips."""
    audio: list[AudioRef] = []
    ids: list[str] = []
    texts: list[str] = []
    index: dict[str, int] = {}
    pairs: list[tuple[int, int]] = []
    for clip_id, ref, captions in clips:
        a = len(audio)
        audio.append(ref)
        ids.append(clip_id)
        for caption in captions:
            text = caption.strip()
            if not text:
                continue
            if text not in index:
                index[text] = len(texts)
                texts.append(text)
            pairs.append((index[text], a))
    return RetrievalSet(name, audio, ids, texts, pairs, dict(meta or {}))


def from_manifest(path: str | os.PathLike, name: str | None = None) -> RetrievalSet:
    """A manifest (JSONL, audio relative to its folder): every caption is a query for its clip."""

    rows = read_manifest(path)
    missing = [row["audio"] for row in rows if not Path(row["audio"]).is_file()]
    if missing:
        raise DataError(f"{path}: {len(missing)} audio file(s) not found, first {missing[0]}")
    per_clip = {
        key: [str(row.get(key) or "unknown") for row in rows] for key in ("category", "source", "kind")
    }
    return from_captioned_clips(
        name or Path(path).stem,
        ((row["id"], row["audio"], row["captions"]) for row in rows),
        meta={"manifest": str(path), **per_clip},
    )


# ---------------------------------------------------------------- official layouts


def read_official(name: str, root: str | os.PathLike, split: str) -> RetrievalSet:
    """A benchmark split in its official layout, read by the data preparers (``audiovec.data.prepare``).

    AudioCaps and Clotho keep their human captions. AudioSet-strong uses its event names (``labels``) as
    the texts, as MTEB's AudioSetStrong tasks do: each name is relevant to every clip it occurs in.
    """

    root = Path(root)
    rows = preparer(name).prepare(root, splits=[split])
    if not rows:
        raise DataError(f"{root}: no {name} {split} clips with audio found")
    use_labels = name.replace("-", "_") == "audioset_strong"
    clips = ((row["id"], row["audio"], row.get("labels") if use_labels else row["captions"]) for row in rows)
    return from_captioned_clips(name, clips, meta={"source": str(root), "split": split})


# ---------------------------------------------------------------- MTEB datasets saved locally


def is_mteb_layout(root: str | os.PathLike) -> bool:
    root = Path(root)
    return (root / "corpus").exists() and (root / "queries").exists()


def _read_table(folder: Path, split: str) -> list[dict[str, Any]]:
    """Rows of one MTEB config saved with save_to_disk (Dataset or DatasetDict) or as parquet files."""
    if (folder / "dataset_info.json").exists() or (folder / "dataset_dict.json").exists():
        import datasets

        ds = datasets.load_from_disk(str(folder))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise DataError(f"{folder}: no split {split!r} (has {sorted(ds)})")
            ds = ds[split]
        for col, feature in ds.features.items():
            if isinstance(feature, datasets.Audio):
                ds = ds.cast_column(col, datasets.Audio(decode=False))
        return ds.to_list()
    files = sorted(folder.rglob("*.parquet")) if folder.is_dir() else [folder]
    split_files = [f for f in files if f.name.startswith(split) or f.parent.name == split]
    files = split_files or files
    if not files:
        raise DataError(f"{folder}: no parquet files or save_to_disk dataset")
    import pyarrow.parquet as pq

    return [row for f in files for row in pq.read_table(f).to_pylist()]


def _audio_ref(value: Any, base: Path, where: str) -> AudioRef:
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("array") is not None and value.get("sampling_rate"):
            return (np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"]))
        value = value.get("path")
    if isinstance(value, str) and value:
        path = Path(value) if Path(value).is_absolute() else base / value
        if path.is_file():
            return str(path)
    raise DataError(f"{where}: audio cell is neither bytes, an array nor an existing file: {str(value)[:80]}")


def read_mteb_dataset(root: str | os.PathLike, split: str = "test", name: str | None = None) -> RetrievalSet:
    """An MTEB Any2Any audio retrieval dataset: ``corpus/``, ``queries/`` and ``qrels/`` (or ``default/``),
    each saved with ``save_to_disk`` or as parquet. Works for t2a (audio corpus) and a2t (audio queries)."""
    root = Path(root)
    qrels_dir = next((root / n for n in ("qrels", "default") if (root / n).exists()), None)
    if not is_mteb_layout(root) or qrels_dir is None:
        raise DataError(f"{root}: expected corpus/, queries/ and qrels/ (or default/) folders")
    corpus = _read_table(root / "corpus", split)
    queries = _read_table(root / "queries", split)
    qrels = _read_table(qrels_dir, split)
    audio_side, text_side = (corpus, queries) if corpus and "audio" in corpus[0] else (queries, corpus)
    if not audio_side or "audio" not in audio_side[0]:
        raise DataError(f"{root}: neither corpus nor queries has an 'audio' column")
    audio_ids = [str(r["id"]) for r in audio_side]
    audio_pos = {a: i for i, a in enumerate(audio_ids)}
    texts_by_id: dict[str, str] = {}
    for r in text_side:
        body = r.get("text") or " ".join(x for x in (r.get("title"), r.get("body")) if x)
        texts_by_id[str(r["id"])] = body
    text_side_is_query = text_side is queries
    captions: list[list[str]] = [[] for _ in audio_ids]
    for r in qrels:
        if float(r.get("score", 1)) <= 0:
            continue
        q, c = str(r["query-id"]), str(r["corpus-id"])
        text_id, audio_id = (q, c) if text_side_is_query else (c, q)
        if text_id in texts_by_id and audio_id in audio_pos:
            captions[audio_pos[audio_id]].append(texts_by_id[text_id])
    refs = [_audio_ref(r["audio"], root, f"{root} row {r['id']}") for r in audio_side]
    return from_captioned_clips(
        name or root.name,
        zip(audio_ids, refs, captions, strict=True),
        meta={"source": str(root), "format": "mteb"},
    )


# ---------------------------------------------------------------- benchmark names

BENCHMARKS: dict[str, dict[str, Any]] = {
    "audiocaps": {
        "preparer": "audiocaps",
        "split": "test",
        "folders": ("audiocaps", "AudioCaps", "audiocaps_t2a"),
    },
    "clotho": {
        "preparer": "clotho",
        "split": "evaluation",
        "folders": ("clotho", "Clotho", "clotho_t2a_v2", "clotho_t2a"),
    },
    "audioset-strong": {
        "preparer": "audioset_strong",
        "split": "eval",
        "folders": ("audioset-strong", "audioset_strong", "AudioSetStrong", "audioset_strong_t2a"),
    },
}


def load_benchmark(name: str, data_root: str | os.PathLike, split: str | None = None) -> RetrievalSet:
    """A named benchmark from ``data_root/<folder>``: an MTEB layout if present, else the official one."""
    key = name.lower().replace("_", "-")
    if key not in BENCHMARKS:
        raise DataError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    spec = BENCHMARKS[key]
    data_root = Path(data_root)
    folder = next((data_root / f for f in spec["folders"] if (data_root / f).is_dir()), None)
    if folder is None:
        raise DataError(f"{data_root}: no folder for {key} (expected one of {', '.join(spec['folders'])})")
    if is_mteb_layout(folder):
        return read_mteb_dataset(folder, split or "test", name=key)
    result = read_official(spec["preparer"], folder, split or spec["split"])
    result.name = key
    return result
