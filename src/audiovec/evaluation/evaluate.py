"""Evaluate an embedder on retrieval sets, both directions, with an on-disk embedding cache.

The model only needs ``encode_audio(inputs, batch_size=..., sample_rate=...)`` and
``encode_text(texts, batch_size=...)`` returning one vector per input (``AudioTextEmbedder`` does).
Vectors are cached in one SQLite file per model fingerprint, keyed by file path + size + mtime (or by
content hash for bytes, arrays and texts), so re-running an evaluation only encodes what changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from audiovec.audio import SAMPLE_RATE, load_audio
from audiovec.errors import DataError
from audiovec.evaluation.metrics import (
    DEFAULT_KS,
    chance_metrics,
    per_query_metrics,
    relevant_ranks,
    retrieval_metrics,
    summarize,
)
from audiovec.evaluation.retrieval_sets import AudioRef, RetrievalSet

logger = logging.getLogger(__name__)

DIRECTIONS = ("t2a", "a2t")


class Embedder(Protocol):
    def encode_audio(self, inputs: Any, batch_size: int = ..., **kwargs: Any) -> np.ndarray: ...
    def encode_text(self, texts: Sequence[str], batch_size: int = ...) -> np.ndarray: ...


def default_cache_dir() -> Path:
    env = os.environ.get("AUDIOVEC_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "audiovec"
    return base / "embeddings"


def model_fingerprint(model: Any) -> str:
    """A stable id of the model's weights and settings: same model → same id, changed weight → new id.

    Uses ``model.fingerprint`` when present; otherwise hashes the config and, per tensor, its name, shape,
    dtype, sum and an evenly strided sample of values (cheap even for billions of parameters).
    """
    given = getattr(model, "fingerprint", None)
    if isinstance(given, str) and given:
        return given
    h = hashlib.sha256(type(model).__qualname__.encode())
    config = getattr(model, "config", None)
    if config is not None:
        if dataclasses.is_dataclass(config) and not isinstance(config, type):
            config = dataclasses.asdict(config)
        elif hasattr(config, "to_dict"):
            config = config.to_dict()
        if isinstance(config, dict) and config.get("matryoshka_dims", 0) is None:
            config = {k: v for k, v in config.items() if k != "matryoshka_dims"}  # ids from before the field
        h.update(json.dumps(config, sort_keys=True, default=str).encode())
    if getattr(model, "truncate_dim", None) is not None:  # encode_* give shorter vectors: another cache
        h.update(f"truncate_dim={model.truncate_dim}".encode())
    state_dict = getattr(model, "state_dict", None)
    if callable(state_dict):
        import torch

        with torch.no_grad():
            for name, tensor in sorted(state_dict().items()):
                flat = tensor.detach().reshape(-1)
                h.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}".encode())
                if flat.numel() and (flat.is_floating_point() or flat.dtype in (torch.int64, torch.int32)):
                    flat = flat.double().cpu()
                    step = max(1, flat.numel() // 4096)
                    h.update(flat[::step].numpy().tobytes())
                    h.update(np.float64(flat.sum().item()).tobytes())
    elif config is None:
        raise DataError(
            f"cannot fingerprint {type(model).__name__}: give it a 'fingerprint' string attribute"
        )
    return h.hexdigest()[:24]


class EmbeddingCache:
    """Vectors by key in ``<root>/<fingerprint>.sqlite`` (safe to share between processes)."""

    def __init__(self, root: str | os.PathLike, fingerprint: str) -> None:
        self.path = Path(root) / f"{fingerprint}.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        self._db.commit()

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for key, blob in self._db.execute(
                f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk
            ):
                out[key] = np.frombuffer(blob, dtype=np.float32).copy()
        return out

    def put(self, items: dict[str, np.ndarray]) -> None:
        rows = [(k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items.items()]
        self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)
        self._db.commit()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def audio_key(ref: AudioRef) -> str:
    """Cache key of a clip: path + size + mtime for files (no decode), content hash otherwise."""
    h = hashlib.sha1()
    if isinstance(ref, str):
        st = os.stat(ref)
        h.update(f"file|{os.path.abspath(ref)}|{st.st_size}|{st.st_mtime_ns}".encode())
    elif isinstance(ref, bytes):
        h.update(b"bytes|" + ref)
    else:
        wave, rate = ref
        h.update(f"array|{rate}|".encode() + np.ascontiguousarray(wave, dtype=np.float32).tobytes())
    return "a:" + h.hexdigest()


def text_key(text: str) -> str:
    return "t:" + hashlib.sha1(text.encode()).hexdigest()


def encode_audio_refs(model: Embedder, refs: Sequence[AudioRef], batch_size: int) -> np.ndarray:
    """Files and bytes go straight to the model; (wave, rate) pairs are resampled to 16 kHz first."""

    out: list[np.ndarray | None] = [None] * len(refs)
    direct = [i for i, r in enumerate(refs) if not isinstance(r, tuple)]
    arrays = [i for i, r in enumerate(refs) if isinstance(r, tuple)]
    if direct:
        vecs = model.encode_audio([refs[i] for i in direct], batch_size=batch_size)
        for i, v in zip(direct, np.asarray(vecs), strict=True):
            out[i] = v
    if arrays:
        waves = [load_audio(refs[i][0], sample_rate=refs[i][1]) for i in arrays]  # type: ignore[index]
        vecs = model.encode_audio(waves, batch_size=batch_size, sample_rate=SAMPLE_RATE)
        for i, v in zip(arrays, np.asarray(vecs), strict=True):
            out[i] = v
    return np.stack(out).astype(np.float32)  # type: ignore[arg-type]


def _cached(
    keys: list[str],
    encode: Callable[[list[int]], np.ndarray],
    cache: EmbeddingCache | None,
) -> tuple[np.ndarray, int]:
    """Vectors for ``keys``, encoding (via ``encode(indices)``) only those not in the cache."""
    found = cache.get(keys) if cache is not None else {}
    first: dict[str, int] = {}  # encode each missing key once
    for i, key in enumerate(keys):
        if key not in found:
            first.setdefault(key, i)
    todo_unique = list(first.values())
    if todo_unique:
        fresh = np.asarray(encode(todo_unique), dtype=np.float32)
        if fresh.ndim != 2 or fresh.shape[0] != len(todo_unique):
            raise DataError(f"model returned shape {fresh.shape} for {len(todo_unique)} inputs")
        new = {keys[i]: fresh[j] for j, i in enumerate(todo_unique)}
        if cache is not None:
            cache.put(new)
        found.update(new)
    return np.stack([found[k] for k in keys]), len(todo_unique)


def _normalise(x: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(x).all():
        raise DataError(f"{what}: the model produced non-finite vectors")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise DataError(f"{what}: the model produced an all-zero vector")
    return x / norms


def embed_set(
    model: Embedder,
    data: RetrievalSet,
    *,
    cache: EmbeddingCache | None = None,
    audio_batch_size: int = 16,
    text_batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """L2-normalised (audio, text) vectors of a set, and how many of each were freshly encoded."""
    akeys = [audio_key(r) for r in data.audio]
    tkeys = [text_key(t) for t in data.texts]
    audio, n_audio = _cached(
        akeys, lambda idx: encode_audio_refs(model, [data.audio[i] for i in idx], audio_batch_size), cache
    )
    text, n_text = _cached(
        tkeys, lambda idx: model.encode_text([data.texts[i] for i in idx], batch_size=text_batch_size), cache
    )
    if audio.shape[1] != text.shape[1]:
        raise DataError(f"{data.name}: audio dim {audio.shape[1]} != text dim {text.shape[1]}")
    return (
        _normalise(audio, f"{data.name} audio"),
        _normalise(text, f"{data.name} text"),
        {
            "audio_encoded": n_audio,
            "text_encoded": n_text,
        },
    )


def score_set(
    audio: np.ndarray,
    text: np.ndarray,
    data: RetrievalSet,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Metrics both directions plus chance levels and sizes, from precomputed vectors."""
    t2a_rel = data.t2a_relevant()
    a2t_queries, a2t_rel = data.a2t_relevant()
    return {
        "t2a": retrieval_metrics(text, audio, t2a_rel, ks=ks, chunk_size=chunk_size),
        "a2t": retrieval_metrics(audio[a2t_queries], text, a2t_rel, ks=ks, chunk_size=chunk_size),
        "chance": {
            "t2a": chance_metrics(len(audio), [len(r) for r in t2a_rel], ks),
            "a2t": chance_metrics(len(text), [len(r) for r in a2t_rel], ks),
        },
        "sizes": {
            "clips": len(data.audio),
            "texts": len(data.texts),
            "pairs": len(data.pairs),
            "t2a_queries": len(t2a_rel),
            "a2t_queries": len(a2t_queries),
        },
    }


