"""The embedding model: audio tower → projector → LLM backbone → pooling → L2-normalised vector.

Text skips the first two stages and enters the same backbone through its tokenizer, so both modalities
land in one space. Reads top to bottom like the data flow::

    waveform ─ LogMelExtractor ─ AudioTower ─ Projector ─┐
                                                        ├─ backbone(inputs_embeds) ─ pool ─ normalise
    text ───── tokenizer ─ backbone token embeddings ───┘
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audiovec.adapters import AudioAdapter
from audiovec.audio import AudioSource, header_seconds, load_audio
from audiovec.builtin_models import is_builtin
from audiovec.dims import check_truncate_dim
from audiovec.encode import (  # noqa: F401 - re-exported: they lived here before audiovec.encode
    BATCH_WINDOW_SECONDS,
    BLOCK_SECONDS,
    MAX_WINDOW_SECONDS,
    PAD_EFFICIENCY,
    STREAM_OVER_SECONDS,
    EncodeResult,
    EncodeSteps,
    batch_samples,
    embed_waves,
    encode_sources,
    encode_stream,
    file_peak,
    is_array,
    length_batches,
    stream_peak,
    window_policy,
    windows_per_batch,
)
from audiovec.errors import CheckpointError, ConfigError, describe_source
from audiovec.features import LogMelExtractor
from audiovec.model_card import write_folder_extras
from audiovec.model_config import (  # noqa: F401 - CONFIG_NAME, build_backbone, ... re-exported
    ARCHITECTURE,
    CONFIG_NAME,
    LOG_MEL_FLOORS,
    EmbedderConfig,
    backbone_config_from_dict,
    build_backbone,
    config_dict,
    load_tokenizer,
    no_init,
    parse_dtype,
    read_config,
    resolve_model_dir,
)
from audiovec.pooling import POOLING_MODES, pool
from audiovec.projector import Projector
from audiovec.quantize import Calibration, finish
from audiovec.serialization import atomic_directory, load_state_dict, save_state_dict
from audiovec.towers import AudioTower, build_tower


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
        self.truncate_dim: int | None = None  # default of encode_*(truncate_dim=): see audiovec.dims
        self.calibration: Calibration | None = None  # int8 ranges (audiovec.quantize), saved with the model

    def calibrate(self, embeddings: np.ndarray, dims: Sequence[int] | None = None) -> Calibration:
        """Compute int8 / uint8 ranges from a representative set of this model's full-size vectors, for the
        full size and ``dims`` (default: the Matryoshka-trained sizes); kept and saved with the model."""
        trained = self.config.matryoshka_dims or []
        self.calibration = Calibration.from_embeddings(embeddings, trained if dims is None else dims)
        return self.calibration

    def _finish(
        self, vectors: np.ndarray, truncate_dim: int | None, precision: str, ok: np.ndarray | None = None
    ) -> np.ndarray:
        dim = check_truncate_dim(
            self.truncate_dim if truncate_dim is None else truncate_dim, self.embedding_dim
        )
        return finish(vectors, dim, precision, self.calibration, ok)

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
            tower_config=config_dict(tower.config),
            backbone_config=config_dict(backbone.config),
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
        tower, backbone = (
            build_tower(config.tower_kind, config.tower_config),
            build_backbone(config.backbone_config),
        )
        return cls(config, tower, backbone, tokenizer)

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
        self,
        texts: str | Sequence[str],
        batch_size: int = 64,
        show_progress: bool = False,
        truncate_dim: int | None = None,
        precision: str = "float32",
    ) -> np.ndarray:
        """Texts → ``(N, D)`` float32 unit vectors (one string → ``(D,)``). ``truncate_dim``: keep the first
        d components, re-normalised (default ``model.truncate_dim``); ``precision``: ``float32``, ``int8``,
        ``uint8``, ``binary``, ``ubinary`` (sentence-transformers' semantics, see :mod:`audiovec.quantize`)."""
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise ValueError("encode_text needs non-empty strings")
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.embedding_dim), dtype=np.float32)
        for start in _progress(range(0, len(order), batch_size), show_progress, "text"):
            idx = order[start : start + batch_size]
            out[idx] = self.forward_text(**self.tokenize([texts[i] for i in idx])).cpu().numpy()
        out = self._finish(out, truncate_dim, precision)
        return out[0] if single else out

    def encode_audio(
        self,
        inputs: AudioSource | Sequence[AudioSource],
        batch_size: int = 16,
        show_progress: bool = False,
        sample_rate: int | None = None,
        on_error: str = "raise",
        stream_over_seconds: float | None = STREAM_OVER_SECONDS,
        truncate_dim: int | None = None,
        precision: str = "float32",
    ) -> np.ndarray:
        """Paths, bytes, file objects or arrays (given ``sample_rate``) → ``(N, D)`` unit vectors.
        ``truncate_dim`` and ``precision`` as in :meth:`encode_text` (failed inputs quantise to zeros).

        ``sample_rate`` applies to the array inputs only. Clips longer than the window are cut into windows;
        window vectors are averaged weighted by their duration, then normalised. Files longer than
        ``stream_over_seconds`` are streamed (see :meth:`encode_audio_detailed`). With ``on_error="skip"``
        failed inputs get NaN rows; use :meth:`encode_audio_detailed` to also get the reasons.
        """
        single = _is_single(inputs)
        batch = [inputs] if single else inputs
        result = self.encode_audio_detailed(
            batch,
            batch_size,
            show_progress,
            sample_rate,
            on_error,
            stream_over_seconds=stream_over_seconds,
            truncate_dim=truncate_dim,
        )
        vectors = finish(result.vectors, None, precision, self.calibration, result.ok)  # truncated above
        return vectors[0] if single else vectors

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
        truncate_dim: int | None = None,
    ) -> EncodeResult:
        """Vectors for every input plus the reasons of the failed ones (see :meth:`encode_audio`;
        ``truncate_dim`` as in :meth:`encode_text`).

        Inputs are decoded in ``decode_workers`` threads a block at a time (at most ``block_size`` inputs and,
        by their headers, ``block_seconds`` of audio); a block's windows are batched together by length
        (:mod:`audiovec.encode`). Files whose header says more than ``stream_over_seconds`` go through
        :meth:`encode_audio_stream` (same vector; ``None``: never). ``prefetch`` decodes the next block while
        the model runs (same vectors and errors); ``None``: on an accelerator only, as on the CPU it measured
        no faster and held a second block (docs/benchmarks.md, section 6).
        """
        if prefetch is None:
            prefetch = self.device.type != "cpu"
        inputs = list(inputs)
        # this module's names and this model's methods, looked up now: what is swapped in on them is used
        steps = EncodeSteps(self._embed_waves, self.encode_audio_stream, load_audio, header_seconds)
        result = encode_sources(
            self, inputs, batch_size, sample_rate, on_error, block_size, decode_workers,
            stream_over_seconds, block_seconds, prefetch, steps,
            lambda: _progress(None, show_progress, "audio", total=len(inputs)),
        )  # fmt: skip
        return EncodeResult(self._finish(result.vectors, truncate_dim, "float32"), result.errors)

    @torch.inference_mode()
    def encode_audio_stream(
        self,
        source: AudioSource,
        batch_size: int = 16,
        window_seconds: float | None = None,
        sample_rate: int | None = None,
        prefetch: bool = False,
    ) -> np.ndarray:
        """One source → one unit vector, its windows embedded a batch at a time as they are decoded, so
        memory is about ``batch_size`` 30 s windows whatever the file's length. ``prefetch`` decodes the next
        batch meanwhile: faster where decoding costs (OGG), ~5-10% more peak memory. Same vector as
        :meth:`encode_audio`; raises :class:`AudioDecodeError` when the source fails, also mid-stream."""
        return encode_stream(self, source, batch_size, window_seconds, sample_rate, prefetch)

    # ------------------------------------------------------------------------------ windows of long audio
    def windows_per_batch(self, batch_size: int, window_seconds: float | None = None) -> int:
        """Windows a streaming pass reads per batch (:func:`audiovec.encode.windows_per_batch`)."""
        return windows_per_batch(batch_size, float(window_seconds or self.config.window_seconds))

    def file_peak(self, wave: np.ndarray, spans: Sequence[tuple[int, int]]) -> float | None:
        """The log-mel peak a decoded file's windows are floored at (:func:`audiovec.encode.file_peak`)."""
        return file_peak(self, wave, spans)

    def stream_peak(
        self, source: AudioSource, window_seconds: float | None = None, sample_rate: int | None = None
    ) -> float | None:
        """:meth:`file_peak` of a source without holding it (:func:`audiovec.encode.stream_peak`)."""
        return stream_peak(self, source, float(window_seconds or self.config.window_seconds), sample_rate)

    def _embed_waves(
        self, waves: dict[int, np.ndarray], batch_size: int, ahead: ThreadPoolExecutor | None = None
    ) -> dict[int, np.ndarray]:
        """One block's waveforms → unit vectors (:func:`audiovec.encode.embed_waves`)."""
        return embed_waves(self, waves, batch_size, ahead)

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
        """Write config, safetensors weights, tokenizer, sentence-transformers files and model card to ``path``
        atomically."""
        path = Path(path)
        with atomic_directory(path) as tmp:
            (tmp / CONFIG_NAME).write_text(json.dumps(self.config.to_json(), indent=2, sort_keys=True) + "\n")
            save_state_dict(self.state_dict(), tmp, max_shard_size=max_shard_size)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(tmp)
            if self.calibration is not None:
                self.calibration.save(tmp)
            write_folder_extras(tmp, self, previous=path)  # sentence-transformers files, README.md card
        return path

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        allow_pickle: bool = False,
        truncate_dim: int | None = None,
        backend: str | None = None,
    ) -> AudioTextEmbedder:
        """Load a folder written by :meth:`save_pretrained` (safetensors only unless ``allow_pickle``), or a
        built-in model by name (``"audiovec-sounds"``: see :mod:`audiovec.build.pretrained`). ``truncate_dim``
        sets ``model.truncate_dim``, the default size of ``encode_*``. A folder written by
        ``audiovec export --onnx`` (or ``backend="onnx"``) loads in onnxruntime (:mod:`audiovec.onnx_runtime`)."""
        from audiovec.build.pretrained import load_builtin
        from audiovec.onnx_export import is_onnx_dir

        if backend not in (None, "torch", "onnx"):
            raise ConfigError(f"unknown backend {backend!r}; choose 'torch' or 'onnx'")
        if backend == "onnx" or (backend is None and is_onnx_dir(path)):
            from audiovec.onnx_runtime import load_onnx

            return load_onnx(path, device, dtype)  # type: ignore[return-value]  # same encode API

        if is_builtin(path):
            model = load_builtin(str(path), device)
            model.truncate_dim = check_truncate_dim(truncate_dim, model.embedding_dim)
            return model.to(dtype=parse_dtype(dtype)) if dtype is not None else model
        folder = resolve_model_dir(path)
        config, tokenizer = read_config(folder), load_tokenizer(folder)
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
        model.calibration = Calibration.load(folder)
        model.truncate_dim = check_truncate_dim(truncate_dim, model.embedding_dim)
        if dtype is not None:
            model.to(dtype=parse_dtype(dtype))
        if device is not None:
            model.to(device)
        return model


def _is_single(inputs: Any) -> bool:
    if isinstance(inputs, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(inputs, "read"):
        return True
    return is_array(inputs)


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
