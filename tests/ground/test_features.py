"""Our batched log-mel equals transformers' WhisperFeatureExtractor, clip by clip, without 30 s padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import WhisperFeatureExtractor

from audiovec.audio import load_audio
from audiovec.features import LogMelExtractor, num_frames


@pytest.mark.parametrize("n_mels", [128, 80])
def test_matches_whisper_feature_extractor(fsdd_clips, n_mels):
    rng = np.random.default_rng(0)
    waves = [load_audio(p) for p in fsdd_clips[:6]]
    waves.append((0.1 * rng.standard_normal(3 * 16000 + 77)).astype(np.float32))  # odd length, 3 s
    waves.append(np.zeros(4000, dtype=np.float32))  # silence
    reference = WhisperFeatureExtractor(feature_size=n_mels)
    features, lengths = LogMelExtractor(n_mels)(waves)
    worst = 0.0
    for i, wave in enumerate(waves):
        ref = reference(
            wave, sampling_rate=16000, padding="longest", return_attention_mask=True, return_tensors="np"
        )
        assert int(ref["attention_mask"].sum()) == int(lengths[i]) == num_frames(len(wave))
        ours = features[i, :, : lengths[i]].numpy()
        worst = max(worst, float(np.abs(ref["input_features"][0] - ours).max()))
        assert not features[i, :, lengths[i] :].any(), "frames past the clip must be zero"
    print(f"max |ours - WhisperFeatureExtractor| over {len(waves)} clips ({n_mels} bins): {worst:.2e}")
    assert worst <= 1e-5


def test_batch_invariance_and_short_clips():
    rng = np.random.default_rng(1)
    waves = [rng.standard_normal(n).astype(np.float32) for n in (1, 150, 1600, 48000)]
    extractor = LogMelExtractor(128)
    batch, lengths = extractor(waves)
    for i, wave in enumerate(waves):
        alone, alone_len = extractor([wave])
        assert alone_len[0] == lengths[i]
        torch.testing.assert_close(batch[i, :, : lengths[i]], alone[0, :, : lengths[i]], rtol=0, atol=1e-6)
    assert lengths[0] >= 1, "even a single sample gives at least one frame"
