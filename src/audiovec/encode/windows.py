"""Windows: how a clip is cut (the tower's window, its file peak) and which windows share a forward pass
(sorted by length, cut where padding would grow or a pass would hold more than ``batch_size`` 30 s windows)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np

from audiovec.audio import (
    DEFAULT_WINDOW_SECONDS,
    SAMPLE_RATE,
    AudioSource,
    header_seconds,
    iter_windows,
    window_spans,
)

if TYPE_CHECKING:  # the model is passed in; importing it here would be circular
    from audiovec.model import AudioTextEmbedder

# The longest window a tower that sees whole files in its reference (Qwen3-Omni) gets by default: every file
# encode_audio decodes whole is then embedded as one sequence; longer ones stream in windows of this length.
MAX_WINDOW_SECONDS = 600.0  # = blocks.STREAM_OVER_SECONDS
# batch_size counts windows of this length: a batch of longer windows holds as much audio, not more windows
BATCH_WINDOW_SECONDS = DEFAULT_WINDOW_SECONDS
PAD_EFFICIENCY = 0.95

T = TypeVar("T")


class Window(NamedTuple):
    """One window of one input: the input's key, its samples, and the log-mel peak it is floored at
    (``None``: its own)."""

    key: int
    samples: np.ndarray
    peak: float | None


def window_policy(
    tower: Any, backbone: Any, projector_downsample: int = 1, projector_max_tokens: int = 0
) -> tuple[float, str]:
    """``(window_seconds, log_mel_floor)`` that give what the tower's own model sees (docs/long-audio.md).

    The window is the tower's reference span (Whisper 30 s; Qwen2.5-Omni 300 s, its processor's cap;
    Qwen3-Omni the whole file, here up to :data:`MAX_WINDOW_SECONDS`), shortened to what the backbone's
    positions hold and cut at a multiple of the tower's attention window (so tokens near a cut see the
    context they see in the whole file). Never shorter than 30 s, so clips up to 30 s keep their vectors.
    """
    window = float(tower.context_seconds or MAX_WINDOW_SECONDS)
    limit = getattr(backbone.config, "max_position_embeddings", None)
    if limit and not (projector_max_tokens and projector_max_tokens <= limit):
        window = min(window, limit * max(1, projector_downsample) / tower.tokens_per_second)
    unit = tower.attention_seconds
    window = unit * math.floor(window / unit + 1e-9)
    return max(window, DEFAULT_WINDOW_SECONDS), tower.log_mel_floor


def batch_samples(batch_size: int) -> int:
    """Padded samples one forward pass may hold: ``batch_size`` windows of 30 s (longer windows: fewer)."""
    return max(1, batch_size) * int(BATCH_WINDOW_SECONDS * SAMPLE_RATE)


def windows_per_batch(batch_size: int, window_seconds: float) -> int:
    """Windows a streaming pass reads per group: ``batch_size``, fewer for windows over 30 s, so that a
    group holds no more audio than ``batch_size`` 30 s windows; at least one."""
    batch_size = max(1, batch_size)
    return max(1, min(batch_size, int(batch_size * BATCH_WINDOW_SECONDS // max(window_seconds, 1e-9))))


def length_batches(
    pieces: list[Any],
    batch_size: int,
    min_efficiency: float = PAD_EFFICIENCY,
    max_samples: int | None = None,
) -> list[list[Any]]:
    """Split length-sorted ``pieces`` (tuples whose second item is the waveform) into batches of at most
    ``batch_size`` that keep padding low: a batch closes early when adding the next (longer) piece would
    drop its useful/padded samples below ``min_efficiency``, or make it hold more than ``max_samples``
    padded samples (a piece alone always fits)."""
    batches: list[list[Any]] = []
    current: list[Any] = []
    useful = 0
    for piece in pieces:
        n = piece[1].shape[0]
        full = len(current) >= batch_size or (
            max_samples is not None and n * (len(current) + 1) > max_samples
        )
        if current and (full or (useful + n) < min_efficiency * n * (len(current) + 1)):
            batches.append(current)
            current, useful = [], 0
        current.append(piece)
        useful += n
    if current:
        batches.append(current)
    return batches


def plan_batches(windows: Iterable[Window], batch_size: int) -> list[list[Window]]:
    """Which windows share a forward pass: sorted by length (stable), then :func:`length_batches` with at
    most ``batch_size`` 30 s windows of audio per pass."""
    ordered = sorted(windows, key=lambda w: w.samples.shape[0])
    return length_batches(ordered, batch_size, max_samples=batch_samples(batch_size))


def file_peak(model: AudioTextEmbedder, wave: np.ndarray, spans: Sequence[tuple[int, int]]) -> float | None:
    """The log-mel peak a decoded file's windows are floored at: ``None`` (each window its own) unless the
    model floors per file and the file has more than one window; then the largest window peak."""
    if model.config.log_mel_floor != "file" or len(spans) <= 1:
        return None
    return max(model.feature_extractor.peak(wave[start:end]) for start, end in spans)


def stream_peak(
    model: AudioTextEmbedder, source: AudioSource, window_seconds: float, sample_rate: int | None = None
) -> float | None:
    """:func:`file_peak` of a source without holding it: one streaming pass over its windows (skipped when
    the model floors per window or the header says the file is one window)."""
    if model.config.log_mel_floor != "file":
        return None
    header = header_seconds(source)
    if header is not None and header <= window_seconds:
        return None
    peaks = [model.feature_extractor.peak(w) for *_, w in iter_windows(source, window_seconds, sample_rate)]
    return max(peaks) if len(peaks) > 1 else None


def split_windows(model: AudioTextEmbedder, key: int, wave: np.ndarray) -> list[Window]:
    """A decoded waveform → its windows (the model's window length), floored at the file's peak."""
    spans = window_spans(wave.shape[0], model.config.window_seconds)
    peak = file_peak(model, wave, spans)
    return [Window(key, wave[start:end], peak) for start, end in spans]


class WindowGroups:
    """An iterator over ``items`` a list of ``size`` at a time, read only as consumed (holding nothing
    between groups, unlike a generator's frame)."""

    def __init__(self, items: Iterable[T], size: int) -> None:
        self.items, self.size = iter(items), max(1, size)

    def __iter__(self) -> WindowGroups:
        return self

    def __next__(self) -> list[Any]:
        group = list(itertools.islice(self.items, self.size))
        if not group:
            raise StopIteration
        return group


def is_array(item: Any) -> bool:
    """A numpy array or a tensor (an input that needs its ``sample_rate``)."""
    return isinstance(item, np.ndarray) or (hasattr(item, "detach") and hasattr(item, "shape"))


def array_seconds(item: Any, sample_rate: int | None) -> float:
    """An array input's duration (its longer axis at ``sample_rate``); 0 for what has no cheap duration."""
    if not is_array(item) or not sample_rate or len(item.shape) == 0:
        return 0.0
    return max(int(n) for n in item.shape) / float(sample_rate)


__all__ = [
    "BATCH_WINDOW_SECONDS",
    "MAX_WINDOW_SECONDS",
    "PAD_EFFICIENCY",
    "Window",
    "WindowGroups",
    "array_seconds",
    "batch_samples",
    "file_peak",
    "is_array",
    "length_batches",
    "plan_batches",
    "split_windows",
    "stream_peak",
    "window_policy",
    "windows_per_batch",
]
