"""Audio → vectors: the one path the model, the index, the service and sharded encoding take.

    inputs ─ BlockPlanner ─ BlockDecoder ─ split_windows ─ plan_batches ─ BatchRunner ─ DurationPool
             (which inputs   (threads:      (windows and    (which windows  (featurize →   (length-weighted
              decode together) waveforms)    file peak)      share a pass)  forward_audio)  sum, normalised)

A window is embedded alone; a clip's vector is the duration-weighted mean of its windows' vectors, then
normalised. Files whose header says they are long skip the decoder: :func:`encode_stream` reads them window
group by window group, so memory is bounded by a group, not the file (docs/long-audio.md).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np
import torch

from audiovec.audio import (
    DEFAULT_WINDOW_SECONDS,
    SAMPLE_RATE,
    AudioSource,
    header_seconds,
    iter_windows,
    load_audio,
    window_spans,
)
from audiovec.errors import AudioDecodeError

if TYPE_CHECKING:  # the model is passed in; importing it here would be circular
    from audiovec.model import AudioTextEmbedder

# Files longer than this (by their header) are streamed window batch by window batch instead of decoded
# whole; shorter ones are decoded whole and their windows batched together across files.
STREAM_OVER_SECONDS = 600.0
# A block of inputs decoded whole holds at most this much audio by their headers (and at most block_size
# inputs): 256 clips just under STREAM_OVER_SECONDS would otherwise be ~9.8 GB of float32 at 16 kHz; 30 min
# is ~115 MB. One clip longer than this is a block of its own.
BLOCK_SECONDS = 1800.0
# With prefetch, the log-mel of the next length batch of a block is computed in a helper thread while the
# model runs the current one (features are computed by the same call on the same batch either way).
FEATURIZE_AHEAD = True
# encode_stream(prefetch=True) reads the next window group ahead but leaves its log-mel to the model's
# thread: computed ahead, the log-mel's working set (~10 MB per 30 s window) would add to the model's instead
# of alternating with it (docs/benchmarks.md, section 6).
STREAM_FEATURIZE_AHEAD = False
# The longest window a tower that sees whole files in its reference (Qwen3-Omni) gets by default: every file
# encode_audio decodes whole is then embedded as one sequence; longer ones stream in windows of this length.
MAX_WINDOW_SECONDS = STREAM_OVER_SECONDS
# batch_size counts windows of this length: a batch of longer windows holds as much audio, not more windows
BATCH_WINDOW_SECONDS = DEFAULT_WINDOW_SECONDS
PAD_EFFICIENCY = 0.95

T = TypeVar("T")


@dataclass
class EncodeResult:
    """Vectors for every input (NaN rows where an input failed) and the failures by input index."""

    vectors: np.ndarray
    errors: dict[int, str]

    @property
    def ok(self) -> np.ndarray:
        mask = np.ones(len(self.vectors), dtype=bool)
        mask[list(self.errors)] = False
        return mask


# ------------------------------------------------------------------------------ windows and batches


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


# ------------------------------------------------------------------------------ forward passes and pooling


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


# ------------------------------------------------------------------------------ streaming one long source


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


# ------------------------------------------------------------------------------ blocks of many inputs


@dataclass
class Block:
    """Consecutive inputs decoded together: their numbers and their header durations (None: unknown)."""

    indices: range
    headers: list[float | None]


class BlockPlanner:
    """Cuts inputs into blocks of at most ``block_size`` inputs and, by their headers (arrays by their
    shape), ``block_seconds`` of audio (``None``: no limit; inputs of unknown duration count by number only;
    a longer clip is a block alone). Inputs whose header says more than ``stream_over_seconds`` are left
    to streaming and count for nothing."""

    def __init__(
        self,
        inputs: Sequence[AudioSource],
        block_size: int = 256,
        block_seconds: float | None = BLOCK_SECONDS,
        stream_over_seconds: float | None = STREAM_OVER_SECONDS,
        sample_rate: int | None = None,
        header: Callable[[AudioSource], float | None] = header_seconds,
    ) -> None:
        self.inputs, self.block_size, self.block_seconds = inputs, max(1, block_size), block_seconds
        self.stream_over_seconds, self.sample_rate, self.header = stream_over_seconds, sample_rate, header
        self.read_headers = stream_over_seconds is not None or block_seconds is not None

    def streams(self, header: float | None) -> bool:
        over = self.stream_over_seconds
        return over is not None and header is not None and header > over

    def block_at(self, start: int) -> Block:
        headers: list[float | None] = []
        total, end = 0.0, start
        while end < len(self.inputs) and end - start < self.block_size:
            item = self.inputs[end]
            header = self.header(item) if self.read_headers else None
            if self.block_seconds is not None and not self.streams(header):
                seconds = header if header is not None else array_seconds(item, self.sample_rate)
                if end > start and total + seconds > self.block_seconds:
                    break
                total += seconds
            headers.append(header)
            end += 1
        return Block(range(start, end), headers)

    def __iter__(self) -> Iterator[Block]:
        """The blocks in order, each planned (headers read) only when asked for."""
        start = 0
        while start < len(self.inputs):
            block = self.block_at(start)
            start = block.indices.stop
            yield block


@dataclass
class DecodedBlock:
    """A block after decoding: waveforms by input, inputs left to streaming, failures in input order."""

    block: Block
    waves: dict[int, np.ndarray]
    streamed: list[int]
    failures: list[tuple[int, AudioDecodeError]]


class BlockDecoder:
    """Decodes a block's inputs in ``workers`` threads (:meth:`submit`, then :meth:`result`); an input
    that the planner streams is never decoded whole. Decode errors name the input."""

    def __init__(
        self,
        inputs: Sequence[AudioSource],
        planner: BlockPlanner,
        workers: int = 2,
        load: Callable[..., np.ndarray] = load_audio,
    ) -> None:
        self.inputs, self.planner, self.load = inputs, planner, load
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers))

    def decode(self, i: int, header: float | None) -> np.ndarray | AudioDecodeError | None:
        """The waveform, the error, or None for a long file to stream."""
        try:
            if self.planner.streams(header):
                return None
            item = self.inputs[i]
            return self.load(item, self.planner.sample_rate if is_array(item) else None)
        except AudioDecodeError as exc:
            return exc

    def submit(self, block: Block | None) -> tuple[Block, list[Future]] | None:
        if block is None:
            return None
        return block, [self.pool.submit(self.decode, i, h) for i, h in zip(block.indices, block.headers)]

    def result(self, pending: tuple[Block, list[Future]]) -> DecodedBlock:
        """Waits for a submitted block; the futures are emptied so the waveforms live in the result only."""
        block, futures = pending
        decoded = DecodedBlock(block, {}, [], [])
        for i in block.indices:
            wave = futures.pop(0).result()
            if wave is None:
                decoded.streamed.append(i)
            elif isinstance(wave, AudioDecodeError):
                decoded.failures.append((i, wave))
            else:
                decoded.waves[i] = wave
        return decoded

    def close(self) -> None:
        """Drops queued decodes (of a block read ahead, after an error) and waits for running ones."""
        self.pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class EncodeSteps:
    """The steps :func:`encode_sources` calls, as arguments: the model passes its own (bound methods and
    its module's names), so one swapped in on the model (a test's spy) is the one used."""

    embed_block: Callable[[dict[int, np.ndarray], int, ThreadPoolExecutor | None], dict[int, np.ndarray]]
    stream: Callable[[AudioSource, int], np.ndarray]
    load: Callable[..., np.ndarray] = load_audio
    header: Callable[[AudioSource], float | None] = header_seconds


def encode_sources(
    model: AudioTextEmbedder,
    inputs: Sequence[AudioSource],
    batch_size: int = 16,
    sample_rate: int | None = None,
    on_error: str = "raise",
    block_size: int = 256,
    decode_workers: int = 2,
    stream_over_seconds: float | None = STREAM_OVER_SECONDS,
    block_seconds: float | None = BLOCK_SECONDS,
    prefetch: bool = False,
    steps: EncodeSteps | None = None,
    progress: Any = None,
) -> EncodeResult:
    """Many sources → :class:`EncodeResult`, block by block (see ``encode_audio_detailed``). With
    ``prefetch`` the next block is decoded while this one is embedded, and the next length batch's log-mel
    computed while the model runs the current one."""
    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")
    if steps is None:
        steps = EncodeSteps(
            embed_block=lambda waves, size, ahead: embed_waves(model, waves, size, ahead),
            stream=lambda source, size: encode_stream(model, source, size),
        )
    vectors = np.full((len(inputs), model.embedding_dim), np.nan, dtype=np.float32)
    errors: dict[int, str] = {}

    def failed(i: int, exc: AudioDecodeError) -> None:
        if on_error == "raise":
            raise exc
        errors[i] = str(exc)

    planner = BlockPlanner(inputs, block_size, block_seconds, stream_over_seconds, sample_rate, steps.header)
    blocks = iter(planner)
    decoder = BlockDecoder(inputs, planner, decode_workers, steps.load)
    ahead = ThreadPoolExecutor(max_workers=1) if prefetch and FEATURIZE_AHEAD else None
    try:
        current = decoder.submit(next(blocks, None))
        while current is not None:
            upcoming = decoder.submit(next(blocks, None)) if prefetch else None  # decoded meanwhile
            decoded = decoder.result(current)
            del current
            for i, exc in decoded.failures:
                failed(i, exc)
            for i, vec in steps.embed_block(decoded.waves, batch_size, ahead).items():
                vectors[i] = vec
            streamed, done = decoded.streamed, len(decoded.block.indices)
            del decoded  # the block's waveforms
            for i in streamed:
                try:
                    vectors[i] = steps.stream(inputs[i], batch_size)
                except AudioDecodeError as exc:
                    failed(i, exc)
            if progress is not None:
                progress.update(done)
            current = upcoming if prefetch else decoder.submit(next(blocks, None))
    finally:
        decoder.close()
        if ahead is not None:
            ahead.shutdown(wait=True, cancel_futures=True)
    if progress is not None:
        progress.close()
    return EncodeResult(vectors, errors)


# ------------------------------------------------------------------------------ sharded encoding


def encode_shard(
    model: AudioTextEmbedder, sources: Sequence[AudioSource], rank: int = 0, world: int = 1, **kwargs: Any
) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """This rank's share of ``sources`` (every ``world``-th from ``rank``) → its vectors and its errors,
    both keyed by position in ``sources`` (``on_error="skip"``; ``kwargs`` go to ``encode_audio_detailed``)."""
    mine = list(range(rank, len(sources), world))
    result = model.encode_audio_detailed([sources[i] for i in mine], on_error="skip", **kwargs)
    errors = {mine[i]: msg for i, msg in result.errors.items()}
    vectors = {mine[i]: result.vectors[i] for i in range(len(mine)) if i not in result.errors}
    return vectors, errors


def gather_shards(
    vectors: dict[int, np.ndarray], errors: dict[int, str], world: int
) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """Every rank's :func:`encode_shard` output merged (on every rank), then the process group ended."""
    import torch.distributed as dist

    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, (vectors, errors))
    all_vectors: dict[int, np.ndarray] = {}
    all_errors: dict[int, str] = {}
    for v, e in gathered:
        all_vectors.update(v)
        all_errors.update(e)
    dist.destroy_process_group()
    return all_vectors, all_errors


# ------------------------------------------------------------------------------ inputs


def is_array(item: Any) -> bool:
    """A numpy array or a tensor (an input that needs its ``sample_rate``)."""
    return isinstance(item, np.ndarray) or (hasattr(item, "detach") and hasattr(item, "shape"))


def array_seconds(item: Any, sample_rate: int | None) -> float:
    """An array input's duration (its longer axis at ``sample_rate``); 0 for what has no cheap duration."""
    if not is_array(item) or not sample_rate or len(item.shape) == 0:
        return 0.0
    return max(int(n) for n in item.shape) / float(sample_rate)


__all__ = [
    "BLOCK_SECONDS",
    "STREAM_OVER_SECONDS",
    "BatchRunner",
    "Block",
    "BlockDecoder",
    "BlockPlanner",
    "DecodedBlock",
    "DurationPool",
    "EncodeResult",
    "EncodeSteps",
    "Window",
    "WindowGroups",
    "batch_samples",
    "embed_waves",
    "embed_windows",
    "encode_shard",
    "encode_sources",
    "encode_stream",
    "file_peak",
    "gather_shards",
    "length_batches",
    "plan_batches",
    "pool_windows",
    "split_windows",
    "stream_peak",
    "window_policy",
    "windows_per_batch",
]
