"""The projector's token budget: segment means computed by hand, short clips untouched, and a clip's vector
the same alone or in a batch."""

from __future__ import annotations

import numpy as np
import torch

from audiovec.projector import segment_means
from audiovec.tiny import tiny_embedder


def test_segment_means_by_hand() -> None:
    tokens = torch.arange(2 * 7 * 2, dtype=torch.float32).reshape(2, 7, 2)
    mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    out, out_mask = segment_means(tokens, mask, 3)
    # row 0: 7 tokens -> segments floor(p*3/7): [0,1,2], [3,4], [5,6]
    expected0 = torch.stack([tokens[0, 0:3].mean(0), tokens[0, 3:5].mean(0), tokens[0, 5:7].mean(0)])
    torch.testing.assert_close(out[0], expected0)
    torch.testing.assert_close(out[1], tokens[1, :3])  # 3 valid tokens <= 3: kept as they are
    assert out_mask.tolist() == [[True, True, True], [True, True, True]]
    out, out_mask = segment_means(tokens, torch.tensor([[True] * 7, [True] * 2 + [False] * 5]), 3)
    assert out_mask[1].tolist() == [True, True, False]


def test_a_clip_gives_the_same_vector_alone_or_in_a_batch() -> None:
    model = tiny_embedder(projector_max_tokens=5)
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(int(16_000 * s)).astype(np.float32) * 0.1 for s in (0.7, 3.0, 9.5)]
    together = model.encode_audio(waves, sample_rate=16_000)
    alone = np.stack([model.encode_audio(w, sample_rate=16_000) for w in waves])
    np.testing.assert_allclose(together, alone, atol=2e-5)
    assert model.config.to_json()["projector"] == {"downsample": 1, "max_tokens": 5, "layers": 1}
