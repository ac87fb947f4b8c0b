"""Quantised first-pass search for an :class:`~audiovec.apps.index.AudioIndex`, re-scored with float vectors.

An index built with ``precision="int8"`` or ``"binary"`` keeps, next to its LanceDB table (whose float
vectors stay the source of truth), a quantised copy of every row's vector in ``DIR/quantized/``: int8 codes
(sentence-transformers' int8, per-dimension ranges calibrated on the indexed vectors themselves) or packed
sign bits. A query is quantised the same way, the top ``k * rescore_multiplier`` rows are found on the
codes (int8: inner product with usearch's SIMD kernels; binary: Hamming distance with numpy's popcount),
then those candidates' float vectors are read from LanceDB by row id and re-ranked by exact cosine — the
rescoring of sentence-transformers' ``semantic_search_usearch`` / usearch's docs, with the true floats.

The copy is rebuilt when the table's version differs from the one it was made from (rows added or
deleted), so it never returns rows that are gone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from audiovec.errors import ConfigError
from audiovec.quantize import quantize_embeddings, ranges_of

INDEX_PRECISIONS = ("float32", "int8", "binary")
DEFAULT_RESCORE_MULTIPLIER = 4  # candidates re-scored per result (sentence-transformers' blog, usearch docs)
FOLDER = "quantized"


def check_index_precision(precision: str) -> str:
    if precision not in INDEX_PRECISIONS:
        hint = (
            " (uint8 / ubinary search the same as int8 / binary)" if precision in ("uint8", "ubinary") else ""
        )
        raise ConfigError(f"index precision {precision!r}: use one of {', '.join(INDEX_PRECISIONS)}{hint}")
    return precision


class QuantizedVectors:
    """The quantised copy of one index's vectors: codes, their LanceDB row ids, int8 ranges."""

    def __init__(self, codes: np.ndarray, row_ids: np.ndarray, precision: str, ranges: np.ndarray | None):
        self.codes, self.row_ids, self.precision, self.ranges = codes, row_ids, precision, ranges
        self.version: int | None = None  # the table version the codes were made from
        self._words = None
        if precision == "binary" and codes.shape[1] % 8 == 0:  # popcount 8 bytes at a time
            self._words = np.ascontiguousarray(codes).view(np.uint64)

    # ------------------------------------------------------------------ building and storing
    @classmethod
    def build(cls, table: Any, precision: str, batch_rows: int = 65536) -> QuantizedVectors:
        """Read every row's float vector (in batches) and quantise it; int8 ranges come from the vectors."""
        ids, floats = [], []
        reader = table.search().with_row_id(True).select(["vector"]).limit(None).to_batches(batch_rows)
        for batch in reader:
            flat = batch.column("vector").flatten().to_numpy(zero_copy_only=False)
            floats.append(np.asarray(flat, dtype=np.float32).reshape(batch.num_rows, -1))
            ids.append(batch.column("_rowid").to_numpy())
        vectors = np.concatenate(floats) if floats else np.zeros((0, 1), np.float32)
        row_ids = np.concatenate(ids).astype(np.uint64) if ids else np.zeros(0, np.uint64)
        ranges = ranges_of(vectors) if precision == "int8" and len(vectors) >= 2 else None
        if precision == "int8" and ranges is None:  # one row: any range holds it
            ranges = np.vstack((vectors.min(0) - 1e-3, vectors.max(0) + 1e-3)) if len(vectors) else None
        codes = _quantize(vectors, precision, ranges)
        return cls(codes, row_ids, precision, ranges)

    def save(self, folder: Path, version: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / self.precision
        for name, array in (("codes", self.codes), ("rowids", self.row_ids)):
            tmp = stem.with_name(f".{stem.name}.{name}.{os.getpid()}.npy")
            np.save(tmp, array)
            os.replace(tmp, stem.with_name(f"{stem.name}.{name}.npy"))
        meta = {"version": int(version), "rows": len(self.codes), "precision": self.precision}
        meta["ranges"] = None if self.ranges is None else self.ranges.tolist()
        tmp = stem.with_name(f".{stem.name}.json.{os.getpid()}")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, stem.with_name(f"{stem.name}.json"))  # written last: marks the copy complete

    @classmethod
    def load(cls, folder: Path, precision: str, version: int) -> QuantizedVectors | None:
        """The stored copy if it was made from table ``version``, else None."""
        stem = folder / precision
        try:
            meta = json.loads(stem.with_name(f"{stem.name}.json").read_text())
            if meta.get("version") != int(version):
                return None
            codes = np.load(stem.with_name(f"{stem.name}.codes.npy"), mmap_mode="r")
            row_ids = np.load(stem.with_name(f"{stem.name}.rowids.npy"))
        except (OSError, ValueError):
            return None
        ranges = None if meta.get("ranges") is None else np.asarray(meta["ranges"], dtype=np.float32)
        return cls(np.asarray(codes), row_ids, precision, ranges)

    def nbytes(self) -> int:
        return int(self.codes.nbytes)

    # ------------------------------------------------------------------ searching
    def candidates(self, query: np.ndarray, count: int) -> np.ndarray:
        """Positions of the ``count`` best rows for a float query, by the quantised similarity."""
        n = len(self.codes)
        count = min(count, n)
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        q = _quantize(query[None, :].astype(np.float32), self.precision, self.ranges)[0]
        if self.precision == "binary":
            if self._words is not None:
                distance = np.bitwise_count(self._words ^ q.view(np.uint64)).sum(axis=1, dtype=np.int64)
            else:
                distance = np.bitwise_count(self.codes ^ q).sum(axis=1, dtype=np.int64)
            best = np.argpartition(distance, count - 1)[:count] if count < n else np.arange(n)
            return best[np.argsort(distance[best], kind="stable")]
        from usearch.index import MetricKind, search

        found = search(self.codes, q, count, MetricKind.IP, exact=True, threads=1)
        keys = np.asarray(found.keys, dtype=np.int64).reshape(-1)  # one query: Matches, `count` long
        return keys[: int(getattr(found, "count", len(keys)))]


