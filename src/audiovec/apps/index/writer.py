"""One indexing run's writes: which files need embedding, finished files committed atomically, the older
rows of replaced files dropped, and the report. The single-process ``add``, the sharded ranks and the Ray
engine all write through an :class:`IndexWriter` from :meth:`AudioIndex.writer`."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audiovec import ann
from audiovec.apps.index.results import IndexReport
from audiovec.apps.index.rows import WindowRows
from audiovec.data.exclude import file_sha256
from audiovec.errors import ConfigError

if TYPE_CHECKING:
    from audiovec.apps.index import AudioIndex

StoredKey = tuple[str, str, float]  # (hash, model fingerprint, window_s) of a file's stored rows


ANN_KINDS = ("hnsw", "lancedb")


def check_ann_kind(kind: str | None, precision: str | None) -> None:
    """Refuse an unknown ``kind``, an HNSW graph on a quantised index (its search uses the quantised copy,
    so the graph would never be read), and a missing usearch, before any file is embedded."""
    if kind is None:
        return
    if kind not in ANN_KINDS:
        raise ConfigError(f"ann kind must be one of {', '.join(ANN_KINDS)}, got {kind!r}")
    if kind == "hnsw":
        if precision not in (None, "float32"):
            raise ConfigError(
                f"an HNSW graph searches float32 vectors; this index searches its {precision} copy "
                "(use one or the other)"
            )
        ann.check_available()


def stored_windows(index: AudioIndex) -> tuple[dict[str, dict[StoredKey, set[int]]], dict[tuple, int]]:
    """path -> key -> window numbers stored, and (path, *key) -> windows the file should have."""
    state: dict[str, dict[StoredKey, set[int]]] = {}
    expected: dict[tuple, int] = {}
    if index.count() == 0:
        return state, expected
    data = index.rows().to_pydict()
    for path, win, n, h, m, ws in zip(
        data["path"], data["window"], data["n_windows"], data["hash"], data["model"], data["window_s"]
    ):
        state.setdefault(path, {}).setdefault((h, m, ws), set()).add(win)
        expected[(path, h, m, ws)] = n
    return state, expected


class IndexWriter:
    """Writes one run's rows into ``index`` for the model ``fingerprint`` at ``window_s`` and ``dim``.

    ``read_state=False`` (ranks other than 0 of a sharded run) skips reading the table: such a writer only
    collects its report. ``ann_kind``: the search index :meth:`finish` leaves (checked by
    :func:`check_ann_kind` in :meth:`AudioIndex.writer`). Files are committed as ``(path, hash, rows)``;
    one :meth:`commit` is one atomic LanceDB ``add``, so a killed run leaves each file whole or absent.
    """

    def __init__(
        self,
        index: AudioIndex,
        fingerprint: str,
        window_s: float,
        dim: int,
        *,
        read_state: bool = True,
        ann_kind: str | None = None,
        model_dim: int | None = None,
    ) -> None:
        self.index, self.fingerprint, self.window_s, self.dim = index, fingerprint, float(window_s), dim
        self.ann_kind, self.model_dim = ann_kind, model_dim or dim
        self.report = IndexReport()
        self.state, self.expected = stored_windows(index) if read_state else ({}, {})

    def rows(self, batch_size: int = 16) -> WindowRows:
        """How this run turns a file into rows: its model's windows, vectors cut to the stored size."""
        cut = None if self.dim == self.model_dim else self.dim
        return WindowRows(self.fingerprint, self.window_s, cut, batch_size)

    def plan(self, files: Iterable[str | os.PathLike]) -> list[tuple[str, str]]:
        """``(path, hash)`` of the files that need embedding; unchanged files go to ``report.skipped``,
        unreadable ones to ``report.failed``."""
        todo = []
        for path in files:
            key = str(path)
            try:
                if not Path(path).is_file():  # a FIFO or /dev/zero would never finish hashing
                    raise OSError(
                        f"{path}: " + ("not found" if not os.path.lexists(path) else "not a regular file")
                    )
                digest = file_sha256(path)
            except OSError as exc:
                self.report.failed[key] = exc.strerror or str(exc)
                continue
            stored = self.state.get(key, {})
            current = (digest, self.fingerprint, self.window_s)
            if current in stored and len(stored[current]) == self.expected[(key, *current)]:
                self.report.skipped.append(key)
                if any(
                    k != current for k in stored
                ):  # a run killed between writing new rows and deleting old
                    self._delete_except(key, current)
                continue
            if current in stored:  # half-written (cannot happen with one add per batch, but be sure)
                self.index.table().delete(f"path = {_sql(key)} AND {_key_sql(current)}")
            todo.append((key, digest))
        return todo

    def commit(self, files: list[tuple[str, str, Any]]) -> None:
        """Write the rows of finished ``files`` (``(path, hash, rows)``) in one ``add``."""
        if files:
            import pyarrow as pa

            data = pa.concat_tables([rows for *_, rows in files])
            self.write(data, data.num_rows, [(key, digest) for key, digest, _ in files])

    def write(self, data: Any, n_rows: int, done: list[tuple[str, str]]) -> None:
        """``data`` (a table or a record batch reader of ``n_rows``) in one ``add``; then the older rows of
        the ``done`` files (``(path, hash)``) go."""
        if n_rows:
            self.index.table(self.dim).add(data)  # one atomic commit
            self.report.rows_added += n_rows
        for key, digest in done:
            if key in self.state:
                self._delete_except(key, (digest, self.fingerprint, self.window_s))
                self.report.replaced.append(key)
            else:
                self.report.added.append(key)

    def finish(self, ann_threshold: int) -> IndexReport:
        """The ANN step, then the run's report. ``ann_kind`` None keeps the index's kind: an HNSW sidecar is
        synced, LanceDB's index (re)built past ``ann_threshold`` rows, when rows were added or none exists.
        ``"hnsw"`` builds the sidecar when there is none (instead of LanceDB's index, at any size);
        ``"lancedb"`` drops a sidecar and falls back to LanceDB's index past the threshold."""
        index, kind = self.index, self.ann_kind
        has_graph = ann.exists(index.dir)
        if kind == "hnsw" and not has_graph and index.count():
            index.build_index("hnsw")
            self.report.ann_built = True
            return self.report
        if kind == "lancedb" and has_graph:
            index.drop_hnsw()
            self.report.ann_built = index.ensure_ann(ann_threshold)
            return self.report
        if self.report.rows_added or not index.has_ann():
            self.report.ann_built = index.ensure_ann(ann_threshold)
        return self.report

    def _delete_except(self, path: str, keep: StoredKey) -> None:
        self.index.table().delete(f"path = {_sql(path)} AND NOT ({_key_sql(keep)})")


def _sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _key_sql(key: StoredKey) -> str:
    digest, fingerprint, window_s = key
    return f"hash = {_sql(digest)} AND model = {_sql(fingerprint)} AND window_s = {float(window_s)!r}"
