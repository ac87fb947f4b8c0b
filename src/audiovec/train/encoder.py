"""What DDP wraps: a chunk of a typed batch in, its embeddings out (audio + caption, or text pairs)."""

from __future__ import annotations

import torch
from torch import nn

from audiovec.train.batches import AudioCaptionBatch, Tokens, TrainBatch


class PairEncoder(nn.Module):
    """What DDP wraps: one chunk of a batch in, its embeddings out (audio + caption, or text pairs).

    When nothing on the text path trains (``trainable: audio_adapter`` or ``projector``), captions are
    embedded once, by the backbone in eval mode (the pretrained text vectors, no dropout), and reused."""

    def __init__(self, model: nn.Module, mode: str, amp: torch.dtype | None) -> None:
        super().__init__()
        self.model = model
        self.mode = mode
        self.amp = amp
        frozen_text = not any(p.requires_grad for p in model.backbone.parameters())
        self.text_cache: dict[bytes, torch.Tensor] | None = {} if frozen_text else None

    def forward(self, chunk: TrainBatch) -> tuple[torch.Tensor, ...]:
        device = self.model.device
        with torch.autocast(device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            if isinstance(chunk, AudioCaptionBatch):
                lengths = chunk.lengths.to(device)
                features = chunk.features[..., : int(lengths.max())].to(device)
                content = chunk.content_lengths
                content = content.to(device) if content is not None else None
                return self.model.forward_audio(features, lengths, content), self._text(chunk.captions)
            out = [self._text(chunk.anchor), self._text(chunk.positive)]
            if chunk.negative is not None:
                out.append(self._text(chunk.negative))
            return tuple(out)

    def _text(self, part: Tokens) -> torch.Tensor:
        mask = part.attention_mask
        keep = mask.bool().any(0)  # drop columns that are padding in every row of this chunk
        device = self.model.device
        ids, mask = part.input_ids[:, keep], mask[:, keep]
        if self.text_cache is None:
            return self.model.forward_text(ids.to(device), mask.to(device))
        keys = [row[m.bool()].numpy().tobytes() for row, m in zip(ids, mask)]
        first: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self.text_cache:
                first.setdefault(key, i)
        missing = list(first.values())
        if missing:
            backbone = self.model.backbone
            was_training = backbone.training
            backbone.eval()
            try:
                with torch.no_grad():
                    vectors = self.model.forward_text(ids[missing].to(device), mask[missing].to(device))
            finally:
                backbone.train(was_training)
            for i, vector in zip(missing, vectors):
                self.text_cache[keys[i]] = vector.float()
        return torch.stack([self.text_cache[key] for key in keys])
