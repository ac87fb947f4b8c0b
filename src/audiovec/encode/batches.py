"""Batches: length batches through ``featurize`` → ``forward_audio`` (:class:`BatchRunner`), and window
vectors pooled back per clip by duration (:class:`DurationPool`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from audiovec.encode.windows import Window, plan_batches, split_windows

if TYPE_CHECKING:
    from audiovec.model import AudioTextEmbedder


class Featurized(NamedTuple):
    """A length batch after its log-mel: the windows' keys and lengths, and the model's input tensors."""

    keys: list[int]
    lengths: list[int]
    features: dict[str, torch.Tensor]


class BatchRunner:
    """Runs length batches through ``featurize`` → ``forward_audio``. With ``ahead`` (a one-thread pool) the
    next batch's log-mel is computed there while the model runs the current one; ``on_batch`` is told of
    every forward pass (the service counts them)."""

    def __init__(
        self,
        model: AudioTextEmbedder,
        ahead: ThreadPoolExecutor | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.model, self.ahead, self.on_batch = model, ahead, on_batch

    def featurize(self, batch: list[Window] | Featurized) -> Featurized:
        if isinstance(batch, Featurized):
            return batch
        features = self.model.featurize([w.samples for w in batch], [w.peak for w in batch])
        return Featurized([w.key for w in batch], [w.samples.shape[0] for w in batch], features)

    @torch.inference_mode()
    def forward(self, features: dict[str, torch.Tensor]) -> np.ndarray:
        vectors = self.model.forward_audio(**features).float().cpu().numpy()
        if self.on_batch is not None:
            self.on_batch(vectors.shape[0])
        return vectors

    def run(
        self, batches: list[list[Window] | Featurized]
    ) -> Iterator[tuple[list[int], list[int], np.ndarray]]:
        """``(keys, lengths, vectors)`` per batch. Consumes ``batches``: a batch's samples are let go once
        featurized, before the model runs (memory of a streamed file stays one group)."""
        pending: Future | None = None
        if self.ahead is not None and batches:
            pending = self.ahead.submit(self.featurize, batches[0])
        while batches:
            batch = batches.pop(0)
            if pending is not None:
                ready = pending.result()
                pending = self.ahead.submit(self.featurize, batches[0]) if batches else None  # type: ignore[union-attr]
            else:
                ready = self.featurize(batch)
            del batch
            keys, lengths, features = ready
            del ready
            vectors = self.forward(features)
            del features
            yield keys, lengths, vectors


@dataclass
class DurationPool:
    """Per key, the float64 sum of window vectors weighted by window length; :meth:`vector` normalises it
    (the duration-weighted mean, normalised, as :func:`pool_windows` computes it)."""

    sums: dict[int, Any] = field(default_factory=dict)

    def add(self, keys: Sequence[int], lengths: Sequence[int], vectors: np.ndarray) -> None:
        for key, n, vec in zip(keys, lengths, vectors):
            self.sums[key] = self.sums.get(key, 0.0) + n * vec.astype(np.float64)

    def vector(self, key: int) -> np.ndarray:
        return unit(self.sums[key])


def unit(total: np.ndarray) -> np.ndarray:
    """``total`` normalised, as float32."""
    return (total / max(np.linalg.norm(total), 1e-12)).astype(np.float32)


def pool_windows(vectors: np.ndarray, durations: Sequence[float]) -> np.ndarray:
    """Duration-weighted mean of window vectors, normalised (how a whole file is embedded)."""
    weights = np.asarray(durations, dtype=np.float64)[:, None]
    return unit((vectors.astype(np.float64) * weights).sum(0))


def embed_windows(
    model: AudioTextEmbedder, waves: Sequence[np.ndarray], batch_size: int = 16, peak: float | None = None
) -> np.ndarray:
    """One unit vector per waveform (each at most one window long), in order, through the same length
    batches and ``featurize`` → ``forward_audio`` as :func:`embed_waves` (a one-window clip gets
    ``encode_audio``'s vector). ``peak``: the windows' file peak for models that floor per file."""
    out = np.zeros((len(waves), model.embedding_dim), dtype=np.float32)
    batches = plan_batches([Window(i, w, peak) for i, w in enumerate(waves)], batch_size)
    for keys, _, vectors in BatchRunner(model).run(batches):
        out[keys] = vectors
    return out


def embed_waves(
    model: AudioTextEmbedder,
    waves: Mapping[int, np.ndarray],
    batch_size: int,
    ahead: ThreadPoolExecutor | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> dict[int, np.ndarray]:
    """Decoded waveforms by key → one unit vector each: every window of every waveform is batched together
    by length, and each waveform's window vectors are pooled by duration."""
    windows = [w for key, wave in waves.items() for w in split_windows(model, key, wave)]
    pool = DurationPool()
    for keys, lengths, vectors in BatchRunner(model, ahead, on_batch).run(plan_batches(windows, batch_size)):
        pool.add(keys, lengths, vectors)
    return {key: pool.vector(key) for key in pool.sums}


__all__ = [
    "BatchRunner",
    "DurationPool",
    "Featurized",
    "embed_waves",
    "embed_windows",
    "pool_windows",
    "unit",
]