def score_by_group(
    audio: np.ndarray,
    text: np.ndarray,
    data: RetrievalSet,
    groups: Sequence[str],
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, Any]:
    """Metrics per group of clips (a category, a source), both directions, against the WHOLE set: a text
    query counts for the group of the clips it describes (its first one), a clip for its own group. Also
    ``macro``: the unweighted mean over groups, so a big group cannot hide a weak one."""
    if len(groups) != len(data.audio):
        raise DataError(f"{data.name}: {len(groups)} group names for {len(data.audio)} clips")
    t2a_rel = data.t2a_relevant()
    a2t_queries, a2t_rel = data.a2t_relevant()
    t2a = per_query_metrics(*relevant_ranks(text, audio, t2a_rel), ks)
    a2t = per_query_metrics(*relevant_ranks(audio[a2t_queries], text, a2t_rel), ks)
    t2a_group = np.array([groups[rel[0]] for rel in t2a_rel])
    a2t_group = np.array([groups[a] for a in a2t_queries])
    out: dict[str, Any] = {}
    for group in sorted(set(groups)):
        t_mask, a_mask = t2a_group == group, a2t_group == group
        out[group] = {
            "t2a": summarize({k: v[t_mask] for k, v in t2a.items()}) if t_mask.any() else {},
            "a2t": summarize({k: v[a_mask] for k, v in a2t.items()}) if a_mask.any() else {},
            "clips": int(sum(g == group for g in groups)),
            "t2a_queries": int(t_mask.sum()),
        }
    macro = {}
    for direction in ("t2a", "a2t"):
        values = [g[direction] for g in out.values() if g[direction]]
        macro[direction] = {k: float(np.mean([v[k] for v in values])) for k in values[0]} if values else {}
    return {"groups": out, "macro": macro}


