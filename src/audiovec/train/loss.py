"""Symmetric InfoNCE with a fixed or learnable temperature, false-negative masking and a
differentiable all-gather so every process sees the global batch."""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from audiovec.dist import world

NO_KEY = -1  # a row without labels never matches another row on labels


def _stable_hash(text: str) -> int:
    """A 63-bit hash that is the same in every process (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big") >> 1


def text_keys(texts: Sequence[str]) -> Tensor:
    """One id per caption; captions equal up to case and spacing get the same id."""
    return torch.tensor([_stable_hash(" ".join(t.lower().split())) for t in texts], dtype=torch.long)


def label_keys(label_sets: Sequence[Iterable[str] | None]) -> Tensor:
    """One id per label set (order-free); rows with no labels get ``NO_KEY``."""
    keys = []
    for labels in label_sets:
        names = sorted({str(x).strip().lower() for x in labels or []})
        keys.append(_stable_hash("\x1f".join(names)) if names else NO_KEY)
    return torch.tensor(keys, dtype=torch.long)


def facet_label_keys(
    label_sets: Sequence[Iterable[str] | None],
    fields: Sequence[Mapping[str, object] | None],
    captions: Sequence[str],
    facets: Sequence[str],
) -> Tensor:
    """Label-set keys that also know what each caption says about its clip: (B, 1 + 2F) ids.

    Column 0 is :func:`label_keys`; then each facet's value per clip (``fields[i][facet]``, e.g. its
    language or the words said; ``NO_KEY`` when absent); then 1 where the clip's caption names that value.
    :func:`false_negative_mask` then masks audio i against caption j only when caption j is also true of
    clip i: same label set, and the same value for every facet caption j names. "A man speaking" stays a
    false negative for every male voice, while "a man saying 'hallo' in Dutch" no longer hides the other
    men's clips, as masking by label set alone does (docs/ablation.md measures both).
    """
    if not len(label_sets) == len(fields) == len(captions):
        raise ValueError("facet_label_keys: label_sets, fields and captions differ in length")
    labels = label_keys(label_sets)
    values = torch.full((len(captions), len(facets)), NO_KEY, dtype=torch.long)
    named = torch.zeros((len(captions), len(facets)), dtype=torch.long)
    for i, (row, caption) in enumerate(zip(fields, captions, strict=True)):
        for f, facet in enumerate(facets):
            value = " ".join(str((row or {}).get(facet) or "").lower().split())
            if not value:
                continue
            values[i, f] = _stable_hash(value)
            named[i, f] = int(_names(caption, value))
    return torch.cat([labels[:, None], values, named], dim=1)


def _names(caption: str, value: str) -> bool:
    """Whether ``caption`` contains ``value`` as whole words (case and spacing ignored)."""
    text = " ".join(caption.lower().split())
    return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text) is not None


def gather_batch(
    audio: Tensor,
    text: Tensor,
    keys: Sequence[Tensor],
    hard_negatives: Tensor | None,
    negative_keys: Sequence[Tensor],
    negative_valid: Tensor | None,
) -> tuple[Tensor, Tensor, list[Tensor], Tensor | None, list[Tensor], Tensor | None]:
    """Every rank's part of a batch: embeddings with gradients, masking keys and validity without."""
    audio, text = gather_with_grad(audio), gather_with_grad(text)
    keys = [gather_no_grad(k.to(audio.device)) for k in keys]
    negative_keys = list(negative_keys)
    if hard_negatives is not None:
        hard_negatives = gather_with_grad(hard_negatives)
        negative_keys = [gather_no_grad(k.to(audio.device)) for k in negative_keys]
        if negative_valid is not None:
            negative_valid = gather_no_grad(negative_valid.to(audio.device, torch.uint8))
    return audio, text, keys, hard_negatives, negative_keys, negative_valid


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every rank in rank order; gradients flow back to each rank's slice."""
    _, size = world()
    if size == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # deprecated in favour of a private API in torch 2.13; still correct
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(x.contiguous()), dim=0)


