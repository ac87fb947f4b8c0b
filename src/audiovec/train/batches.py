"""The two shapes a training batch takes, as types: audio with captions, or text pairs (modality transfer).

Each knows its size and splits itself into GradCache chunks along the batch dimension; masking keys,
epoch and position (for exact resume) ride along on the whole batch, not on its chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def _pieces(tensor: torch.Tensor, n: int) -> list[torch.Tensor]:
    return list(torch.split(tensor, n, dim=0))


@dataclass
class Tokens:
    """Token ids and attention mask of a list of texts, ``(batch, length)`` each."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def split(self, n: int) -> list[Tokens]:
        return [Tokens(i, m) for i, m in zip(_pieces(self.input_ids, n), _pieces(self.attention_mask, n))]


@dataclass
class AudioCaptionBatch:
    """Padded log-mel features of clips and the tokens of one caption each (``mode: audio``)."""

    features: torch.Tensor  # (batch, mels, frames)
    lengths: torch.Tensor  # valid frames per clip
    captions: Tokens
    content_lengths: torch.Tensor | None = None  # frames before padding added for too-short clips
    keys: list[torch.Tensor] = field(default_factory=list)  # false-negative masking keys (loss.text_keys...)
    epoch: int = 0
    position: int = 0
    negative_keys: list[torch.Tensor] = field(default_factory=list)  # no hard negatives in this shape
    negative_valid: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return len(self.captions)

    def split(self, n: int) -> list[AudioCaptionBatch]:
        """Chunks of ``n`` rows (the last may be shorter); a chunk carries no keys (the loss sees the whole)."""
        if n <= 0 or n >= self.size:
            return [self]
        content = _pieces(self.content_lengths, n) if self.content_lengths is not None else None
        return [
            AudioCaptionBatch(f, lengths, caps, content[i] if content else None)
            for i, (f, lengths, caps) in enumerate(
                zip(_pieces(self.features, n), _pieces(self.lengths, n), self.captions.split(n))
            )
        ]


@dataclass
class TextPairBatch:
    """Anchor / positive (and optional hard-negative) texts (``mode: text``, modality transfer)."""

    anchor: Tokens
    positive: Tokens
    negative: Tokens | None = None
    keys: list[torch.Tensor] = field(default_factory=list)
    negative_keys: list[torch.Tensor] = field(default_factory=list)
    negative_valid: torch.Tensor | None = None  # rows whose negative is real (others repeat their positive)
    epoch: int = 0
    position: int = 0

    @property
    def size(self) -> int:
        return len(self.anchor)

    def split(self, n: int) -> list[TextPairBatch]:
        if n <= 0 or n >= self.size:
            return [self]
        negatives = self.negative.split(n) if self.negative is not None else None
        return [
            TextPairBatch(a, p, negatives[i] if negatives else None)
            for i, (a, p) in enumerate(zip(self.anchor.split(n), self.positive.split(n)))
        ]


TrainBatch = AudioCaptionBatch | TextPairBatch
