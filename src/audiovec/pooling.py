"""Sequence → one vector: masked mean (default), last valid token, first valid token (``cls``) or masked max.

The modes match sentence-transformers' Pooling (``mean``, ``lasttoken``, ``cls``, ``max``) on padded batches.
"""

from __future__ import annotations

import torch

POOLING_MODES = ("mean", "last", "cls", "max")


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """Pool ``hidden (B, N, H)`` over the positions where ``mask (B, N)`` is true."""
    mask = mask.to(hidden.device)
    if mode == "mean":
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    if mode == "last":
        # index of the last true position of each row (works for right padding and for left padding)
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        last = torch.where(mask.bool(), positions, -1).amax(dim=1).clamp(min=0)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if mode == "cls":
        # the first true position (the [CLS] token with right padding; also right for left padding)
        first = mask.to(torch.int).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]
    if mode == "max":
        valid = mask.bool().unsqueeze(-1)
        pooled = hidden.masked_fill(~valid, float("-inf")).amax(dim=1)
        return torch.where(valid.any(dim=1), pooled, torch.zeros_like(pooled))  # a row with nothing valid: 0
    raise ValueError(f"unknown pooling {mode!r}; choose one of {POOLING_MODES}")
