"""An HNSW graph (usearch) beside an :class:`~audiovec.apps.index.AudioIndex`'s LanceDB table, for fast search.

LanceDB stays the store: every row (path, window, times, float32 vector) lives in its table. The sidecar is
a usearch HNSW index over the same vectors, keyed by LanceDB's ``_rowid``, in two files beside the table:
``audiovec-ann.usearch`` (the graph) and ``audiovec-ann.json`` (its settings and the table version it
mirrors). Why: at 1M clustered 384-d vectors on 2 cores LanceDB's IVF indexes stay above 10 ms per query at
recall@10 0.95, an HNSW graph is well under it (docs/benchmarks.md, search at 1M).

A search asks the graph for ``candidates`` row ids, fetches those rows from LanceDB by id
(``take_row_ids``), re-scores them exactly with their float32 vectors and returns the top ``k``, so scores
are exact cosines of real rows and int8 graph vectors (``dtype="i8"``, 4x smaller) cost no precision in
the scores, only (measured) recall.

Sync: LanceDB row ids of existing rows do not change on ``add`` or ``delete`` (compaction, which audiovec
never runs, renumbers them, and so does the one-time overwrite of ``AudioIndex.add_embedding_metadata``,
which empties and refills the graph itself; rebuild after ``table.optimize()``). :meth:`HnswSidecar.sync` diffs the
table's row ids with the graph's keys, adds the new rows and removes the deleted ones; ``AudioIndex.add``
calls it after every run, and a search first syncs when the table version moved (another writer).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from audiovec.errors import ConfigError

GRAPH_NAME = "audiovec-ann.usearch"
META_NAME = "audiovec-ann.json"
DTYPES = ("f32", "f16", "i8")
DEFAULT_DTYPE = "i8"
DEFAULT_CONNECTIVITY = 32  # HNSW neighbours per node (M); 16 left 1M clustered rows at recall ~0.94
DEFAULT_EXPANSION_ADD = 128  # efConstruction (docs/benchmarks.md section 11)
DEFAULT_EF = 64  # efSearch when not told (at least the candidates asked for)
CANDIDATE_FACTOR = 2  # graph candidates fetched and re-scored exactly per result asked for
SCAN_ROWS = 65_536


def _usearch() -> Any:
    try:
        from usearch.index import Index
    except ImportError:
        raise ConfigError(
            "the HNSW index needs the usearch package: pip install 'audiovec[ann]' (or pip install usearch)"
        ) from None
    return Index


def exists(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` (an index folder) holds a sidecar."""
    return (Path(folder) / META_NAME).is_file()


def check_available() -> None:
    """Raise a ConfigError naming the extra when usearch is not installed (before any long work)."""
    _usearch()


def drop(folder: str | os.PathLike) -> None:
    """Delete the sidecar files of ``folder`` (the table was dropped or the graph is no longer wanted)."""
    for name in (META_NAME, GRAPH_NAME):
        (Path(folder) / name).unlink(missing_ok=True)


def table_row_ids(table: Any) -> np.ndarray:
    """Every live row id of a LanceDB table, as uint64."""
    data = table.search().select([]).with_row_id(True).limit(None).to_arrow()
    return np.asarray(data["_rowid"].to_numpy(), dtype=np.uint64)


def _vectors(column: Any) -> np.ndarray:
    """A pyarrow fixed-size-list column → (rows, dim) float32."""
    chunks = column.chunks if hasattr(column, "chunks") else [column]
    parts = [
        np.asarray(c.values.to_numpy(zero_copy_only=False), np.float32).reshape(len(c), -1) for c in chunks
    ]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


