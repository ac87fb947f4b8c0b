"""Matryoshka representation learning for the symmetric InfoNCE loss: the loss is also taken on prefixes
of the vectors (e.g. the full size, 1/2, 1/4, 1/8), each prefix L2-normalised again, and the losses are
averaged with weights. A model trained so keeps its retrieval quality when its vectors are truncated
(``encode_*(truncate_dim=...)``, the service's ``dimensions`` field, ``audiovec index --dim``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from audiovec.errors import ConfigError
from audiovec.train.loss import ContrastiveLoss, gather_batch

AUTO = "auto"  # full size, 1/2, 1/4, 1/8 (sizes of at least 8)


def parse_dims(value: Any) -> list[int] | str:
    """``train.matryoshka_dims`` as written in a recipe or on the command line: ``[]`` (off), ``"auto"``,
    a list of sizes or a comma-separated string (``"384,192,96,48"``) → ``[]``, ``"auto"`` or the sizes."""
    if value is None or value == "" or value == []:
        return []
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    try:
        dims = [int(v) for v in value]
        ok = all(not isinstance(v, bool) and float(v) == int(v) for v in value)
    except (TypeError, ValueError):
        dims, ok = [], False
    if not ok or not dims or any(d < 1 for d in dims) or len(set(dims)) != len(dims):
        raise ConfigError(
            f"train.matryoshka_dims (--matryoshka-dims): expected distinct sizes >= 1 such as "
            f"[384, 192, 96, 48], 'auto' or [] (off); got {value!r}"
        )
    return sorted(dims, reverse=True)


def resolve_dims(dims: list[int] | str, embedding_dim: int) -> list[int]:
    """The sizes to train for a model of ``embedding_dim``: ``"auto"`` → full, 1/2, 1/4, 1/8."""
    if dims == AUTO:
        return [
            d for d in (embedding_dim, embedding_dim // 2, embedding_dim // 4, embedding_dim // 8) if d >= 8
        ]
    too_big = [d for d in dims if d > embedding_dim]
    if too_big:
        raise ConfigError(
            f"train.matryoshka_dims {list(dims)}: {too_big} exceed the model's embedding size "
            f"{embedding_dim}; use sizes in 1..{embedding_dim}"
        )
    return list(dims)


def resolve_weights(weights: Sequence[float], dims: Sequence[int]) -> list[float]:
    """One weight per size (``[]``: all 1); every weight >= 0 and at least one > 0."""
    if not weights:
        return [1.0] * len(dims)
    values = [float(w) for w in weights]
    if len(values) != len(dims) or any(w < 0 for w in values) or sum(values) <= 0:
        raise ConfigError(
            f"train.matryoshka_weights {list(weights)}: give one weight >= 0 per size of "
            f"train.matryoshka_dims {list(dims)} (not all 0), or [] for equal weights"
        )
    return values


def prefix(x: Tensor, dim: int) -> Tensor:
    """The first ``dim`` components of each row of ``x``, L2-normalised again (all of them: ``x`` itself)."""
    if dim >= x.shape[-1]:
        return x
    return F.normalize(x[..., :dim].float(), dim=-1).to(x.dtype)


class MatryoshkaContrastiveLoss(ContrastiveLoss):
    """:class:`ContrastiveLoss` averaged over nested prefixes: ``sum_i w_i L(prefix_i) / sum_i w_i``.

    The temperature (one, shared by every size), the false-negative masking and the hard negatives work
    as in the parent class; under ``torch.distributed`` the batch is gathered once, then every size is
    scored on the global batch. With one size equal to the full dimension it is the plain loss.
    """

    def __init__(self, dims: Sequence[int], weights: Sequence[float] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not dims:
            raise ConfigError("MatryoshkaContrastiveLoss needs at least one size")
        self.dims = [int(d) for d in dims]
        self.weights = resolve_weights(list(weights), self.dims)

    def forward(
        self,
        audio: Tensor,
        text: Tensor,
        keys: Sequence[Tensor] = (),
        hard_negatives: Tensor | None = None,
        negative_keys: Sequence[Tensor] = (),
        negative_valid: Tensor | None = None,
    ) -> Tensor:
        """Weighted mean of the parent's loss at every size (see :meth:`ContrastiveLoss.forward`)."""
        if audio.shape[-1] < max(self.dims):
            raise ConfigError(
                f"matryoshka sizes {self.dims} exceed the embedding size {audio.shape[-1]}; "
                f"use sizes in 1..{audio.shape[-1]}"
            )
        gather = self.gather
        if gather:  # once for all sizes; the parent then sees the global batch
            audio, text, keys, hard_negatives, negative_keys, negative_valid = gather_batch(
                audio, text, keys, hard_negatives, negative_keys, negative_valid
            )
        self.gather = False
        try:
            total = audio.new_zeros((), dtype=torch.promote_types(audio.dtype, torch.float32))
            for dim, weight in zip(self.dims, self.weights):
                if weight == 0:
                    continue
                hard = None if hard_negatives is None else prefix(hard_negatives, dim)
                loss = super().forward(
                    prefix(audio, dim), prefix(text, dim), keys, hard, negative_keys, negative_valid
                )
                total = total + weight * loss
        finally:
            self.gather = gather
        return total / sum(self.weights)


def make_loss(spec: Any, embedding_dim: int) -> tuple[ContrastiveLoss, list[int]]:
    """The training loss of a ``TrainSpec`` and the Matryoshka sizes it trains (``[]`` when off)."""
    common = {
        "temperature": spec.temperature,
        "learnable": spec.learnable_temperature,
        "min_temperature": spec.min_temperature,
        "max_temperature": spec.max_temperature,
        "mask_false_negatives": spec.mask_false_negatives,
    }
    dims = parse_dims(spec.matryoshka_dims)
    if not dims:
        return ContrastiveLoss(**common), []
    dims = resolve_dims(dims, embedding_dim)
    return MatryoshkaContrastiveLoss(dims, spec.matryoshka_weights, **common), dims
