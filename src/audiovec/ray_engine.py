"""Ray Data engine for ``audiovec encode`` / ``audiovec index`` (``--engine ray``): collections beyond one machine.

The driver lists the files and skips those already written (resume); a Ray dataset of the remaining paths
goes through ``map_batches`` with :class:`Embedder`, an actor class, so each worker loads the model once
(``workers`` actors of ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs each); the driver streams the
results out as they arrive:

* ``encode`` → Parquet: ``OUT/part-NNNNNN.parquet`` files (``path``, ``vector``), each written under a
  temporary name and renamed, so a killed run leaves only complete parts; a rerun skips every path in
  them (``OUT/audiovec-encode.json`` records the model; another model is refused);
* ``index`` → the LanceDB index of :class:`~audiovec.apps.index.AudioIndex`, with its guarantees: files whose
  rows are complete (same hash, model, window) are skipped, a file's rows are committed only once all its
  windows are embedded, a batch of files is one atomic ``add``, changed files replace their old rows.

Vectors are the single-process ones: a worker runs the same ``encode_audio_detailed`` (encode) or
``AudioIndex`` row building (index). Unreadable files are reported (``failed``) and skipped, never abort
the run, and are retried by the next run. Workers read files by path, so on a cluster the paths (and a
model folder) must be visible on every node (a shared file system), or pass :func:`encode_dataset` a
dataset with a ``bytes`` column (``ray.data.read_binary_files(..., include_paths=True)``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiovec.apps.index import (
    COMMIT_ROWS,
    DEFAULT_ANN_THRESHOLD,
    AudioIndex,
    IndexReport,
    collect_audio_files,
    window_schema,
)
from audiovec.apps.index.rows import WindowRows
from audiovec.builtin_models import model_ref
from audiovec.discovery import find_audio_files
from audiovec.errors import ConfigError
from audiovec.evaluation.evaluate import model_fingerprint
from audiovec.model import AudioTextEmbedder

log = logging.getLogger(__name__)

ENCODE_META = "audiovec-encode.json"
PART_ROWS = 4096  # vectors per Parquet part (encode) before it is written


@dataclass
class EngineConfig:
    """How the Ray job is laid out: ``workers`` actors (one model each) of the given resources."""

    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    files_per_call: int = 8  # files handed to one actor call (one map_batches batch)
    batch_size: int = 16  # windows per forward pass, inside an actor
    device: str | None = None  # default: cuda when the worker has a GPU, else cpu
    dtype: str | None = None
    address: str | None = None  # ray.init address when Ray is not yet initialised (None: RAY_ADDRESS/local)


@dataclass
class EncodeReport:
    """What one ``encode`` run did."""

    written: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return f"{self.written} encoded, {self.skipped} already written, {len(self.failed)} failed"


# --------------------------------------------------------------------------------------- the actor


class Embedder:
    """A Ray actor: loads the model once, then embeds a batch of files per call (pyarrow in and out).

    ``mode="file"``: one row per file (``path``, ``vector``, ``error``), as ``encode_audio_detailed``.
    ``mode="windows"``: the rows :class:`~audiovec.apps.index.AudioIndex` stores for each file (one per window)
    plus ``error``; a failed file is one row with ``n_windows = 0`` and its reason.
    """

    def __init__(
        self,
        model: str,
        mode: str,
        batch_size: int = 16,
        device: str | None = None,
        dtype: str | None = None,
        threads: int = 1,
        window_seconds: float | None = None,
    ) -> None:
        torch.set_num_threads(max(1, threads))
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AudioTextEmbedder.from_pretrained(model, device=device, dtype=dtype)
        self.mode, self.batch_size = mode, batch_size
        if mode == "windows":
            self.fingerprint = model_fingerprint(self.model)
            self.window_s = float(window_seconds or self.model.config.window_seconds)

            self.rows = WindowRows(self.fingerprint, self.window_s, batch_size=batch_size)

    def __call__(self, batch: Any) -> Any:
        return self._files(batch) if self.mode == "file" else self._windows(batch)

    def _files(self, batch: Any) -> Any:
        import pyarrow as pa

        paths = batch.column("path").to_pylist()
        inputs = batch.column("bytes").to_pylist() if "bytes" in batch.column_names else paths
        result = self.model.encode_audio_detailed(inputs, batch_size=self.batch_size, on_error="skip")
        dim = self.model.embedding_dim
        vectors = np.nan_to_num(result.vectors.astype(np.float32)).reshape(-1)
        errors = [result.errors.get(i) for i in range(len(paths))]
        return pa.table(
            {
                "path": pa.array(paths, pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors, pa.float32()), dim),
                "error": pa.array(errors, pa.string()),
            }
        )

    def _windows(self, batch: Any) -> Any:
        import pyarrow as pa

        schema = window_schema(self.model.embedding_dim).append(pa.field("error", pa.string()))
        tables = []
        for key, digest in zip(batch.column("path").to_pylist(), batch.column("hash").to_pylist()):
            report = IndexReport()
            rows = self.rows.embed_file(self.model, key, digest, report)
            if rows is None:
                tables.append(_failed_row(schema, key, digest, report.failed.get(key, "failed")))
                continue
            tables.append(rows.append_column("error", pa.nulls(rows.num_rows, pa.string())))
        return pa.concat_tables(tables) if tables else schema.empty_table()


def _failed_row(schema: Any, key: str, digest: str, reason: str) -> Any:
    import pyarrow as pa

    values = {f.name: [None] for f in schema}
    values.update(path=[key], hash=[digest], n_windows=[0], window=[-1], error=[reason])
    return pa.Table.from_pydict(values, schema=schema)


# --------------------------------------------------------------------------------------- driving


def _ray(config: EngineConfig) -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--engine ray needs Ray Data: pip install 'audiovec[ray]' (or pip install 'ray[data]')"
        ) from None
    if not ray.is_initialized():
        ray.init(address=config.address or os.environ.get("RAY_ADDRESS"), log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray


def _paths_dataset(ray: Any, rows: list[dict[str, str]], config: EngineConfig) -> Any:
    """``rows`` as a dataset cut into blocks of ``files_per_call`` rows (so every worker gets work)."""
    blocks = max(1, min(len(rows), -(-len(rows) // max(1, config.files_per_call))))
    return ray.data.from_items(rows, override_num_blocks=blocks)


def _run(
    ray: Any, ds: Any, model: str, mode: str, config: EngineConfig, window_s: float | None, blocks: int = 0
) -> Iterator:
    """The actor pool over ``ds`` (at most ``blocks`` actors when known: no idle workers); yields pyarrow
    tables as the workers finish them."""
    if config.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {config.workers}")
    device = config.device or ("cuda" if config.gpus_per_worker > 0 else "cpu")
    out = ds.map_batches(
        Embedder,
        fn_constructor_kwargs=dict(
            model=model,
            mode=mode,
            batch_size=config.batch_size,
            device=device,
            dtype=config.dtype,
            threads=max(1, int(config.cpus_per_worker)),
            window_seconds=window_s,
        ),
        batch_size=max(1, config.files_per_call),
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=max(1, min(config.workers, blocks or config.workers))),
        num_cpus=config.cpus_per_worker,
        num_gpus=config.gpus_per_worker or None,
    )
    yield from out.iter_batches(batch_size=None, batch_format="pyarrow")


def encode_files(
    model: str,
    paths: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    config: EngineConfig | None = None,
) -> EncodeReport:
    """Embed audio files (or folders) into Parquet parts under ``out``, resumably (see the module doc)."""
    config = config or EngineConfig()
    files = [os.path.abspath(p) for p in find_audio_files(paths)]
    ray = _ray(config)
    return _encode(
        ray, model, lambda todo: _paths_dataset(ray, [{"path": p} for p in todo], config), files, out, config
    )


def encode_dataset(
    model: str, ds: Any, out: str | os.PathLike, config: EngineConfig | None = None
) -> EncodeReport:
    """As :func:`encode_files` for a Ray dataset with a ``path`` column (and optionally ``bytes``, e.g.
    ``ray.data.read_binary_files(uris, include_paths=True)``, so workers need not see the files)."""
    config = config or EngineConfig()
    ray = _ray(config)
    done = _written_paths(Path(out), model)
    report = EncodeReport(skipped=len(done))  # the paths already written (not re-read to count them)
    if done:
        ds = ds.filter(lambda row: row["path"] not in done)
    return _write_parts(_run(ray, ds, model_ref(model), "file", config, None), Path(out), report)


def _encode(ray, model, make_ds, files, out, config) -> EncodeReport:
    out = Path(out)
    done = _written_paths(out, model)
    todo = [p for p in files if p not in done]
    report = EncodeReport(skipped=len(files) - len(todo))
    if not todo:
        return report
    ds = make_ds(todo)
    runs = _run(ray, ds, model_ref(model), "file", config, None, ds.num_blocks())
    return _write_parts(runs, out, report)


def _written_paths(out: Path, model: str) -> set[str]:
    """Paths already in ``out``'s complete parts; writes the folder's model record on first use."""
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / ENCODE_META
    ref = model_ref(model)
    if meta_path.is_file():
        recorded = json.loads(meta_path.read_text()).get("model")
        if recorded != ref:
            raise ConfigError(
                f"{out}: holds vectors of model {recorded!r}, not {ref!r}; use a new --out folder"
            )
    else:
        meta_path.write_text(json.dumps({"format": 1, "model": ref}, indent=2) + "\n")
    done: set[str] = set()
    for part in sorted(out.glob("part-*.parquet")):
        done.update(pq.read_table(part, columns=["path"]).column("path").to_pylist())
    for tmp in out.glob(".part-*.tmp"):  # a part a killed run was writing: its files are not done
        tmp.unlink(missing_ok=True)
    return done


def _write_parts(tables: Iterator, out: Path, report: EncodeReport) -> EncodeReport:
    """Good rows to ``part-NNNNNN.parquet`` files (temporary name, then rename), failures to the report."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    number = max((int(p.stem.split("-")[1]) for p in out.glob("part-*.parquet")), default=-1) + 1
    pending: list[Any] = []

    def flush() -> None:
        nonlocal number, pending
        if not pending:
            return
        data = pa.concat_tables(pending)
        tmp, final = out / f".part-{number:06d}.tmp", out / f"part-{number:06d}.parquet"
        pq.write_table(data, tmp)
        os.replace(tmp, final)
        number, pending = number + 1, []

    for table in tables:
        bad = table.filter(pc.is_valid(table.column("error")))
        for path, reason in zip(bad.column("path").to_pylist(), bad.column("error").to_pylist()):
            report.failed[path] = reason
            log.warning("skipped: %s", reason)
        good = table.filter(pc.is_null(table.column("error"))).drop_columns(["error"])
        if good.num_rows:
            pending.append(good)
            report.written += good.num_rows
        if sum(t.num_rows for t in pending) >= PART_ROWS:
            flush()
    flush()
    return report