class HnswSidecar:
    """The usearch HNSW graph of an index folder: build, keep in sync with the table, search."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        try:
            self.settings: dict[str, Any] = json.loads((self.folder / META_NAME).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{self.folder / META_NAME}: unreadable HNSW sidecar settings ({exc}); rebuild it with "
                "AudioIndex.build_index('hnsw')"
            ) from None
        self.graph = self._new_graph()
        self.graph.load(str(self.folder / GRAPH_NAME))

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        table: Any,
        folder: str | os.PathLike,
        dim: int,
        *,
        dtype: str = DEFAULT_DTYPE,
        connectivity: int = DEFAULT_CONNECTIVITY,
        expansion_add: int = DEFAULT_EXPANSION_ADD,
        ef: int = DEFAULT_EF,
        threads: int = 0,
    ) -> HnswSidecar:
        """A new graph over every row of ``table`` (vectors read ``SCAN_ROWS`` at a time), saved in ``folder``."""
        if dtype not in DTYPES:
            raise ConfigError(f"HNSW dtype must be one of {DTYPES}, got {dtype!r}")
        for name, value in (("connectivity", connectivity), ("expansion_add", expansion_add), ("ef", ef)):
            if int(value) < 2:
                raise ConfigError(f"HNSW {name} must be >= 2, got {value}")
        _usearch()
        folder = Path(folder)
        drop(folder)
        self = cls.__new__(cls)
        self.folder = folder
        self.settings = {
            "format": 1,
            "library": "usearch",
            "metric": "cos",
            "dim": int(dim),
            "dtype": dtype,
            "connectivity": int(connectivity),
            "expansion_add": int(expansion_add),
            "ef": int(ef),
            "table_version": None,
        }
        self.graph = self._new_graph()
        reader = table.search().select(["vector"]).with_row_id(True).limit(None).to_batches(SCAN_ROWS)
        for batch in reader:
            if batch.num_rows:
                keys = np.asarray(batch.column("_rowid").to_numpy(), dtype=np.uint64)
                self.graph.add(keys, _vectors(batch.column("vector")), threads=threads)
        self.save(int(table.version))
        return self

    def _new_graph(self) -> Any:
        s = self.settings
        return _usearch()(
            ndim=s["dim"],
            metric="cos",
            dtype=s["dtype"],
            connectivity=s["connectivity"],
            expansion_add=s["expansion_add"],
            expansion_search=s["ef"],
        )

    def save(self, table_version: int) -> None:
        """Write the graph, then the settings (each via a temporary file and a rename)."""
        self.settings["table_version"] = int(table_version)
        self.settings["rows"] = len(self.graph)
        tmp = self.folder / f".{GRAPH_NAME}.{os.getpid()}.tmp"
        self.graph.save(str(tmp))
        os.replace(tmp, self.folder / GRAPH_NAME)
        tmp = self.folder / f".{META_NAME}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(self.settings, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.folder / META_NAME)

    def reset(self) -> None:
        """Empty the graph (same settings): the next :meth:`sync` adds every row of the table."""
        self.graph = self._new_graph()
        self.save(-1)

    def sync(self, table: Any, threads: int = 0) -> tuple[int, int]:
        """Add the table's rows the graph lacks and remove the ones deleted → (added, removed)."""
        version = int(table.version)
        if version == self.settings.get("table_version"):
            return 0, 0
        live = table_row_ids(table) if table.count_rows() else np.zeros(0, np.uint64)
        have = np.asarray(self.graph.keys, dtype=np.uint64) if len(self.graph) else np.zeros(0, np.uint64)
        gone = np.setdiff1d(have, live, assume_unique=True)
        new = np.setdiff1d(live, have, assume_unique=True)
        if gone.size:
            self.graph.remove(gone)
        for lo in range(0, new.size, SCAN_ROWS):
            ids = new[lo : lo + SCAN_ROWS]
            data = table.take_row_ids(ids.tolist()).select(["vector"]).with_row_id().to_arrow()
            keys = np.asarray(data["_rowid"].to_numpy(), dtype=np.uint64)
            self.graph.add(keys, _vectors(data["vector"]), threads=threads)
        self.save(version)
        return int(new.size), int(gone.size)

    # ------------------------------------------------------------------ querying
    def candidates(self, query: np.ndarray, count: int, ef: int | None = None) -> np.ndarray:
        """The graph's ``count`` nearest row ids to ``query`` (approximate, int8/f16/f32 distances)."""
        self.graph.expansion_search = max(int(ef or self.settings["ef"]), count)
        matches = self.graph.search(np.asarray(query, np.float32), count)
        return np.asarray(matches.keys, dtype=np.uint64)

    def search(
        self,
        table: Any,
        query: np.ndarray,
        k: int,
        columns: list[str],
        ef: int | None = None,
        candidates: int | None = None,
    ) -> list[dict[str, Any]]:
        """Top-``k`` rows of ``table`` (``columns`` plus ``score``, the exact cosine), best first.

        The graph proposes ``candidates`` (default ``CANDIDATE_FACTOR * k``) row ids; those rows are read
        from LanceDB by id and re-scored with their float32 vectors.
        """
        query = np.asarray(query, np.float32).reshape(-1)
        ids = self.candidates(query, max(k, candidates or CANDIDATE_FACTOR * k), ef)
        if ids.size == 0:
            return []
        data = table.take_row_ids(ids.tolist()).select([*columns, "vector"]).to_arrow()
        if data.num_rows == 0:
            return []
        vectors = _vectors(data["vector"])
        norms = np.maximum(np.linalg.norm(vectors, axis=1) * max(float(np.linalg.norm(query)), 1e-12), 1e-12)
        scores = vectors @ query / norms
        order = np.argsort(-scores, kind="stable")[:k]
        values = {c: data[c].to_pylist() for c in columns}
        return [{**{c: values[c][i] for c in columns}, "score": float(scores[i])} for i in order]


def sidecar(index: Any) -> HnswSidecar | None:
    """The sidecar of an ``AudioIndex`` (loaded once per object), or None when it has none."""
    if not exists(index.dir):
        index.__dict__.pop("_hnsw", None)
        return None
    cached = index.__dict__.get("_hnsw")
    if cached is None:
        cached = index.__dict__["_hnsw"] = HnswSidecar(index.dir)
    return cached


__all__ = ["HnswSidecar", "check_available", "drop", "exists", "sidecar", "table_row_ids"]
