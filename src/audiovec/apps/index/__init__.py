"""A searchable audio collection in LanceDB: one row per window of every file (``path``, ``start``/``end``,
``window``, ``n_windows``, ``hash`` of the bytes, ``model`` fingerprint, ``vector``).

Incremental and crash-safe: unchanged files are skipped, changed ones replaced; files are streamed window
batch by window batch; a batch of files is one atomic ``add``, so a kill leaves each file whole or absent;
bad files are reported and skipped (the rules: docs/reliability.md). Past ``ann_threshold`` rows an
IVF-HNSW-SQ index is built; ``build_index("hnsw")`` keeps a usearch graph beside the table instead
(:mod:`audiovec.ann`). Under ``torchrun`` each rank writes a shard and rank 0 commits (:mod:`.shards`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audiovec import ann
from audiovec.apps.index.meta import IndexStoreError, index_dim, load_index_model
from audiovec.apps.index.params import (
    DEFAULT_ANN_THRESHOLD,
    REFINE_FACTOR,
    ann_partitions,
    default_ef,
    default_nprobes,
)
from audiovec.apps.index.results import Hit, IndexReport
from audiovec.apps.index.rows import WindowRows, window_schema
from audiovec.apps.index.shards import COMMIT_ROWS, ShardWriter, merge_shards, plan_sharded
from audiovec.apps.index.writer import IndexWriter, check_ann_kind, stored_windows
from audiovec.builtin_models import model_ref
from audiovec.data.exclude import file_sha256
from audiovec.dims import truncate_embeddings
from audiovec.discovery import collect_audio_files
from audiovec.dist import world as group_world
from audiovec.encode import embed_source, embed_windows, pool_windows
from audiovec.errors import ConfigError
from audiovec.evaluation.evaluate import model_fingerprint
from audiovec.index_quantized import check_index_precision, search_quantized

log = logging.getLogger(__name__)

META_NAME = "audiovec-index.json"
TABLE_NAME = "windows"


# --------------------------------------------------------------------------------------- small helpers


# --------------------------------------------------------------------------------------- results


# --------------------------------------------------------------------------------------- the store


class AudioIndex:
    """A LanceDB folder holding window vectors plus ``audiovec-index.json`` (model folder, fingerprint)."""

    def __init__(self, db_dir: str | os.PathLike, table: str = TABLE_NAME) -> None:
        import lancedb

        self.dir = Path(db_dir)
        self.table_name = table
        self.dir.mkdir(parents=True, exist_ok=True)
        self._db = lancedb.connect(str(self.dir))
        self._table: Any = None
        self._quantized: Any = None  # QuantizedVectors of the table version searched last

    # ------------------------------------------------------------------ metadata
    @property
    def meta_path(self) -> Path:
        return self.dir / META_NAME

    def meta(self) -> dict[str, Any]:
        if not self.meta_path.is_file():
            return {}
        try:
            return json.loads(self.meta_path.read_text())
        except ValueError as exc:
            raise IndexStoreError(f"{self.meta_path}: invalid JSON ({exc})") from None

    def write_meta(self, data: dict[str, Any]) -> None:
        """Replace ``audiovec-index.json`` atomically."""
        tmp = self.meta_path.with_name(f".{META_NAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.meta_path)

    @classmethod
    def open(cls, db_dir: str | os.PathLike) -> AudioIndex:
        """An existing index (raises if the folder holds none)."""
        index = cls(db_dir) if Path(db_dir).is_dir() else None
        if index is None or not index.meta():
            raise IndexStoreError(
                f"{db_dir}: no audiovec index here (run `audiovec index MODEL PATH --db {db_dir}`)"
            )
        return index

    # ------------------------------------------------------------------ table
    def schema(self, dim: int) -> Any:
        """The table's pyarrow schema for ``dim``-d vectors (:func:`.rows.window_schema`)."""
        return window_schema(dim)

    def table(self, dim: int | None = None) -> Any:
        if self._table is None:
            if self.table_name in self._table_names():
                self._table = self._db.open_table(self.table_name)
            elif dim is None:
                raise IndexStoreError(f"{self.dir}: the index is empty")
            else:
                schema = window_schema(dim).with_metadata(self._embedding_function_metadata(dim))
                self._table = self._db.create_table(self.table_name, schema=schema)
        return self._table

    def _embedding_function_metadata(self, dim: int) -> dict[bytes, bytes]:
        """LanceDB's ``embedding_functions`` schema metadata naming this index's model (the registered
        ``"audiovec"`` function), so plain ``lancedb`` searches the table with a string after ``import
        audiovec``; nothing when the index records no model folder."""
        from audiovec.lancedb_embedding import function_metadata

        model = self.meta().get("model_dir")
        return function_metadata(model, dim) if model else {}

    def add_embedding_metadata(self, rebuild_ann: bool = True) -> bool:
        """Give a table written before indexes named their model to LanceDB (no ``embedding_functions``
        schema metadata, so plain ``lancedb`` cannot search it by string) that metadata; True if it did.

        LanceDB cannot change a table's schema metadata in place, so the rows are rewritten once as a new
        table version (an atomic overwrite: a kill leaves the old version; no vector is recomputed; the old
        version's files stay on disk until the table's versions are cleaned up). Row ids change, so an HNSW
        sidecar is emptied first (a kill then leaves an empty graph that the next sync fills, never a stale
        one) and refilled; LanceDB's own ANN index is rebuilt when the table had one and ``rebuild_ann``
        (``add`` passes False: its last step rebuilds it anyway). Holds the rows in memory once.
        """
        model = self.meta().get("model_dir")
        if not model or self.count() == 0:
            return False
        table = self.table()
        current = dict(table.schema.metadata or {})
        if b"embedding_functions" in current:
            return False
        dim = table.schema.field("vector").type.list_size
        schema = table.schema.with_metadata({**current, **self._embedding_function_metadata(dim)})
        had_ann = any("vector" in i.columns for i in table.list_indices())
        log.info("%s: adding LanceDB embedding metadata (rewriting %d rows once)", self.dir, self.count())
        hnsw = ann.sidecar(self)
        if hnsw is not None:
            hnsw.reset()
        rows = table.to_arrow().replace_schema_metadata(schema.metadata)
        self._table = self._db.create_table(self.table_name, data=rows, schema=schema, mode="overwrite")
        del rows
        if hnsw is not None:
            hnsw.sync(self._table)
        elif had_ann and rebuild_ann:
            self.ensure_ann(0)
        return True

    def _table_names(self) -> list[str]:
        listing = self._db.list_tables()
        return list(getattr(listing, "tables", listing))

    def count(self) -> int:
        return 0 if self.table_name not in self._table_names() else int(self.table().count_rows())

    def rows(self, columns: Sequence[str] = ("path", "window", "n_windows", "hash", "model", "window_s")):
        """The chosen columns of every row, as a pyarrow table."""
        return self.table().search().select(list(columns)).limit(None).to_arrow()

    def stored_state(self) -> dict[str, dict[tuple[str, str, float], set[int]]]:
        """path → (hash, model, window_s) → window numbers stored."""
        return stored_windows(self)[0]

    def drop_table(self) -> None:
        """Remove every row (and an HNSW sidecar's graph: a new table numbers its rows afresh)."""
        if self.table_name in self._table_names():
            if (hnsw := ann.sidecar(self)) is not None:
                hnsw.reset()  # first: a kill in between leaves an empty graph, never one naming old rows
            self._db.drop_table(self.table_name)
            self._table = None

    # ------------------------------------------------------------------ building
    def add(
        self,
        model: Any,
        paths: Iterable[str | os.PathLike],
        *,
        model_dir: str | os.PathLike | None = None,
        window_seconds: float | None = None,
        batch_files: int = 16,
        batch_size: int = 16,
        ann_threshold: int = DEFAULT_ANN_THRESHOLD,
        on_commit: Callable[[IndexReport], None] | None = None,
        rank: int | None = None,
        world: int | None = None,
        rebuild: bool = False,
        dim: int | None = None,
        precision: str | None = None,
        ann_kind: str | None = None,
    ) -> IndexReport:
        """Index ``paths`` (files or folders) with ``model``; see the module docstring for the guarantees.

        ``dim``: store vectors truncated to this size (``truncate_dim``; default: the size the index was
        built with, else the model's); queries must then have this size. ``precision``: ``"int8"`` or
        ``"binary"`` searches a quantised copy and re-scores the best candidates with the float vectors
        (:mod:`audiovec.index_quantized`); default: the index's, else ``"float32"``. ``ann_kind``:
        ``"hnsw"`` keeps an HNSW graph beside the table (any size), ``"lancedb"`` LanceDB's own index past
        ``ann_threshold``; default: whichever the index has (see :meth:`IndexWriter.finish`).

        With ``world > 1`` (default: from ``torch.distributed`` when initialised) this rank embeds only its
        share and rank 0 commits every rank's rows; all ranks must call it with the same arguments.
        An index built by another model is refused unless ``rebuild`` (which empties it first).
        """
        if rank is None or world is None:
            rank, world = group_world()
        files = collect_audio_files(paths)  # before anything is written: a bad path changes nothing
        meta = self.meta()
        dim = index_dim(meta, model, dim, self.dir)
        writer = self.writer(
            model_fingerprint(model),
            float(window_seconds or model.config.window_seconds),
            dim,
            model_dim=model.embedding_dim,
            model_dir=model_dir or model.config.extra.get("builtin"),
            precision=precision,
            rebuild=rebuild,
            rank=rank,
            world=world,
            ann_kind=ann_kind,
        )
        rows = writer.rows(batch_size)
        todo = writer.plan(files) if world == 1 else plan_sharded(writer, files, rank, world)
        shard = ShardWriter(self.dir, rank, world, window_schema(dim)) if world > 1 else None
        for start in range(0, len(todo), max(1, batch_files)):
            pending: list[tuple[str, str, Any]] = []  # (path, hash, rows) of finished files
            for key, digest in todo[start : start + batch_files]:
                table = rows.embed_file(model, key, digest, writer.report)
                if table is None:
                    continue
                if shard is not None:
                    shard.write(table)  # bounded: one file's rows at a time
                    continue
                pending.append((key, digest, table))
                if sum(r.num_rows for *_, r in pending) >= COMMIT_ROWS:
                    writer.commit(pending)
                    pending = []
            if shard is None:
                writer.commit(pending)
                if on_commit is not None:
                    on_commit(writer.report)
        if shard is not None:
            merge_shards(writer, shard)
            if rank != 0:
                return writer.report
        return writer.finish(ann_threshold)

    def writer(
        self,
        fingerprint: str,
        window_s: float,
        dim: int,
        *,
        model_dim: int | None = None,
        model_dir: str | os.PathLike | None = None,
        precision: str | None = None,
        rebuild: bool = False,
        rank: int = 0,
        world: int = 1,
        ann_kind: str | None = None,
    ) -> IndexWriter:
        """Start a run that writes ``dim``-d rows of the model ``fingerprint`` (``model_dim``: its full
        size) at ``window_s``: refuses another model's index unless ``rebuild`` (which empties it), records
        the model in the metadata before any row (so a killed run still names it) and reads what is stored.
        ``ann_kind`` (``"hnsw"``, ``"lancedb"``, None: keep the index's) is checked here, before any file is
        embedded, and applied by :meth:`IndexWriter.finish`. Under ``world > 1`` only rank 0 writes to the
        table and the metadata."""
        meta = self.meta()
        precision = check_index_precision(precision or meta.get("precision") or "float32")
        check_ann_kind(ann_kind, precision)
        if meta.get("dim") not in (None, dim):
            raise IndexStoreError(f"{self.dir}: stores {meta['dim']}-d vectors, this run writes {dim}-d ones")
        if meta.get("fingerprint") not in (None, fingerprint):
            if not rebuild:
                raise IndexStoreError(
                    f"{self.dir}: built by another model (fingerprint {meta['fingerprint']}, this one "
                    f"{fingerprint}); pass rebuild=True (--rebuild) to replace it, or use a new --db folder"
                )
            if rank == 0:
                self.drop_table()
        model_dim = model_dim or dim
        if rank == 0:
            self.write_meta(
                {
                    "format": 1,
                    "table": self.table_name,
                    "model_dir": (model_ref(model_dir) if model_dir else None) or meta.get("model_dir"),
                    "fingerprint": fingerprint,
                    "dim": dim,
                    "model_dim": model_dim,
                    "truncate_dim": None if dim == model_dim else dim,
                    "precision": precision,
                    "window_seconds": float(window_s),
                }
            )
            self.add_embedding_metadata(rebuild_ann=False)  # an index from before tables named their model
        return IndexWriter(
            self,
            fingerprint,
            window_s,
            dim,
            read_state=rank == 0 or world == 1,
            ann_kind=ann_kind,
            model_dim=model_dim,
        )

    def ensure_ann(self, threshold: int = DEFAULT_ANN_THRESHOLD) -> bool:
        """(Re)build the ANN index when the table has at least ``threshold`` rows; True if built.
        With an HNSW sidecar (:meth:`build_index`) that is synced instead, at any size."""
        if (hnsw := ann.sidecar(self)) is not None:
            return self.count() > 0 and any(hnsw.sync(self.table()))
        rows = self.count()
        if rows == 0 or rows < threshold:
            return False
        from lancedb.index import IvfHnswSq

        partitions = ann_partitions(rows)
        self.table().create_index(
            "vector", config=IvfHnswSq(distance_type="cosine", num_partitions=partitions), replace=True
        )
        return True

    def has_ann(self) -> bool:
        if ann.exists(self.dir):
            return True
        return self.count() > 0 and any("vector" in i.columns for i in self.table().list_indices())

    def drop_hnsw(self) -> None:
        """Remove the HNSW sidecar (search falls back to LanceDB: its ANN index, else exact)."""
        ann.drop(self.dir)
        self.__dict__.pop("_hnsw", None)

    def build_index(self, kind: str = "hnsw", **options: Any) -> None:
        """Build an HNSW graph (usearch, :mod:`audiovec.ann`) beside the table; from then on ``add`` keeps
        it in sync and ``search`` uses it. ``options``: ``dtype`` ("i8", "f16", "f32"), ``connectivity``,
        ``expansion_add``, ``ef``, ``threads``. ``kind="lancedb"`` drops it and rebuilds LanceDB's own."""
        if kind == "lancedb":
            self.drop_hnsw()
            self.ensure_ann(0)
            return
        if kind != "hnsw":
            raise ConfigError(f"index kind must be 'hnsw' or 'lancedb', got {kind!r}")
        if self.count() == 0:
            raise IndexStoreError(f"{self.dir}: the index is empty; add audio before building its ANN index")
        dim = self.table().schema.field("vector").type.list_size
        self.__dict__["_hnsw"] = ann.HnswSidecar.build(self.table(), self.dir, dim, **options)

    # ------------------------------------------------------------------ querying
    def search(
        self,
        vector: np.ndarray,
        k: int = 10,
        nprobes: int | None = None,
        ef: int | None = None,
        rescore_multiplier: int | None = None,
    ) -> list[Hit]:
        """Top-``k`` windows by cosine similarity to a query vector (text or audio) of the index's size
        (``meta()["dim"]``; see :meth:`query_vector` for a model's full-size vector).

        With an ANN index, ``nprobes`` partitions are searched (default: an eighth of them, at least 20;
        more is slower and closer to exact), each with ``ef`` HNSW candidates (default :func:`default_ef`), and
        the candidates are re-ranked exactly. An int8 / binary index finds ``k * rescore_multiplier``
        (default 4) candidates on its quantised copy and re-ranks them with the float vectors; an HNSW
        sidecar re-scores ``k * rescore_multiplier`` graph candidates (default 2,
        :data:`audiovec.ann.CANDIDATE_FACTOR`; more is closer to exact and reads more rows).
        """
        if k < 1:
            raise ValueError("k must be >= 1")
        for name, value in (("nprobes", nprobes), ("ef", ef), ("rescore_multiplier", rescore_multiplier)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.count() == 0:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        meta = self.meta()
        dim = meta.get("dim")
        if dim is not None and query.shape[0] != dim:
            fix = f"; encode it with truncate_dim={dim}" if meta.get("truncate_dim") else ""
            raise IndexStoreError(
                f"{self.dir}: query has {query.shape[0]} dimensions, the index stores {dim}-d vectors{fix}"
            )
        if meta.get("precision", "float32") != "float32":
            rows = search_quantized(self, query, k, meta["precision"], rescore_multiplier)
            return [
                Hit(h["path"], float(h["start"]), float(h["end"]), h["score"], int(h["window"])) for h in rows
            ]
        if (hnsw := ann.sidecar(self)) is not None:
            hnsw.sync(self.table())  # a no-op unless another writer moved the table on
            candidates = k * rescore_multiplier if rescore_multiplier else None
            rows = hnsw.search(
                self.table(), query, k, ["path", "start", "end", "window"], ef=ef, candidates=candidates
            )
            return [Hit(r["path"], r["start"], r["end"], r["score"], r["window"]) for r in rows]
        builder = self.table().search(query).distance_type("cosine").limit(k)
        if self.has_ann():
            partitions = ann_partitions(self.count())  # as ensure_ann built it
            builder = (
                builder.nprobes(nprobes or default_nprobes(partitions))
                .ef(max(ef or default_ef(k), k * REFINE_FACTOR))  # LanceDB needs ef >= candidates
                .refine_factor(REFINE_FACTOR)
            )
        hits = builder.select(["path", "start", "end", "window", "_distance"]).to_list()
        return [
            Hit(h["path"], float(h["start"]), float(h["end"]), 1.0 - float(h["_distance"]), int(h["window"]))
            for h in hits
        ]

    def query_vector(self, vector: np.ndarray) -> np.ndarray:
        """A query vector of the index's model at the index's size: a full-size vector of an index built
        with ``dim`` is truncated (first d components, re-normalised); any other size is refused."""
        meta = self.meta()
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if meta.get("truncate_dim") and query.shape[0] == meta.get("model_dim"):
            return truncate_embeddings(query, meta["truncate_dim"])
        return query

    def check_model(self, model: Any) -> None:
        """Raise unless ``model`` is the one that built this index."""
        expected = self.meta().get("fingerprint")
        if expected and expected != model_fingerprint(model):
            raise IndexStoreError(
                f"{self.dir}: built by another model (fingerprint {expected}); pass the model that built it"
            )

    def search_text(self, model: Any, text: str, k: int = 10) -> list[Hit]:
        return self.search(model.encode_text(text, truncate_dim=self.meta().get("dim")), k)

    def search_audio(self, model: Any, source: Any, k: int = 10) -> list[Hit]:
        return self.search(self.query_vector(embed_source(model, source)), k)


__all__ = [
    "DEFAULT_ANN_THRESHOLD",
    "REFINE_FACTOR",
    "ann_partitions",
    "default_ef",
    "default_nprobes",
    "index_dim",
    "model_ref",
    "AudioIndex",
    "Hit",
    "IndexWriter",
    "WindowRows",
    "window_schema",
    "IndexReport",
    "IndexStoreError",
    "collect_audio_files",
    "embed_source",
    "embed_windows",
    "file_sha256",
    "load_index_model",
    "model_fingerprint",
    "pool_windows",
]