def evaluate(
    model: Embedder,
    sets: Sequence[RetrievalSet],
    *,
    ks: Sequence[int] = DEFAULT_KS,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    audio_batch_size: int = 16,
    text_batch_size: int = 64,
    chunk_size: int | None = None,
    group_by: str | None = None,
) -> dict[str, dict[str, Any]]:
    """``{set name: {"t2a": {metric: value}, "a2t": {...}, "chance": {...}, "sizes": {...}}}``.

    ``group_by`` names a per-clip field of the sets' ``meta`` (``from_manifest`` keeps ``category``,
    ``source`` and ``kind``): the result then also holds ``by_<field>`` (see :func:`score_by_group`)."""
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise DataError(f"two evaluation sets share a name: {names}")
    cache = None
    if use_cache:
        cache = EmbeddingCache(cache_dir or default_cache_dir(), model_fingerprint(model))
    results: dict[str, dict[str, Any]] = {}
    try:
        for data in sets:
            start = time.perf_counter()
            audio, text, encoded = embed_set(
                model, data, cache=cache, audio_batch_size=audio_batch_size, text_batch_size=text_batch_size
            )
            result = score_set(audio, text, data, ks, chunk_size)
            if group_by is not None:
                groups = data.meta.get(group_by)
                if groups is None:
                    raise DataError(f"{data.name}: its clips have no {group_by!r} to group by")
                result[f"by_{group_by}"] = score_by_group(audio, text, data, groups, ks)
            result["encoded"] = encoded
            result["seconds"] = round(time.perf_counter() - start, 3)
            logger.info(
                "%s: t2a hit_rate@5 %.4f, a2t hit_rate@5 %.4f (%d clips, %d texts, %d newly encoded)",
                data.name,
                result["t2a"].get("hit_rate@5", float("nan")),
                result["a2t"].get("hit_rate@5", float("nan")),
                len(data.audio),
                len(data.texts),
                encoded["audio_encoded"] + encoded["text_encoded"],
            )
            results[data.name] = result
    finally:
        if cache is not None:
            cache.close()
    return results
