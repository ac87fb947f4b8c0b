"""The embedding model: audio tower → projector → LLM backbone → pooling → L2-normalised vector.

Text skips the first two stages and enters the same backbone through its tokenizer, so both modalities
land in one space. Reads top to bottom like the data flow::

    waveform ─ LogMelExtractor ─ AudioTower ─ Projector ─┐
                                                        ├─ backbone(inputs_embeds) ─ pool ─ normalise
    text ───── tokenizer ─ backbone token embeddings ───┘
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audiovec import __version__
from audiovec.adapters import AudioAdapter
from audiovec.audio import (
    DEFAULT_WINDOW_SECONDS,
    SAMPLE_RATE,
    AudioSource,
    header_seconds,
    iter_windows,
    load_audio,
    window_spans,
)
from audiovec.errors import (
    AudioDecodeError,
    CheckpointError,
    ConfigError,
    UnsafeCheckpointError,
    describe_source,
)
from audiovec.features import LogMelExtractor
from audiovec.pooling import POOLING_MODES, pool
from audiovec.serialization import atomic_directory, load_state_dict, recover_directory, save_state_dict
from audiovec.towers import AudioTower, build_tower

CONFIG_NAME = "config.json"
ARCHITECTURE = "AudioTextEmbedder"
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
# encode_audio_stream(prefetch=True) reads the next window batch ahead but leaves its log-mel to the model's
# thread: computed ahead, the log-mel's working set (~10 MB per 30 s window) would add to the model's instead
# of alternating with it (docs/benchmarks.md, section 6).
STREAM_FEATURIZE_AHEAD = False
# The longest window a tower that sees whole files in its reference (Qwen3-Omni) gets by default: every file
# encode_audio decodes whole is then embedded as one sequence; longer ones stream in windows of this length.
MAX_WINDOW_SECONDS = STREAM_OVER_SECONDS
# batch_size counts windows of this length: a batch of longer windows holds as much audio, not more windows
BATCH_WINDOW_SECONDS = DEFAULT_WINDOW_SECONDS
LOG_MEL_FLOORS = ("file", "window")


class Projector(nn.Module):
    """Tower tokens → backbone hidden size. Optionally averages ``downsample`` neighbouring tokens first
    (masked), which shortens long sequences for backbones with few positions (BERT: 512), and then, with
    ``max_tokens``, averages a longer clip's tokens into that many equal segments: the backbone's cost is per
    token, and an embedding needs the gist of a clip more than its frame rate. ``layers=2`` adds a GELU and
    a second linear layer (an MLP): with a frozen backbone the projector is where audio becomes "words"."""

    def __init__(
        self, in_dim: int, out_dim: int, downsample: int = 1, max_tokens: int = 0, layers: int = 1
    ) -> None:
        super().__init__()
        if downsample < 1:
            raise ConfigError(f"projector downsample must be >= 1, got {downsample}")
        if max_tokens < 0:
            raise ConfigError(f"projector max_tokens must be >= 0 (0: no limit), got {max_tokens}")
        if layers not in (1, 2):
            raise ConfigError(f"projector layers must be 1 (linear) or 2 (MLP), got {layers}")
        self.downsample = downsample
        self.max_tokens = max_tokens
        self.linear = nn.Linear(in_dim, out_dim)
        self.out = nn.Sequential(nn.GELU(), nn.Linear(out_dim, out_dim)) if layers == 2 else None

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.downsample > 1:
            tokens, mask = _masked_avg_pool(tokens, mask, self.downsample)
        if self.max_tokens and tokens.shape[1] > self.max_tokens:
            tokens, mask = _segment_means(tokens, mask, self.max_tokens)
        x = self.linear(tokens.to(self.linear.weight.dtype))
        return (x if self.out is None else self.out(x)), mask


def _segment_means(tokens: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``n`` valid tokens → ``min(n, k)`` means of consecutive, near-equal segments (position
    ``p`` goes to segment ``floor(p * k / n)``); rows with ``n <= k`` keep their tokens."""
    n = mask.sum(1, keepdim=True).clamp(min=1)
    pos = torch.arange(tokens.shape[1], device=tokens.device)[None, :]
    segment = torch.where(n > k, (pos * k) // n, pos).clamp(max=k - 1)
    weights = nn.functional.one_hot(segment, k).to(tokens.dtype) * mask[..., None].to(
        tokens.dtype
    )  # (B, N, k)
    counts = weights.sum(1)  # (B, k)
    out = torch.einsum("bnk,bnd->bkd", weights, tokens) / counts.clamp(min=1.0)[..., None]
    return out, counts > 0


def _masked_avg_pool(tokens: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    batch, length, dim = tokens.shape
    pad = (-length) % k
    weights = mask.to(tokens.dtype)
    if pad or torch.jit.is_tracing():  # traced (ONNX export): pad by the length's own remainder, not 0
        tokens = nn.functional.pad(tokens, (0, 0, 0, pad))
        weights = nn.functional.pad(weights, (0, pad))
    tokens = (tokens * weights[..., None]).reshape(batch, -1, k, dim).sum(2)
    counts = weights.reshape(batch, -1, k).sum(2)
    return tokens / counts.clamp(min=1.0)[..., None], counts > 0


@dataclass
class EmbedderConfig:
    """Everything needed to rebuild the model's structure; serialised as ``config.json``."""

    tower_kind: str
    tower_config: dict[str, Any]
    backbone_config: dict[str, Any]
    tower_layers: str = "last"  # last | mean (Whisper): which hidden states make the audio tokens
    projector_downsample: int = 1
    projector_max_tokens: int = 0  # 0: every (downsampled) token reaches the backbone
    projector_layers: int = 1  # 1: linear, 2: MLP
    pooling: str = "mean"
    window_seconds: float | None = (
        None  # None: the tower's own (see window_policy); set when the model is built
    )
    min_seconds: float = 0.0
    text_max_length: int = 512
    audio_adapter: dict[str, Any] | None = None  # {r, alpha, targets}: backbone LoRA used by audio only
    log_mel_floor: str | None = None  # file | window; None: the tower's own (see window_policy)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "architecture": ARCHITECTURE,
            "audiovec_version": __version__,
            "tower": {"kind": self.tower_kind, "config": self.tower_config, "layers": self.tower_layers},
            "projector": {
                "downsample": self.projector_downsample,
                "max_tokens": self.projector_max_tokens,
                "layers": self.projector_layers,
            },
            "backbone": {"config": self.backbone_config},
            "pooling": self.pooling,
            "normalize": True,
            "features": {
                "n_mels": int(self.tower_config.get("num_mel_bins", 128)),
                "sample_rate": SAMPLE_RATE,
                "window_seconds": self.window_seconds,
                "log_mel_floor": self.log_mel_floor,
                "min_seconds": self.min_seconds,
            },
            "text": {"max_length": self.text_max_length},
            **({"audio_adapter": self.audio_adapter} if self.audio_adapter else {}),
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = CONFIG_NAME) -> EmbedderConfig:
        if data.get("architecture") != ARCHITECTURE:
            raise ConfigError(f"{source}: not an audiovec model (architecture={data.get('architecture')!r})")
        features = data.get("features", {})
        window = features.get("window_seconds", DEFAULT_WINDOW_SECONDS)  # null: the tower's own
        try:
            return cls(
                tower_kind=data["tower"]["kind"],
                tower_layers=data["tower"].get("layers", "last"),
                tower_config=data["tower"]["config"],
                backbone_config=data["backbone"]["config"],
                projector_downsample=int(data.get("projector", {}).get("downsample", 1)),
                projector_max_tokens=int(data.get("projector", {}).get("max_tokens", 0)),
                projector_layers=int(data.get("projector", {}).get("layers", 1)),
                pooling=data.get("pooling", "mean"),
                window_seconds=None if window is None else float(window),
                # folders written before the floor was a setting floored every window at its own peak
                log_mel_floor=features.get("log_mel_floor", "window"),
                min_seconds=float(features.get("min_seconds", 0.0)),
                text_max_length=int(data.get("text", {}).get("max_length", 512)),
                audio_adapter=data.get("audio_adapter"),
                extra=data.get("extra", {}),
            )
        except KeyError as exc:
            raise ConfigError(f"{source}: missing field {exc}") from None


def build_backbone(config: dict[str, Any] | Any) -> nn.Module:
    """A transformers *base* model (no LM head) from its config dict or config object."""
    from transformers import AutoModel

    if isinstance(config, dict):
        config = backbone_config_from_dict(config)
    if not getattr(config, "_attn_implementation_internal", None):
        config._attn_implementation = "sdpa"
    backbone = AutoModel.from_config(config)
    if getattr(backbone, "pooler", None) is not None:  # BERT-style pooler: unused, drop it
        backbone.pooler = None
    return backbone


def backbone_config_from_dict(data: dict[str, Any]) -> Any:
    from transformers import CONFIG_MAPPING

    model_type = data.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ConfigError(f"backbone config has unknown model_type {model_type!r}")
    return CONFIG_MAPPING[model_type].from_dict({k: v for k, v in data.items() if k != "model_type"})


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


class AudioTextEmbedder(nn.Module):
    """Audio and text → one normalised vector each, in a shared space."""

    def __init__(
        self, config: EmbedderConfig, tower: AudioTower, backbone: nn.Module, tokenizer: Any
    ) -> None:
        super().__init__()
        if config.pooling not in POOLING_MODES:
            raise ConfigError(f"unknown pooling {config.pooling!r}; choose one of {POOLING_MODES}")
        self.config = config
        tower.set_layers(config.tower_layers)
        self.tower = tower
        hidden = int(backbone.config.hidden_size)
        self.projector = Projector(
            tower.output_dim, hidden, config.projector_downsample, config.projector_max_tokens,
            config.projector_layers,
        )  # fmt: skip
        self.backbone = backbone
        self.audio_adapter: AudioAdapter | None = None
        if config.audio_adapter:
            self.audio_adapter = AudioAdapter(backbone, **config.audio_adapter)
        self.tokenizer = tokenizer
        self.feature_extractor = LogMelExtractor(tower.n_mels, min_seconds=config.min_seconds)
        window, floor = window_policy(
            tower, backbone, config.projector_downsample, config.projector_max_tokens
        )
        if config.window_seconds is None:
            config.window_seconds = window
        if config.log_mel_floor is None:
            config.log_mel_floor = floor
        if config.log_mel_floor not in LOG_MEL_FLOORS:
            raise ConfigError(f"log_mel_floor must be one of {LOG_MEL_FLOORS}, not {config.log_mel_floor!r}")
        self._check_positions()

    def add_audio_adapter(
        self, r: int = 8, alpha: float = 16.0, targets: str | list[str] = "all-linear"
    ) -> AudioAdapter:
        """Give the backbone audio-only LoRA adapters (see :mod:`audiovec.adapters`); text is unaffected."""
        if self.audio_adapter is not None:
            raise ConfigError("this model already has an audio adapter")
        self.audio_adapter = AudioAdapter(self.backbone, r, alpha, targets).to(self.device)
        self.config.audio_adapter = self.audio_adapter.to_config()
        return self.audio_adapter

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def from_parts(
        cls,
        tower: AudioTower,
        backbone: nn.Module,
        tokenizer: Any,
        *,
        pooling: str = "mean",
        projector_downsample: int = 1,
        projector_max_tokens: int = 0,
        projector_layers: int = 1,
        tower_layers: str = "last",
        window_seconds: float | None = None,
        min_seconds: float = 0.0,
        text_max_length: int = 512,
        log_mel_floor: str | None = None,
    ) -> AudioTextEmbedder:
        """Assemble a model around an existing tower and backbone (weights kept; projector new).
        ``window_seconds`` / ``log_mel_floor`` default to the tower's own (:func:`window_policy`)."""
        config = EmbedderConfig(
            tower_kind=tower.kind,
            tower_config=_config_dict(tower.config),
            backbone_config=_config_dict(backbone.config),
            projector_downsample=projector_downsample,
            projector_max_tokens=projector_max_tokens,
            projector_layers=projector_layers,
            tower_layers=tower_layers,
            pooling=pooling,
            window_seconds=window_seconds,
            min_seconds=min_seconds,
            text_max_length=text_max_length,
            log_mel_floor=log_mel_floor,
        )
        return cls(config, tower, backbone, tokenizer)

    @classmethod
    def from_config(cls, config: EmbedderConfig, tokenizer: Any) -> AudioTextEmbedder:
        """Randomly initialised model of the given structure."""
        return cls(
            config,
            build_tower(config.tower_kind, config.tower_config),
            build_backbone(config.backbone_config),
            tokenizer,
        )

    def _check_positions(self) -> None:
        limit = getattr(self.backbone.config, "max_position_embeddings", None)
        if not limit:
            return
        tokens = self.tower.tokens_per_second * self.config.window_seconds / self.config.projector_downsample
        if self.config.projector_max_tokens:
            tokens = min(tokens, self.config.projector_max_tokens)
        if tokens > limit:
            raise ConfigError(
                f"a {self.config.window_seconds:g} s window gives ~{tokens:.0f} audio tokens but the backbone has "
                f"{limit} positions: raise projector_downsample or shorten window_seconds"
            )

    # ------------------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.projector.linear.weight.dtype

    @property
    def embedding_dim(self) -> int:
        return int(self.backbone.config.hidden_size)

    # ------------------------------------------------------------------------------ tensors in, vectors out
    def featurize(
        self, waves: Sequence[np.ndarray], peaks: Sequence[float | None] | None = None
    ) -> dict[str, torch.Tensor]:
        """``{"features", "lengths", "content_lengths"}`` on the model's device, ready for :meth:`forward_audio`;
        ``peaks``: the file peak each window is floored at (:meth:`file_peak`; ``None``: its own)."""
        return self.feature_extractor.batch(waves, device=self.device, peaks=peaks)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.config.text_max_length,
            return_tensors="pt",
        )
        return {
            "input_ids": batch["input_ids"].to(self.device),
            "attention_mask": batch["attention_mask"].to(self.device),
        }

    def forward_audio(
        self, features: torch.Tensor, lengths: torch.Tensor, content_lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        tokens, mask = self.tower(features, lengths)
        if content_lengths is not None:  # silence padding (min_seconds) is seen by the tower, not pooled
            keep = self.tower.output_lengths(content_lengths.to(mask.device)).clamp(min=1)
            mask = mask & (torch.arange(mask.shape[1], device=mask.device)[None, :] < keep[:, None])
        embeds, mask = self.projector(tokens, mask)
        if self.audio_adapter is None:
            return self._pool_backbone(embeds, mask)
        with self.audio_adapter.active():
            return self._pool_backbone(embeds, mask)

    def forward_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        embeds = self.backbone.get_input_embeddings()(input_ids)
        return self._pool_backbone(embeds, attention_mask.bool())

    def _pool_backbone(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.backbone(inputs_embeds=embeds.to(self.dtype), attention_mask=mask.long(), use_cache=False)
        pooled = pool(out.last_hidden_state, mask, self.config.pooling)
        return nn.functional.normalize(pooled.float(), dim=-1)

    # ------------------------------------------------------------------------------ user-facing encoding
    @torch.inference_mode()
    def encode_text(
        self, texts: str | Sequence[str], batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """Texts → ``(N, D)`` float32 unit vectors (one string → ``(D,)``)."""
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise ValueError("encode_text needs non-empty strings")
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.embedding_dim), dtype=np.float32)
        for start in _progress(range(0, len(order), batch_size), show_progress, "text"):
            idx = order[start : start + batch_size]
            out[idx] = self.forward_text(**self.tokenize([texts[i] for i in idx])).cpu().numpy()
        return out[0] if single else out

    def encode_audio(
        self,
        inputs: AudioSource | Sequence[AudioSource],
        batch_size: int = 16,
        show_progress: bool = False,
        sample_rate: int | None = None,
        on_error: str = "raise",
        stream_over_seconds: float | None = STREAM_OVER_SECONDS,
    ) -> np.ndarray:
        """Paths, bytes, file objects or arrays (given ``sample_rate``) → ``(N, D)`` unit vectors.

        ``sample_rate`` applies to the array inputs only. Clips longer than the window are cut into windows;
        window vectors are averaged weighted by their duration, then normalised. Files longer than
        ``stream_over_seconds`` are streamed (see :meth:`encode_audio_detailed`). With ``on_error="skip"``
        failed inputs get NaN rows; use :meth:`encode_audio_detailed` to also get the reasons.
        """
        single = _is_single(inputs)
        result = self.encode_audio_detailed(
            [inputs] if single else inputs,
            batch_size,
            show_progress,
            sample_rate,
            on_error,
            stream_over_seconds=stream_over_seconds,
        )
        return result.vectors[0] if single else result.vectors

    @torch.inference_mode()
    def encode_audio_detailed(
        self,
        inputs: Iterable[AudioSource],
        batch_size: int = 16,
        show_progress: bool = False,
        sample_rate: int | None = None,
        on_error: str = "raise",
        block_size: int = 256,
        decode_workers: int = 2,
        stream_over_seconds: float | None = STREAM_OVER_SECONDS,
        block_seconds: float | None = BLOCK_SECONDS,
        prefetch: bool | None = None,
    ) -> EncodeResult:
        """Vectors for every input plus the reasons of the failed ones (see :meth:`encode_audio`).

        Inputs are decoded whole in ``decode_workers`` threads, a block at a time, and the windows of all
        clips of a block are batched together by length. A block holds at most ``block_size`` inputs and,
        by their headers (libsndfile formats; arrays by their shape), at most ``block_seconds`` of audio
        (``None``: no limit; a longer clip is a block of its own; inputs of unknown duration — bytes, file
        objects, FFmpeg-only formats — count by number only). With ``prefetch`` the next block is decoded
        while the model embeds the current one (two blocks in memory), and the log-mel of the next length
        batch is computed while the model runs the current one; ``prefetch=False`` decodes, then embeds,
        one step after the other (same vectors, same errors). A file whose header says it lasts longer than
        ``stream_over_seconds`` is not decoded whole: :meth:`encode_audio_stream` embeds it window batch by
        window batch (without read-ahead), so memory stays bounded whatever its length (``None``: never
        stream). Both paths give the same vector; a file failing mid-stream is reported like any decode
        error. ``prefetch=None`` (default) turns it on for a model on an accelerator and off on the CPU, where
        it measured no faster (0.83–1.08x: decoder threads hold the GIL the model's Python needs) and held a
        second block (docs/benchmarks.md, section 6).
        """
        if prefetch is None:
            prefetch = self.device.type != "cpu"
        if on_error not in ("raise", "skip"):
            raise ValueError("on_error must be 'raise' or 'skip'")
        inputs = list(inputs)
        vectors = np.full((len(inputs), self.embedding_dim), np.nan, dtype=np.float32)
        errors: dict[int, str] = {}
        bar = _progress(None, show_progress, "audio", total=len(inputs))
        read_headers = stream_over_seconds is not None or block_seconds is not None

        def streams(header: float | None) -> bool:
            return stream_over_seconds is not None and header is not None and header > stream_over_seconds

        def plan(start: int) -> tuple[range, list[float | None]]:
            """The block starting at ``start`` and the header durations of its inputs."""
            headers: list[float | None] = []
            total = 0.0
            end = start
            while end < len(inputs) and end - start < max(1, block_size):
                item = inputs[end]
                header = header_seconds(item) if read_headers else None
                if block_seconds is not None and not streams(header):
                    seconds = header if header is not None else _array_seconds(item, sample_rate)
                    if end > start and total + seconds > block_seconds:
                        break
                    total += seconds
                headers.append(header)
                end += 1
            return range(start, end), headers

        def decode(i: int, header: float | None) -> np.ndarray | AudioDecodeError | None:
            """The waveform, the error, or None for a long file to stream."""
            try:
                if streams(header):
                    return None
                item = inputs[i]
                return load_audio(item, sample_rate if _is_array(item) else None)
            except AudioDecodeError as exc:
                return exc

        def failed(i: int, exc: AudioDecodeError) -> None:
            if on_error == "raise":
                raise exc
            errors[i] = str(exc)

        decoder = ThreadPoolExecutor(max_workers=max(1, decode_workers))
        ahead = ThreadPoolExecutor(max_workers=1) if prefetch and FEATURIZE_AHEAD else None
        next_start = 0

        def submit_next() -> tuple[range, list[Future]] | None:
            nonlocal next_start
            if next_start >= len(inputs):
                return None
            block, headers = plan(next_start)
            next_start = block.stop
            return block, [decoder.submit(decode, i, h) for i, h in zip(block, headers)]

        try:
            current = submit_next()
            while current is not None:
                block, futures = current
                upcoming = submit_next() if prefetch else None  # decoded while this block is embedded
                waves: dict[int, np.ndarray] = {}
                streamed: list[int] = []
                for i, future in zip(block, futures):
                    wave = future.result()
                    if wave is None:
                        streamed.append(i)
                    elif isinstance(wave, AudioDecodeError):
                        failed(i, wave)
                    else:
                        waves[i] = wave
                del futures, current, future, wave  # the block's waveforms live in `waves` only
                for i, vec in self._embed_waves(waves, batch_size, ahead).items():
                    vectors[i] = vec
                del waves
                for i in streamed:
                    try:
                        vectors[i] = self.encode_audio_stream(inputs[i], batch_size)
                    except AudioDecodeError as exc:
                        failed(i, exc)
                if bar is not None:
                    bar.update(len(block))
                current = upcoming if prefetch else submit_next()
        finally:  # on an error, queued decodes of the next block are dropped
            decoder.shutdown(wait=True, cancel_futures=True)
            if ahead is not None:
                ahead.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
        return EncodeResult(vectors, errors)

    @torch.inference_mode()
    def encode_audio_stream(
        self,
        source: AudioSource,
        batch_size: int = 16,
        window_seconds: float | None = None,
        sample_rate: int | None = None,
        prefetch: bool = False,
    ) -> np.ndarray:
        """One source → one unit vector, embedding its windows a batch at a time while
        :func:`~audiovec.audio.iter_windows` decodes them; only a float64 running sum is kept, so memory is
        about ``batch_size`` 30 s windows whatever the file's length (libsndfile formats stream; others are
        decoded whole first; a batch of longer windows holds as much audio: :meth:`windows_per_batch`).
        With ``log_mel_floor="file"`` a first pass over the file measures its log-mel peak
        (:meth:`stream_peak`). With ``prefetch`` a helper thread decodes the next window batch while the
        model embeds the current one: faster where decoding costs (OGG), at the price of the batch read
        ahead and the helper thread's allocations (~5-10% more peak memory at batch 16), so it is off by
        default; a streamed file's bound memory is the point of streaming. Same windows, weights and
        pooling as :meth:`encode_audio`, same vector. Raises :class:`AudioDecodeError` when the source
        fails, also mid-stream."""
        window_s = float(window_seconds or self.config.window_seconds)
        rate = sample_rate if _is_array(source) else None
        peak = self.stream_peak(source, window_s, rate)
        total = np.zeros(self.embedding_dim, dtype=np.float64)
        windows = (w for *_, w in iter_windows(source, window_s, rate))
        per_batch = self.windows_per_batch(batch_size, window_s)
        Batch = list[tuple[list[int], "list[np.ndarray] | dict[str, torch.Tensor]"]]

        def next_batch() -> Batch:
            """The next windows as length batches: their lengths, and their waveforms (or, with the knob
            above, their log-mel already)."""
            pieces = [(0, wave, peak) for wave in itertools.islice(windows, per_batch)]
            early = prefetch and STREAM_FEATURIZE_AHEAD
            return [
                ([p[1].shape[0] for p in chunk], self._featurize(chunk) if early else [p[1] for p in chunk])
                for chunk in self._chunks(pieces, batch_size)
            ]

        def embed(batch: Batch) -> np.ndarray:
            """The batch's duration-weighted sum; each chunk's waveforms are let go once featurized, before
            the model runs (with prefetch, the batch read ahead meanwhile takes their place in memory)."""
            sums: Any = 0.0
            while batch:
                lengths, data = batch.pop(0)
                features = data if isinstance(data, dict) else self.featurize(data, [peak] * len(data))
                del data
                vecs = self.forward_audio(**features).float().cpu().numpy()
                del features
                for n, vec in zip(lengths, vecs):
                    sums = sums + n * vec.astype(np.float64)
            return sums

        if not prefetch:
            while batch := next_batch():
                total += embed(batch)
            return _unit(total)
        with ThreadPoolExecutor(max_workers=1) as reader:
            future = reader.submit(next_batch)
            while batch := future.result():
                future = reader.submit(next_batch)
                total += embed(batch)
        return _unit(total)

    # ------------------------------------------------------------------------------ windows of long audio
    def windows_per_batch(self, batch_size: int, window_seconds: float | None = None) -> int:
        """Windows a streaming pass reads per batch: ``batch_size``, fewer for windows over 30 s (Qwen-Omni
        towers) so that a batch holds no more audio than ``batch_size`` 30 s windows; at least one."""
        window_s = float(window_seconds or self.config.window_seconds)
        batch_size = max(1, batch_size)
        return max(1, min(batch_size, int(batch_size * BATCH_WINDOW_SECONDS // max(window_s, 1e-9))))

    def file_peak(self, wave: np.ndarray, spans: Sequence[tuple[int, int]]) -> float | None:
        """The log-mel peak a decoded file's windows are floored at: ``None`` (each window its own) unless
        the model floors per file and the file has more than one window; then the largest window peak."""
        if self.config.log_mel_floor != "file" or len(spans) <= 1:
            return None
        return max(self.feature_extractor.peak(wave[start:end]) for start, end in spans)

    def stream_peak(
        self, source: AudioSource, window_seconds: float | None = None, sample_rate: int | None = None
    ) -> float | None:
        """:meth:`file_peak` of a source without holding it: one streaming pass over its windows (skipped
        when the model floors per window or the header says the file is one window)."""
        window_s = float(window_seconds or self.config.window_seconds)
        if self.config.log_mel_floor != "file":
            return None
        header = header_seconds(source)
        if header is not None and header <= window_s:
            return None
        peaks = [self.feature_extractor.peak(w) for *_, w in iter_windows(source, window_s, sample_rate)]
        return max(peaks) if len(peaks) > 1 else None

    def _embed_waves(
        self, waves: dict[int, np.ndarray], batch_size: int, ahead: ThreadPoolExecutor | None = None
    ) -> dict[int, np.ndarray]:
        """Window every waveform, embed all windows together and pool them back per input."""
        pieces: list[Piece] = []
        for i, wave in waves.items():
            spans = window_spans(wave.shape[0], self.config.window_seconds)
            peak = self.file_peak(wave, spans)
            pieces.extend((i, wave[start:end], peak) for start, end in spans)
        return {i: _unit(total) for i, total in self._window_sums(pieces, batch_size, ahead).items()}

    def _window_sums(
        self, pieces: list[Piece], batch_size: int, ahead: ThreadPoolExecutor | None = None
    ) -> dict[int, np.ndarray]:
        """``(key, window, peak)`` pieces → per key, the float64 sum of window vectors weighted by window
        length (the duration-weighted mean once normalised). Windows are batched by length; with ``ahead``
        the next batch's log-mel is computed there while the model runs the current one."""
        chunks = self._chunks(pieces, batch_size)
        if ahead is None or not chunks:
            return self._sums((chunk, None) for chunk in chunks)

        def featurized() -> Iterator[tuple[list[Piece], dict[str, torch.Tensor]]]:
            future = ahead.submit(self._featurize, chunks[0])
            for j, chunk in enumerate(chunks):
                features = future.result()
                if j + 1 < len(chunks):
                    future = ahead.submit(self._featurize, chunks[j + 1])
                yield chunk, features

        return self._sums(featurized())

    @staticmethod
    def _chunks(pieces: list[Piece], batch_size: int) -> list[list[Piece]]:
        ordered = sorted(pieces, key=lambda p: p[1].shape[0])
        return length_batches(ordered, batch_size, max_samples=batch_samples(batch_size))

    def _featurize(self, chunk: list[Piece]) -> dict[str, torch.Tensor]:
        return self.featurize([p[1] for p in chunk], [p[2] for p in chunk])

    def _sums(
        self, chunks: Iterable[tuple[list[Piece], dict[str, torch.Tensor] | None]]
    ) -> dict[int, np.ndarray]:
        """Embed length batches (featurizing those not featurized yet) into duration-weighted sums."""
        sums: dict[int, np.ndarray] = {}
        for chunk, features in chunks:
            feats = features if features is not None else self._featurize(chunk)
            vecs = self.forward_audio(**feats).float().cpu().numpy()
            for (i, wave, _), vec in zip(chunk, vecs):
                sums[i] = sums.get(i, 0.0) + wave.shape[0] * vec.astype(np.float64)
        return sums

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine similarity matrix of two sets of vectors (normalised again for safety)."""
        a = np.atleast_2d(np.asarray(a, dtype=np.float32))
        b = np.atleast_2d(np.asarray(b, dtype=np.float32))
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return a @ b.T

    # ------------------------------------------------------------------------------ persistence
    def save_pretrained(self, path: str | os.PathLike, max_shard_size: str = "5GB") -> Path:
        """Write config, safetensors weights and tokenizer to ``path`` atomically."""
        path = Path(path)
        with atomic_directory(path) as tmp:
            (tmp / CONFIG_NAME).write_text(json.dumps(self.config.to_json(), indent=2, sort_keys=True) + "\n")
            save_state_dict(self.state_dict(), tmp, max_shard_size=max_shard_size)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(tmp)
        return path

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        allow_pickle: bool = False,
        backend: str | None = None,
    ) -> AudioTextEmbedder:
        """Load a folder written by :meth:`save_pretrained` (safetensors only unless ``allow_pickle``), or a
        built-in model by name (``"audiovec-sounds"``: see :mod:`audiovec.pretrained`). A folder written by
        ``audiovec export --onnx`` (or ``backend="onnx"``) loads in onnxruntime (:mod:`audiovec.onnx_runtime`)."""
        from audiovec.onnx_export import is_onnx_dir
        from audiovec.pretrained import is_builtin, load_builtin

        if backend not in (None, "torch", "onnx"):
            raise ConfigError(f"unknown backend {backend!r}; choose 'torch' or 'onnx'")
        if backend == "onnx" or (backend is None and is_onnx_dir(path)):
            from audiovec.onnx_runtime import load_onnx

            return load_onnx(path, device, dtype)  # type: ignore[return-value]  # same encode API

        if is_builtin(path):
            model = load_builtin(str(path), device)
            return model.to(dtype=_dtype(dtype)) if dtype is not None else model
        folder = resolve_model_dir(path)
        config_file = folder / CONFIG_NAME
        if not config_file.is_file():
            raise CheckpointError(f"{folder}: no {CONFIG_NAME}; is this an audiovec model folder?")
        try:
            data = json.loads(config_file.read_text())
        except ValueError as exc:
            raise CheckpointError(f"{config_file}: invalid JSON ({exc})") from None
        config = EmbedderConfig.from_json(data, str(config_file))
        tokenizer = load_tokenizer(folder)
        with no_init():
            model = cls.from_config(config, tokenizer)
        state = load_state_dict(folder, allow_pickle=allow_pickle)
        if dtype is None and state:  # keep the stored precision (a bf16 folder loads as bf16)
            stored = {t.dtype for t in state.values() if t.is_floating_point()}
            dtype = stored.pop() if len(stored) == 1 else None
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"{folder}: weights do not match the config (missing: {missing[:5]}, unexpected: {unexpected[:5]})"
            )
        model.eval()
        if dtype is not None:
            model.to(dtype=_dtype(dtype))
        if device is not None:
            model.to(device)
        return model


PAD_EFFICIENCY = 0.95
# (key, window samples, file peak or None): one window of one input, as the encode paths batch them
Piece = tuple[int, np.ndarray, "float | None"]


def batch_samples(batch_size: int) -> int:
    """Padded samples one forward pass may hold: ``batch_size`` windows of 30 s (longer windows: fewer)."""
    return max(1, batch_size) * int(BATCH_WINDOW_SECONDS * SAMPLE_RATE)


def length_batches(
    pieces: list[Any],
    batch_size: int,
    min_efficiency: float = PAD_EFFICIENCY,
    max_samples: int | None = None,
) -> list[list[Any]]:
    """Split length-sorted ``pieces`` (tuples whose second item is the waveform) into batches of at most
    ``batch_size`` that keep padding low: a batch closes early when adding the next (longer) piece would
    drop its useful/padded samples below ``min_efficiency``, or make it hold more than ``max_samples``
    padded samples (a piece alone always fits). Dense length mixes still fill whole batches; sparse ones get
    smaller batches instead of computing padding."""
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


def window_policy(
    tower: AudioTower, backbone: nn.Module, projector_downsample: int = 1, projector_max_tokens: int = 0
) -> tuple[float, str]:
    """``(window_seconds, log_mel_floor)`` that give what the tower's own model sees (docs/long-audio.md).

    The window is the tower's reference span (Whisper 30 s; Qwen2.5-Omni 300 s, its processor's cap;
    Qwen3-Omni the whole file, here up to :data:`MAX_WINDOW_SECONDS`), shortened to what the backbone's
    positions hold and cut at a multiple of the tower's attention window (so tokens near a cut see the
    context they see in the whole file). Files up to the window are one sequence, exactly the reference.
    Never shorter than 30 s (every tower's window before), so clips up to 30 s keep their vectors; a
    backbone that cannot hold 30 s of tokens is refused when the model is built.
    """
    window = float(tower.context_seconds or MAX_WINDOW_SECONDS)
    limit = getattr(backbone.config, "max_position_embeddings", None)
    if limit and not (projector_max_tokens and projector_max_tokens <= limit):
        window = min(window, limit * max(1, projector_downsample) / tower.tokens_per_second)
    unit = tower.attention_seconds
    window = unit * math.floor(window / unit + 1e-9)
    return max(window, DEFAULT_WINDOW_SECONDS), tower.log_mel_floor


def load_tokenizer(folder: str | os.PathLike) -> Any:
    """A folder's tokenizer, never running code shipped inside the folder (``trust_remote_code=False``)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except ValueError as exc:
        if "trust_remote_code" in str(exc) or "custom code" in str(exc):
            raise UnsafeCheckpointError(
                f"{folder}: the tokenizer needs custom code from the folder; audiovec never runs it"
            ) from None
        raise CheckpointError(f"{folder}: cannot load the tokenizer ({exc})") from None
    except OSError as exc:
        raise CheckpointError(f"{folder}: cannot load the tokenizer ({exc})") from None


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """A local folder as is; an ``org/name`` hub id is downloaded only when the user has network."""
    folder = recover_directory(path)
    if folder.is_dir():
        return folder
    text = str(path)
    if text.count("/") == 1 and not text.startswith((".", "/")) and not folder.exists():
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(text))
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(
                f"{text}: not a local folder, and the hub download failed ({exc})"
            ) from None
    raise CheckpointError(f"{path}: model folder not found")


def _dtype(value: torch.dtype | str) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    names = {
        "fp32": torch.float32,
        "float32": torch.float32,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
    }
    if value not in names:
        raise ConfigError(f"unknown dtype {value!r}; choose fp32, bf16 or fp16")
    return names[value]


def _config_dict(config: Any) -> dict[str, Any]:
    data = copy.deepcopy(config.to_dict())
    data.pop("transformers_version", None)
    data.pop("_attn_implementation_autoset", None)
    return data


def no_init():
    """Context in which transformers modules skip their random initialisation (weights come next)."""
    try:
        from transformers.initialization import no_init_weights

        return no_init_weights()
    except ImportError:  # pragma: no cover - older transformers
        import contextlib

        return contextlib.nullcontext()


def _unit(total: np.ndarray) -> np.ndarray:
    return (total / max(np.linalg.norm(total), 1e-12)).astype(np.float32)


def _is_array(item: Any) -> bool:
    return isinstance(item, np.ndarray) or (hasattr(item, "detach") and hasattr(item, "shape"))


def _array_seconds(item: Any, sample_rate: int | None) -> float:
    """An array input's duration (its longer axis at ``sample_rate``); 0 for what has no cheap duration."""
    if not _is_array(item) or not sample_rate or len(item.shape) == 0:
        return 0.0
    return max(int(n) for n in item.shape) / float(sample_rate)


def _is_single(inputs: Any) -> bool:
    if isinstance(inputs, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(inputs, "read"):
        return True
    return _is_array(inputs)


def _progress(iterable: Any, enabled: bool, desc: str, total: int | None = None) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    if iterable is None:
        return tqdm(total=total, desc=desc, unit="clip")
    return tqdm(iterable, desc=desc)


__all__ = [
    "AudioTextEmbedder",
    "EmbedderConfig",
    "EncodeResult",
    "Projector",
    "build_backbone",
    "describe_source",
]
