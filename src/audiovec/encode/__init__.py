"""Audio → vectors: the one path the model, the index, the service and sharded encoding take.

    inputs ─ BlockPlanner ─ BlockDecoder ─ split_windows ─ plan_batches ─ BatchRunner ─ DurationPool
             (which inputs   (threads:      (windows and    (which windows  (featurize →   (length-weighted
              decode together) waveforms)    file peak)      share a pass)  forward_audio)  sum, normalised)

A window is embedded alone; a clip's vector is the duration-weighted mean of its windows' vectors, then
normalised. Files whose header says they are long skip the decoder: :func:`encode_stream` reads them window
group by window group, so memory is bounded by a group, not the file (docs/long-audio.md).

Modules: :mod:`.windows` (cutting clips, planning which windows share a pass), :mod:`.batches` (running
passes, pooling), :mod:`.stream` (one long source), :mod:`.blocks` (many inputs, sharded encoding). The
benchmark switches ``blocks.FEATURIZE_AHEAD`` and ``stream.STREAM_FEATURIZE_AHEAD`` live where they are read.
"""

from __future__ import annotations

from audiovec.encode.batches import (
    BatchRunner,
    DurationPool,
    Featurized,
    embed_waves,
    embed_windows,
    pool_windows,
    unit,
)
from audiovec.encode.blocks import (
    BLOCK_SECONDS,
    STREAM_OVER_SECONDS,
    Block,
    BlockDecoder,
    BlockPlanner,
    DecodedBlock,
    EncodeResult,
    EncodeSteps,
    encode_shard,
    encode_sources,
    gather_shards,
)
from audiovec.encode.stream import embed_source, encode_stream, read_ahead
from audiovec.encode.windows import (
    BATCH_WINDOW_SECONDS,
    MAX_WINDOW_SECONDS,
    PAD_EFFICIENCY,
    Window,
    WindowGroups,
    array_seconds,
    batch_samples,
    file_peak,
    is_array,
    length_batches,
    plan_batches,
    split_windows,
    stream_peak,
    window_policy,
    windows_per_batch,
)

__all__ = [
    "embed_source",
    "BATCH_WINDOW_SECONDS",
    "BLOCK_SECONDS",
    "MAX_WINDOW_SECONDS",
    "PAD_EFFICIENCY",
    "STREAM_OVER_SECONDS",
    "BatchRunner",
    "Block",
    "BlockDecoder",
    "BlockPlanner",
    "DecodedBlock",
    "DurationPool",
    "EncodeResult",
    "EncodeSteps",
    "Featurized",
    "Window",
    "WindowGroups",
    "array_seconds",
    "batch_samples",
    "embed_waves",
    "embed_windows",
    "encode_shard",
    "encode_sources",
    "encode_stream",
    "file_peak",
    "gather_shards",
    "is_array",
    "length_batches",
    "plan_batches",
    "pool_windows",
    "read_ahead",
    "split_windows",
    "stream_peak",
    "unit",
    "window_policy",
    "windows_per_batch",
]
