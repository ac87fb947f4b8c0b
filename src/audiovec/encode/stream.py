"""Streaming one long source: its windows read a group at a time as they are decoded (optionally a group
ahead, in a helper thread), embedded, and kept only as a float64 running sum."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from audiovec.audio import AudioSource, iter_windows
from audiovec.encode.batches import BatchRunner, DurationPool, Featurized, unit
from audiovec.encode.windows import (
    Window,
    WindowGroups,
    is_array,
    plan_batches,
    stream_peak,
    windows_per_batch,
)

if TYPE_CHECKING:
    from audiovec.model import AudioTextEmbedder

# encode_stream(prefetch=True) reads the next window group ahead but leaves its log-mel to the model's
# thread: computed ahead, the log-mel's working set (~10 MB per 30 s window) would add to the model's instead
# of alternating with it (docs/benchmarks.md, section 6).
STREAM_FEATURIZE_AHEAD = False

T = TypeVar("T")


def read_ahead(items: Iterator[T], enabled: bool) -> Iterator[T]:
    """``items``, the next one produced in a helper thread while the caller works on the current one."""
    if not enabled:
        yield from items
        return
    with ThreadPoolExecutor(max_workers=1) as reader:
        future = reader.submit(next, items, None)
        while (item := future.result()) is not None:
            future = reader.submit(next, items, None)
            yield item
            del item


def encode_stream(
    model: AudioTextEmbedder,
    source: AudioSource,
    batch_size: int = 16,
    window_seconds: float | None = None,
    sample_rate: int | None = None,
    prefetch: bool = False,
) -> np.ndarray:
    """One source → one unit vector, embedding :func:`~audiovec.audio.iter_windows`' windows a group at a
    time as they are decoded and keeping only a float64 running sum (see ``encode_audio_stream``)."""
    window_s = float(window_seconds or model.config.window_seconds)
    rate = sample_rate if is_array(source) else None
    peak = stream_peak(model, source, window_s, rate)
    runner = BatchRunner(model)
    early = prefetch and STREAM_FEATURIZE_AHEAD
    windows = (Window(0, w, peak) for *_, w in iter_windows(source, window_s, rate))

    def prepare(group: list[Window]) -> list[list[Window] | Featurized]:
        batches = plan_batches(group, batch_size)
        return [runner.featurize(b) for b in batches] if early else list(batches)

    groups = map(prepare, WindowGroups(windows, windows_per_batch(batch_size, window_s)))
    total = np.zeros(model.embedding_dim, dtype=np.float64)
    for batches in read_ahead(groups, prefetch):
        pool = DurationPool()
        for keys, lengths, vectors in runner.run(batches):
            pool.add(keys, lengths, vectors)
        total += pool.sums[0]
    return unit(total)


__all__ = [
    "STREAM_FEATURIZE_AHEAD",
    "encode_stream",
    "read_ahead",
]


def embed_source(
    model: Any, source: Any, window_seconds: float | None = None, batch_size: int = 16
) -> np.ndarray:
    """A whole clip → one vector, streamed ``batch_size`` windows at a time: memory is bounded by the
    batch, not the file (:meth:`~audiovec.model.AudioTextEmbedder.encode_audio_stream`; the same vector as
    ``encode_audio`` and as :func:`pool_windows` over every window)."""
    return model.encode_audio_stream(source, batch_size=batch_size, window_seconds=window_seconds)