def gather_no_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` (ids, masks) from every rank in rank order, without gradient."""
    _, size = world()
    if size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def false_negative_mask(row_keys: Sequence[Tensor], col_keys: Sequence[Tensor] | None = None) -> Tensor:
    """``mask[i, j]`` is True where audio row i and caption column j share any key (same caption, same
    label set), with ``NO_KEY`` never matching. A 2-D key from :func:`facet_label_keys` matches when caption
    j is true of clip i (so the mask need not be symmetric). The diagonal is left to the caller."""
    col_keys = row_keys if col_keys is None else col_keys
    mask = None
    for r, c in zip(row_keys, col_keys, strict=True):
        same = _facet_match(r, c) if r.dim() == 2 else (r[:, None] == c[None, :]) & (r[:, None] != NO_KEY)
        mask = same if mask is None else mask | same
    if mask is None:
        raise ValueError("false_negative_mask needs at least one key tensor")
    return mask


def _facet_match(rows: Tensor, cols: Tensor) -> Tensor:
    """Clip i (``rows``) fits caption j (``cols``): same label set and every facet caption j names agrees."""
    n = (rows.shape[1] - 1) // 2
    labels = (rows[:, None, 0] == cols[None, :, 0]) & (rows[:, None, 0] != NO_KEY)
    agree = rows[:, None, 1 : 1 + n] == cols[None, :, 1 : 1 + n]
    named = cols[None, :, 1 + n :].bool()
    return labels & (agree | ~named).all(dim=2)


class ContrastiveLoss(nn.Module):
    """Symmetric InfoNCE: audio→text and text→audio cross-entropy, averaged.

    The temperature is ``exp(-logit_scale)``; it is a parameter when ``learnable`` and always clamped
    to ``[min_temperature, max_temperature]``. In-batch pairs that share a caption or label set are
    removed from each other's negatives (the positive on the diagonal is kept). Under
    ``torch.distributed`` the embeddings are gathered with gradient, so each rank computes the loss
    of the global batch.
    """

    def __init__(
        self,
        temperature: float = 0.07,
        learnable: bool = True,
        min_temperature: float = 0.01,
        max_temperature: float = 1.0,
        mask_false_negatives: bool = True,
        gather: bool = True,
    ) -> None:
        super().__init__()
        if not 0 < min_temperature <= temperature <= max_temperature:
            raise ValueError(
                f"temperature {temperature} must lie in [{min_temperature}, {max_temperature}] and be > 0"
            )
        scale = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.logit_scale = nn.Parameter(scale)
        else:
            self.register_buffer("logit_scale", scale)
        self.max_scale = math.log(1.0 / min_temperature)
        self.min_scale = math.log(1.0 / max_temperature)
        self.mask_false_negatives = mask_false_negatives
        self.gather = gather

    @property
    def temperature(self) -> float:
        return float(torch.exp(-self.scale().detach()))

    def scale(self) -> Tensor:
        return self.logit_scale.clamp(self.min_scale, self.max_scale)

    def forward(
        self,
        audio: Tensor,
        text: Tensor,
        keys: Sequence[Tensor] = (),
        hard_negatives: Tensor | None = None,
        negative_keys: Sequence[Tensor] = (),
        negative_valid: Tensor | None = None,
    ) -> Tensor:
        """Loss of L2-normalised ``audio`` (B, D) against ``text`` (B, D).

        ``keys``: per-row id tensors (see :func:`text_keys`, :func:`label_keys`) used for masking.
        ``hard_negatives`` (B, D): extra text columns for the audio→text direction (text-pair mode,
        where "audio" is the anchor); a hard negative whose ``negative_keys`` match the first
        ``len(negative_keys)`` of the row's ``keys`` (e.g. the same text as its positive) is masked.
        ``negative_valid`` (B,) bool: columns that are real negatives (placeholders are dropped for every row).
        """
        if self.gather:
            audio, text, keys, hard_negatives, negative_keys, negative_valid = gather_batch(
                audio, text, keys, hard_negatives, negative_keys, negative_valid
            )
        keys = [k.to(audio.device) for k in keys]
        dtype = torch.promote_types(audio.dtype, torch.float32)  # bf16 embeddings → fp32 logits
        audio, text = audio.to(dtype), text.to(dtype)
        scale = self.scale().exp().to(dtype)
        logits = scale * (audio @ text.T)
        rows, cols = logits, logits.T
        if self.mask_false_negatives and keys:
            mask = false_negative_mask(keys)
            mask.fill_diagonal_(False)
            rows, cols = logits.masked_fill(mask, float("-inf")), logits.T.masked_fill(mask.T, float("-inf"))
        if hard_negatives is not None:
            extra = scale * (audio @ hard_negatives.to(dtype).T)
            if self.mask_false_negatives and keys and negative_keys:
                neg = [k.to(extra.device) for k in negative_keys]
                extra = extra.masked_fill(false_negative_mask(keys[: len(neg)], neg), float("-inf"))
            if negative_valid is not None:
                extra = extra.masked_fill(~negative_valid.to(extra.device).bool()[None, :], float("-inf"))
            rows = torch.cat([rows, extra], dim=1)
        target = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(rows, target) + F.cross_entropy(cols, target)) / 2


def in_batch_accuracy(audio: Tensor, text: Tensor, keys: Sequence[Tensor] = ()) -> tuple[float, float]:
    """Top-1 retrieval accuracy within a batch (audio→text, text→audio); a hit on any column
    sharing the row's caption or label set counts as correct."""
    sim = audio.float() @ text.float().T
    n = sim.shape[0]
    ok = torch.eye(n, dtype=torch.bool, device=sim.device)
    if keys:
        ok = ok | false_negative_mask([k.to(sim.device) for k in keys])
    rows = torch.arange(n, device=sim.device)
    a2t = ok[rows, sim.argmax(dim=1)].float().mean().item()
    t2a = ok[sim.argmax(dim=0), rows].float().mean().item()
    return a2t, t2a
