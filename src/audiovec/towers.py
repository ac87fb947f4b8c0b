"""One interface over the real transformers audio encoders.

Each :class:`AudioTower` holds the transformers module as ``self.encoder`` (weights keep their original
names under it) and turns a padded batch ``features (B, n_mels, T), lengths (B,)`` into padded tokens
``(B, N, D)`` plus a boolean mask. What differs per encoder is only how the batch is handed over:

- Qwen2.5-Omni / Qwen3-Omni encoders take a *packed* ``(n_mels, sum of valid frames)`` input plus
  ``feature_lens`` and return packed tokens; their attention is windowed per clip, so packing costs no
  padding and clips never see each other. Qwen2.5-Omni emits 25 tokens/s, Qwen3-Omni 13 tokens/s (the
  seed's "about 150 tokens per second" matches neither implementation).
- Whisper's encoder insists on exactly 3000 frames in its ``forward``; we run its own submodules on the
  valid length instead (positions sliced, padded keys masked), 50 tokens/s.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch
from torch import nn

from audiovec.errors import ConfigError


class AudioTower(nn.Module):
    """Base class: a transformers audio encoder behind ``forward(features, lengths) -> (tokens, mask)``.

    Subclasses implement :meth:`encode`. When ``token_cache`` is set (training with a frozen tower), each
    clip's tokens are computed once and reused: the cache is keyed by the clip's own features, so crops,
    epochs and batch order need no bookkeeping.
    """

    kind: ClassVar[str]
    tokens_per_second: ClassVar[float]
    # What one forward of the reference (the model's own transformers processor + model) sees of a file:
    # the longest span (None: the whole file, without truncation) and whether its log-mel floor is
    # measured over the whole file ("file") or over what one processor call gets ("window").
    context_seconds: ClassVar[float | None] = 30.0
    log_mel_floor: ClassVar[str] = "window"

    LAYERS: ClassVar[tuple[str, ...]] = ("last",)

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.token_cache: TokenCache | None = None
        self.layers = "last"

    def set_layers(self, layers: str) -> None:
        """Which hidden states make the tokens: ``last`` (the encoder's output) or, where supported,
        ``mean`` (the mean over every layer's output, each through the final layer norm)."""
        if layers not in self.LAYERS:
            raise ConfigError(f"a {self.kind} tower supports layers {self.LAYERS}, not {layers!r}")
        self.layers = layers

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.token_cache is None:
            return self.encode(features, lengths)
        return self.token_cache.lookup(self, features, lengths)

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    @property
    def config(self) -> Any:
        return self.encoder.config

    @property
    def n_mels(self) -> int:
        return int(self.config.num_mel_bins)

    @property
    def output_dim(self) -> int:
        return int(self.config.output_dim)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def attention_seconds(self) -> float:
        """The span the encoder attends within (its attention window): windows of a long file are cut at
        multiples of it, so every token sees the context it sees when the file is encoded whole."""
        return 30.0


class TokenCache:
    """Tower outputs per clip, keyed by a hash of the clip's valid features; bounded by ``max_bytes``.

    Only valid for a deterministic, frozen tower (no dropout, no gradient): :meth:`lookup` checks both.
    """

    def __init__(self, max_bytes: int = 2 << 30) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self.hits = 0
        self.misses = 0
        self._store: dict[bytes, torch.Tensor] = {}

    def lookup(
        self, tower: AudioTower, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if tower.training or any(p.requires_grad for p in tower.parameters()):
            raise RuntimeError("TokenCache needs a frozen tower in eval mode")
        import hashlib

        keys = []
        for row, length in zip(features, lengths.tolist()):
            valid = row[:, :length].detach().to("cpu", torch.float32).contiguous()
            keys.append(
                hashlib.blake2b(valid.numpy().tobytes(), digest_size=16).digest()
                + length.to_bytes(4, "little")
            )
        missing = [i for i, key in enumerate(keys) if key not in self._store]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        rows: dict[int, torch.Tensor] = {i: self._store[k] for i, k in enumerate(keys) if k in self._store}
        if missing:
            idx = torch.tensor(missing, device=features.device)
            sub_lengths = lengths[idx]
            with torch.no_grad():
                tokens, mask = tower.encode(features[idx][..., : int(sub_lengths.max())], sub_lengths)
            for j, i in enumerate(missing):
                rows[i] = tokens[j, : int(mask[j].sum())].detach().to("cpu")
                size = rows[i].numel() * rows[i].element_size()
                if self.used + size <= self.max_bytes:  # when full, later clips are computed, not stored
                    self._store[keys[i]] = rows[i]
                    self.used += size
        ordered = [rows[i] for i in range(len(keys))]
        out_lengths = torch.tensor([r.shape[0] for r in ordered], device=features.device)
        mask = torch.arange(int(out_lengths.max()), device=features.device)[None, :] < out_lengths[:, None]
        out = torch.zeros(
            len(ordered), mask.shape[1], ordered[0].shape[-1], dtype=ordered[0].dtype, device=features.device
        )
        for i, r in enumerate(ordered):
            out[i, : r.shape[0]] = r.to(features.device)
        return out, mask


def _pack(features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``(B, M, T)`` padded → ``(M, sum(lengths))`` packed, in batch order."""
    valid = torch.arange(features.shape[-1], device=features.device)[None, :] < lengths[:, None]
    return features.transpose(1, 2)[valid].T


def _unpack(packed: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum(lengths), D)`` packed → ``(B, max(lengths), D)`` padded + mask."""
    mask = torch.arange(int(lengths.max()), device=packed.device)[None, :] < lengths[:, None]
    out = packed.new_zeros(lengths.shape[0], mask.shape[1], packed.shape[-1])
    out[mask] = packed
    return out, mask


def _padding_groups(lengths: torch.Tensor, chunk: int) -> list[torch.Tensor]:
    """Indices of clips the Qwen3-Omni encoder pads alike: all of at least ``chunk`` frames, then each
    shorter length on its own."""
    long = torch.nonzero(lengths >= chunk).flatten()
    groups = [long] if long.numel() else []
    for length in torch.unique(lengths[lengths < chunk]).tolist():
        groups.append(torch.nonzero(lengths == length).flatten())
    return groups


def _forward_parameters(module: nn.Module) -> frozenset[str]:
    """The keyword names ``module.forward`` declares (its ``**kwargs`` excluded)."""
    params = inspect.signature(module.forward).parameters.values()
    return frozenset(p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))


def _conv_out(lengths: Any, convs: int) -> Any:
    """Frames left after ``convs`` convolutions of kernel 3, stride 2, padding 1 (0 stays 0)."""
    for _ in range(convs):
        lengths = (lengths - 1) // 2 + 1
    return lengths


class _PackedOmniTower(AudioTower):
    """Shared logic of the Qwen omni encoders (packed input, per-clip windowed attention).

    The encoders' private helpers changed between transformers releases (``aftercnn_lens`` was required
    by Qwen2.5-Omni's ``forward`` up to 5.8 and is optional since 5.9; Qwen3-Omni's module-level
    ``_get_feat_extract_output_lengths`` gained ``n_window`` only in 5.13), so the output lengths are
    computed here from the convolution arithmetic (tests check them against the module's real output) and
    ``forward`` gets only the arguments its signature declares. transformers 5.9 is the minimum: before it,
    Qwen3-Omni's audio attention ignored ``cu_seqlens`` outside flash attention (clips packed in one batch,
    and the 8 s windows of one clip, attended to each other).
    """

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = lengths.to(features.device)
        packed = _pack(features, lengths).to(self._dtype())
        kwargs = {"input_features": packed, "feature_lens": lengths}
        if "aftercnn_lens" in _forward_parameters(self.encoder):
            kwargs["aftercnn_lens"] = self.after_cnn_lengths(lengths)
        out = self.encoder(**kwargs).last_hidden_state
        out_lengths = self.output_lengths(lengths)
        if out.shape[0] != int(out_lengths.sum()):
            raise RuntimeError(
                f"the {type(self.encoder).__name__} of this transformers version returned {out.shape[0]} "
                f"tokens where the {self.kind} length formula gives {int(out_lengths.sum())}; please report it"
            )
        return _unpack(out, out_lengths)

    def after_cnn_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """What the thinker passes as ``aftercnn_lens`` (the frames after the convolutions, per clip)."""
        raise NotImplementedError

    def _dtype(self) -> torch.dtype:
        return next(self.encoder.parameters()).dtype


class Qwen25OmniTower(_PackedOmniTower):
    kind = "qwen2_5_omni"
    tokens_per_second = 25.0
    # Qwen2_5OmniProcessor pads to max_length and truncates there: 300 s (chunk_length of the published
    # preprocessor_config.json), so each 300 s window is exactly one processor call.
    context_seconds = 300.0

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__(encoder)
        # Present in the checkpoint, used by no forward pass: keep it (for faithful weights) but frozen,
        # so DDP and optimisers never see a parameter without a gradient.
        bos_eos = getattr(encoder, "audio_bos_eos_token", None)
        if bos_eos is not None:
            bos_eos.requires_grad_(False)

    def after_cnn_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return _conv_out(lengths, 1)  # conv1 keeps the rate, conv2 halves it

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        # the 2x average pooling after the layers (kernel 2, stride 2, no padding)
        return (self.after_cnn_lengths(lengths) - 2) // 2 + 1

    @property
    def attention_seconds(self) -> float:
        return 2 * int(self.config.n_window) / 100.0  # attention per chunk of 2 * n_window frames (2 s)


class Qwen3OmniTower(_PackedOmniTower):
    kind = "qwen3_omni"
    tokens_per_second = 13.0
    # Qwen3OmniMoeProcessor (transformers 5.x) featurises the whole file (padding=True, truncation=False)
    # and the encoder attends in n_window_infer windows (8 s) across it.
    context_seconds = None
    log_mel_floor = "file"

    @property
    def attention_seconds(self) -> float:
        return int(self.config.n_window_infer) / 100.0

    def after_cnn_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.output_lengths(lengths)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        # each chunk of 2 * n_window frames goes through three stride-2 convolutions on its own
        chunk = 2 * int(self.config.n_window)
        per_chunk = int(_conv_out(chunk, 3))
        return (lengths // chunk) * per_chunk + _conv_out(lengths % chunk, 3)

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips the encoder would pad differently than alone go in separate calls, so a clip's tokens do
        not depend on its batch. The encoder pads every clip's last chunk to the longest chunk of the call,
        and the GELU of that padding's conv bias reaches the clip's last tokens. Alone, a clip of at least
        one chunk (2 * n_window frames) has its tail padded to a whole chunk, and a shorter clip is not
        padded at all. So the clips of at least one chunk share a call; shorter ones share it only with
        clips of their own length."""
        lengths = lengths.to(features.device)
        groups = _padding_groups(lengths, 2 * int(self.config.n_window))
        if len(groups) == 1:
            return super().encode(features, lengths)
        out_lengths = self.output_lengths(lengths)
        mask = torch.arange(int(out_lengths.max()), device=features.device)[None, :] < out_lengths[:, None]
        tokens: torch.Tensor | None = None
        for index in groups:
            part, _ = super().encode(features[index, :, : int(lengths[index].max())], lengths[index])
            if tokens is None:
                tokens = part.new_zeros(lengths.shape[0], mask.shape[1], part.shape[-1])
            tokens[index, : part.shape[1]] = part
        return tokens, mask


class WhisperTower(AudioTower):
    kind = "whisper"
    tokens_per_second = 50.0
    # Whisper's later layers specialise in speech; the mean over layers keeps more of the sound events
    # (docs/demo.md: +0.03-0.05 hit_rate@5 on held-out real sources, as Whisper-AT found for audio tagging)
    LAYERS = ("last", "mean")

    @property
    def output_dim(self) -> int:
        return int(self.config.d_model)

    @property
    def max_frames(self) -> int:
        enc = self.encoder
        return int(self.config.max_source_positions * enc.conv1.stride[0] * enc.conv2.stride[0])

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return (lengths - 1) // 2 + 1

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if features.shape[-1] > self.max_frames:
            raise ValueError(
                f"Whisper takes at most {self.max_frames} frames (30 s); got {features.shape[-1]}"
            )
        enc = self.encoder
        lengths = lengths.to(features.device)
        frame_mask = torch.arange(features.shape[-1], device=features.device)[None, :] < lengths[:, None]
        x = features.to(enc.conv1.weight.dtype) * frame_mask[:, None, :]
        x = nn.functional.gelu(enc.conv1(x)) * frame_mask[:, None, :]  # padding stays zero, as when alone
        x = nn.functional.gelu(enc.conv2(x)).transpose(1, 2)
        x = x + enc.embed_positions.weight[: x.shape[1]].to(x.dtype)
        x = nn.functional.dropout(x, p=enc.dropout, training=self.training)
        out_lengths = self.output_lengths(lengths)
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < out_lengths[:, None]
        additive = torch.zeros(mask.shape, dtype=x.dtype, device=x.device)
        additive = additive.masked_fill(~mask, torch.finfo(x.dtype).min)[:, None, None, :]
        hidden = []
        for layer in enc.layers:
            x = layer(x, additive)
            if isinstance(x, tuple):
                x = x[0]
            hidden.append(x)
        if self.layers == "mean":
            x = torch.stack([enc.layer_norm(h) for h in hidden]).mean(0)
        else:
            x = enc.layer_norm(x)
        return x * mask[..., None], mask


TOWER_KINDS: dict[str, type[AudioTower]] = {
    Qwen25OmniTower.kind: Qwen25OmniTower,
    Qwen3OmniTower.kind: Qwen3OmniTower,
    WhisperTower.kind: WhisperTower,
}


def encoder_class(kind: str) -> tuple[type, type]:
    """The transformers ``(EncoderClass, ConfigClass)`` for a tower kind."""
    if kind == "qwen2_5_omni":
        from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import Qwen2_5OmniAudioEncoderConfig
        from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniAudioEncoder

        return Qwen2_5OmniAudioEncoder, Qwen2_5OmniAudioEncoderConfig
    if kind == "qwen3_omni":
        from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import (
            Qwen3OmniMoeAudioEncoderConfig,
        )
        from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import Qwen3OmniMoeAudioEncoder

        return Qwen3OmniMoeAudioEncoder, Qwen3OmniMoeAudioEncoderConfig
    if kind == "whisper":
        from transformers import WhisperConfig
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoder, WhisperConfig
    raise ConfigError(f"unknown audio tower kind {kind!r}; known: {', '.join(TOWER_KINDS)}")


def build_tower(kind: str, config: dict | Any) -> AudioTower:
    """Instantiate a tower of ``kind`` from its transformers config (a dict or config object)."""
    encoder_cls, config_cls = encoder_class(kind)
    if isinstance(config, dict):
        config = dict(config)
        config.pop("model_type", None)
        config.pop("transformers_version", None)
        config = config_cls(**config)
    if not getattr(config, "_attn_implementation_internal", None):
        config._attn_implementation = "sdpa"
    return wrap_encoder(kind, encoder_cls(config))


def wrap_encoder(kind: str, encoder: nn.Module) -> AudioTower:
    """Put an already-built transformers encoder behind the tower interface."""
    if kind not in TOWER_KINDS:
        raise ConfigError(f"unknown audio tower kind {kind!r}; known: {', '.join(TOWER_KINDS)}")
    return TOWER_KINDS[kind](encoder)
