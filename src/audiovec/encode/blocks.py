"""Blocks of many inputs: which inputs are decoded together (:class:`BlockPlanner`), decoding them in
threads (:class:`BlockDecoder`), and the loop that embeds block after block (:func:`encode_sources`); also
a rank's share of sharded encoding (:func:`encode_shard`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from audiovec.audio import AudioSource, header_seconds, load_audio
from audiovec.encode.batches import embed_waves
from audiovec.encode.stream import encode_stream
from audiovec.encode.windows import array_seconds, is_array
from audiovec.errors import AudioDecodeError

if TYPE_CHECKING:
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
    progress: Callable[[], Any] | None = None,
) -> EncodeResult:
    """Many sources → :class:`EncodeResult`, block by block (see ``encode_audio_detailed``). With
    ``prefetch`` the next block is decoded while this one is embedded, and the next length batch's log-mel
    computed while the model runs the current one. ``progress`` makes the bar (``update(n)``, ``close()``)
    once the arguments are checked."""
    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")
    if steps is None:
        steps = EncodeSteps(
            embed_block=lambda waves, size, ahead: embed_waves(model, waves, size, ahead),
            stream=lambda source, size: encode_stream(model, source, size),
        )
    bar = progress() if progress is not None else None
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
            if bar is not None:
                bar.update(done)
            current = upcoming if prefetch else decoder.submit(next(blocks, None))
    finally:
        decoder.close()
        if ahead is not None:
            ahead.shutdown(wait=True, cancel_futures=True)
    if bar is not None:
        bar.close()
    return EncodeResult(vectors, errors)


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
    dist.barrier()  # no rank tears gloo down while another still reads its share (it would abort)
    dist.destroy_process_group()
    return all_vectors, all_errors


__all__ = [
    "BLOCK_SECONDS",
    "FEATURIZE_AHEAD",
    "STREAM_OVER_SECONDS",
    "Block",
    "BlockDecoder",
    "BlockPlanner",
    "DecodedBlock",
    "EncodeResult",
    "EncodeSteps",
    "encode_shard",
    "encode_sources",
    "gather_shards",
]