def _quantize(vectors: np.ndarray, precision: str, ranges: np.ndarray | None) -> np.ndarray:
    """Codes as searched: int8 (sentence-transformers' int8) or packed bits (its ``ubinary``)."""
    if precision == "binary":
        return quantize_embeddings(vectors, "ubinary")
    return quantize_embeddings(vectors, "int8", ranges=ranges)


def rescore(table: Any, query: np.ndarray, row_ids: np.ndarray, k: int) -> list[dict[str, Any]]:
    """The candidates' rows with their float vectors, re-ranked by exact cosine to ``query``; top ``k``."""
    if len(row_ids) == 0:
        return []
    rows = (
        table.take_row_ids([int(r) for r in row_ids])
        .with_row_id()
        .select(["path", "start", "end", "window", "vector"])
        .to_arrow()
    )
    if rows.num_rows == 0:
        return []
    vectors = np.asarray(rows.column("vector").combine_chunks().flatten().to_numpy(), dtype=np.float32)
    vectors = vectors.reshape(rows.num_rows, -1)
    q = query / max(float(np.linalg.norm(query)), 1e-12)
    norms = np.maximum(np.linalg.norm(vectors, axis=1), 1e-12)
    scores = (vectors @ q) / norms
    order = np.argsort(-scores, kind="stable")[:k]
    data = rows.select(["path", "start", "end", "window"]).to_pydict()
    return [{**{c: data[c][i] for c in data}, "score": float(scores[i])} for i in order]


def folder_of(db_dir: str | os.PathLike) -> Path:
    return Path(db_dir) / FOLDER


def add_vectors(
    index: Any, keys: list[str], vectors: np.ndarray, precision: str = "float32", fingerprint: str = "vectors"
) -> None:
    """Store precomputed vectors as one-window rows named ``keys`` (benchmarks, planted-vector tests): the
    same table and metadata ``AudioIndex.add`` writes, without a model."""
    import pyarrow as pa

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    meta = index.meta()
    if meta and meta.get("dim") not in (None, dim):
        raise ConfigError(f"{index.dir}: stores {meta['dim']}-d vectors, not {dim}-d")
    index.write_meta(
        {**meta, "format": 1, "table": index.table_name, "fingerprint": meta.get("fingerprint", fingerprint),
         "dim": dim, "model_dim": meta.get("model_dim", dim), "truncate_dim": meta.get("truncate_dim"),
         "precision": check_index_precision(precision), "window_seconds": meta.get("window_seconds", 1.0)}
    )  # fmt: skip
    columns = {
        "path": pa.array(keys, pa.string()),
        "start": pa.array(np.zeros(n), pa.float64()),
        "end": pa.array(np.ones(n), pa.float64()),
        "window": pa.array(np.zeros(n, dtype=np.int32)),
        "n_windows": pa.array(np.ones(n, dtype=np.int32)),
        "window_s": pa.array(np.ones(n), pa.float64()),
        "hash": pa.array(keys, pa.string()),
        "model": pa.array([meta.get("fingerprint", fingerprint)] * n, pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim),
    }
    index.table(dim).add(pa.Table.from_pydict(columns, schema=index.schema(dim)))


def set_precision(index: Any, precision: str) -> None:
    """Switch an index's search between float32 and a quantised copy (built at the next search)."""
    meta = index.meta()
    index.write_meta({**meta, "precision": check_index_precision(precision)})
    index._quantized = None


def search_quantized(
    index: Any, query: np.ndarray, k: int, precision: str, multiplier: int | None
) -> list[dict]:
    """The top ``k`` rows of ``index`` for ``query``: ``k * multiplier`` candidates from the quantised copy
    (loaded, or rebuilt when the table moved on), re-scored with their float vectors."""
    multiplier = DEFAULT_RESCORE_MULTIPLIER if multiplier is None else int(multiplier)
    if multiplier < 1:
        raise ValueError(f"rescore_multiplier must be >= 1, got {multiplier}")
    table = index.table()
    version = int(table.version)
    q = getattr(index, "_quantized", None)
    if q is None or q.precision != precision or q.version != version:
        q = QuantizedVectors.load(folder_of(index.dir), precision, version)
        if q is None:
            q = QuantizedVectors.build(table, precision)
            q.save(folder_of(index.dir), version)
        q.version = version
        index._quantized = q  # kept on the index object: the next search at this version reuses it
    ids = q.row_ids[q.candidates(query, k * multiplier)]
    return rescore(table, query, ids, k)
