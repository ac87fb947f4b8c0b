"""How one audio file becomes index rows (one per window), with no database: the single-process index, the
sharded ranks and the Ray workers build their rows here, so all three write exactly the same table."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from audiovec.apps.index.results import IndexReport
from audiovec.audio import SAMPLE_RATE, iter_windows
from audiovec.dims import truncate_embeddings
from audiovec.encode import WindowGroups, embed_windows
from audiovec.errors import AudioDecodeError

log = logging.getLogger(__name__)


def window_schema(dim: int) -> Any:
    """The pyarrow schema of the index table (``dim``: the stored vector size)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("path", pa.string()),
            ("start", pa.float64()),
            ("end", pa.float64()),
            ("window", pa.int32()),
            ("n_windows", pa.int32()),
            ("window_s", pa.float64()),
            ("hash", pa.string()),
            ("model", pa.string()),
            ("vector", pa.list_(pa.float32(), dim)),
        ]
    )


@dataclass(frozen=True)
class WindowRows:
    """The rows of a file cut into ``window_s`` windows, embedded by the model with ``fingerprint``, vectors
    truncated to ``truncate_dim`` (None: full size), ``batch_size`` windows per forward pass."""

    fingerprint: str
    window_s: float
    truncate_dim: int | None = None
    batch_size: int = 16

    def embed_file(self, model: Any, key: str, digest: str, report: IndexReport) -> Any:
        """The rows of the file ``key`` (its bytes hash to ``digest``) as a pyarrow table, or None (the
        reason goes to ``report.failed``).

        The file is streamed: windows are embedded ``batch_size`` at a time as :func:`iter_windows` decodes
        them, so the audio held is one batch of windows; the vectors are kept until the last window and
        nothing is returned before, so a file failing mid-stream leaves no rows behind.
        """
        spans: list[tuple[int, int]] = []  # sample offsets, as iter_windows counts them
        vectors: list[np.ndarray] = []
        try:
            peak = model.stream_peak(key, self.window_s)  # a first pass, for models that floor per file
            windows = (wave for *_, wave in iter_windows(key, self.window_s))
            for group in WindowGroups(windows, model.windows_per_batch(self.batch_size, self.window_s)):
                for wave in group:
                    offset = spans[-1][1] if spans else 0
                    spans.append((offset, offset + wave.shape[0]))
                vectors.append(embed_windows(model, group, self.batch_size, peak))
                del group
                if not np.isfinite(vectors[-1]).all():  # the rest of the file is not worth decoding
                    report.failed[key] = "the model produced non-finite vectors"
                    return None
        except AudioDecodeError as exc:
            report.failed[key] = exc.reason
            log.warning("skipping %s", exc)
            return None
        return self.table(key, digest, spans, np.concatenate(vectors))

    def table(self, key: str, digest: str, spans: list[tuple[int, int]], vectors: np.ndarray) -> Any:
        """The rows of one file from its window ``spans`` (sample offsets) and their full-size vectors."""
        import pyarrow as pa

        vectors = truncate_embeddings(vectors, self.truncate_dim)
        n, dim = vectors.shape
        columns = {
            "path": pa.array([key] * n, pa.string()),
            "start": pa.array([a / SAMPLE_RATE for a, _ in spans], pa.float64()),
            "end": pa.array([b / SAMPLE_RATE for _, b in spans], pa.float64()),
            "window": pa.array(np.arange(n, dtype=np.int32)),
            "n_windows": pa.array(np.full(n, n, dtype=np.int32)),
            "window_s": pa.array(np.full(n, self.window_s, dtype=np.float64)),
            "hash": pa.array([digest] * n, pa.string()),
            "model": pa.array([self.fingerprint] * n, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim),
        }
        return pa.Table.from_pydict(columns, schema=window_schema(dim))