def read_vectors(out: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Every ``(path, vector)`` of an ``encode --engine ray`` folder, in part order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = sorted(Path(out).glob("part-*.parquet"))
    if not parts:
        return [], np.zeros((0, 0), np.float32)
    table = pa.concat_tables([pq.read_table(p) for p in parts])
    dim = table.schema.field("vector").type.list_size
    flat = table.column("vector").combine_chunks().flatten().to_numpy()
    return table.column("path").to_pylist(), flat.reshape(-1, dim).astype(np.float32)


def index_files(
    model: str,
    paths: Iterable[str | os.PathLike],
    db: str | os.PathLike,
    config: EngineConfig | None = None,
    *,
    window_seconds: float | None = None,
    batch_files: int = 16,
    ann_threshold: int | None = None,
    rebuild: bool = False,
    ann_kind: str | None = None,
) -> Any:
    """``AudioIndex(db).add(...)`` with the embedding done by Ray workers; returns an ``IndexReport``."""
    import pyarrow as pa

    config = config or EngineConfig()
    files = collect_audio_files(paths)  # before anything is written: a bad path changes nothing
    ray = _ray(config)
    local = AudioTextEmbedder.from_pretrained(model)  # the driver needs the fingerprint and size only
    fingerprint, dim = model_fingerprint(local), local.embedding_dim
    window_s = float(window_seconds or local.config.window_seconds)
    del local
    index = AudioIndex(db)
    writer = index.writer(fingerprint, window_s, dim, model_dir=model, rebuild=rebuild, ann_kind=ann_kind)
    todo = writer.plan(files)
    if todo:
        ds = _paths_dataset(ray, [{"path": key, "hash": digest} for key, digest in todo], config)
        schema = window_schema(dim)
        partial: dict[str, list[Any]] = {}  # a file's rows until all its windows have arrived
        pending: list[tuple[str, str, Any]] = []
        for table in _run(ray, ds, model_ref(model), "windows", config, window_s, ds.num_blocks()):
            errors = table.column("error").to_pylist()
            for i in (i for i, e in enumerate(errors) if e is not None):
                writer.report.failed[table.column("path")[i].as_py()] = errors[i]
            good = table.filter(pa.compute.is_null(table.column("error"))).drop_columns(["error"])
            for key in dict.fromkeys(good.column("path").to_pylist()):
                rows = good.filter(pa.compute.equal(good.column("path"), key))
                partial.setdefault(key, []).append(rows)
                got = sum(r.num_rows for r in partial[key])
                if got == rows.column("n_windows")[0].as_py():
                    whole = pa.concat_tables(partial.pop(key)).cast(schema)
                    pending.append((key, whole.column("hash")[0].as_py(), whole))
            if len(pending) >= batch_files or sum(r.num_rows for *_, r in pending) >= COMMIT_ROWS:
                writer.commit(pending)
                pending = []
        writer.commit(pending)
    return writer.finish(DEFAULT_ANN_THRESHOLD if ann_threshold is None else ann_threshold)


__all__ = [
    "EncodeReport",
    "Embedder",
    "EngineConfig",
    "encode_dataset",
    "encode_files",
    "index_files",
    "read_vectors",
]
