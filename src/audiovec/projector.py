"""Audio tokens → the backbone's embedding width: optional averaging of neighbouring tokens
(``downsample``), an optional token budget per clip (``max_tokens`` segment means), then a linear map or a
small MLP."""

from __future__ import annotations

import torch
from torch import nn

from audiovec.errors import ConfigError


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
            tokens, mask = masked_avg_pool(tokens, mask, self.downsample)
        if self.max_tokens and tokens.shape[1] > self.max_tokens:
            tokens, mask = segment_means(tokens, mask, self.max_tokens)
        x = self.linear(tokens.to(self.linear.weight.dtype))
        return (x if self.out is None else self.out(x)), mask


def segment_means(tokens: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
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


def masked_avg_pool(tokens: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    batch, length, dim = tokens.shape
    pad = (-length) % k
    weights = mask.to(tokens.dtype)
    if pad or torch.jit.is_tracing():  # traced (ONNX export): pad by the length's own remainder, not 0
        tokens = nn.functional.pad(tokens, (0, 0, 0, pad))
        weights = nn.functional.pad(weights, (0, pad))
    tokens = (tokens * weights[..., None]).reshape(batch, -1, k, dim).sum(2)
    counts = weights.reshape(batch, -1, k).sum(2)
    return tokens / counts.clamp(min=1.0)[..., None], counts > 0
