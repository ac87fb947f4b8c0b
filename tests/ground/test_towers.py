"""Our tower adapters give what transformers' own omni thinkers compute on the same audio and weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import WhisperFeatureExtractor

from audiovec.audio import load_audio
from audiovec.errors import ConfigError
from audiovec.features import LogMelExtractor
from audiovec.tiny import QWEN2_TINY, QWEN3_OMNI_AUDIO_TINY, QWEN25_OMNI_AUDIO_TINY, tiny_tower
from audiovec.towers import wrap_encoder

TEXT = {k: v for k, v in QWEN2_TINY.items() if k != "model_type"}


def _qwen25_thinker():
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import Qwen2_5OmniThinkerConfig
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import (
        Qwen2_5OmniThinkerForConditionalGeneration,
    )

    vision = dict(
        depth=1,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=64,
        fullatt_block_indexes=[0],
    )
    text = dict(TEXT, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3], "rope_type": "default"})
    config = Qwen2_5OmniThinkerConfig(
        audio_config=QWEN25_OMNI_AUDIO_TINY, vision_config=vision, text_config=text
    )
    return Qwen2_5OmniThinkerForConditionalGeneration(config).eval()


def _qwen3_thinker():
    from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import Qwen3OmniMoeThinkerConfig
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
        Qwen3OmniMoeThinkerForConditionalGeneration,
    )

    vision = dict(
        depth=1,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=64,
        deepstack_visual_indexes=[0],
    )
    text = dict(TEXT, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, head_dim=16)
    config = Qwen3OmniMoeThinkerConfig(
        audio_config=QWEN3_OMNI_AUDIO_TINY, vision_config=vision, text_config=text
    )
    return Qwen3OmniMoeThinkerForConditionalGeneration(config).eval()


@pytest.mark.parametrize(
    ("kind", "make_thinker"), [("qwen2_5_omni", _qwen25_thinker), ("qwen3_omni", _qwen3_thinker)]
)
def test_tower_matches_thinker_audio_path(fsdd_clips, kind, make_thinker):
    torch.manual_seed(0)
    thinker = make_thinker()
    rng = np.random.default_rng(0)
    waves = [load_audio(p) for p in fsdd_clips[:3]]
    waves.append((0.05 * rng.standard_normal(int(4.3 * 16000))).astype(np.float32))  # crosses window chunks
    # transformers' own path: the processor's feature extractor + the thinker's get_audio_features
    extractor = WhisperFeatureExtractor(feature_size=128)
    batch = extractor(
        waves, sampling_rate=16000, padding="longest", return_attention_mask=True, return_tensors="pt"
    )
    with torch.no_grad():
        reference = thinker.get_audio_features(
            batch["input_features"], feature_attention_mask=batch["attention_mask"]
        )
        packed = reference.last_hidden_state if hasattr(reference, "last_hidden_state") else reference
        encoder = getattr(thinker, "audio_tower", None) or thinker.model.audio_tower
        tower = wrap_encoder(kind, encoder).eval()
        # the same features for both (batched extraction pads clips with zeros, so the frames next to a
        # short clip's end differ from the clip alone; test_features covers the extractor itself)
        lengths = batch["attention_mask"].sum(-1)
        tokens, mask = tower(batch["input_features"], lengths)
    ours = tokens[mask]
    assert ours.shape == packed.shape
    diff = float((ours - packed).abs().max())
    print(f"{kind}: max |tower - thinker.get_audio_features| = {diff:.2e} over {ours.shape[0]} tokens")
    assert diff <= 1e-4
    rate = tower.output_lengths(torch.tensor([16000 // 160 * 10]))  # 10 s of frames
    assert int(rate) == {"qwen2_5_omni": 250, "qwen3_omni": 130}[kind]


# Qwen3-Omni's encoder itself assumes 13 tokens per full chunk (its n_window is 50 in every published config)
@pytest.mark.parametrize(
    ("kind", "n_window"), [("qwen2_5_omni", 100), ("qwen2_5_omni", 25), ("qwen3_omni", 50)]
)
def test_omni_output_lengths_are_what_the_encoder_returns(kind, n_window):
    """The towers compute their token counts themselves (transformers' private length helpers changed
    signature across 5.x): the formula must give exactly the tokens the real encoder returns, at window-chunk
    boundaries and off them."""
    from audiovec.towers import build_tower

    config = dict(
        QWEN25_OMNI_AUDIO_TINY if kind == "qwen2_5_omni" else QWEN3_OMNI_AUDIO_TINY, n_window=n_window
    )
    tower = build_tower(kind, config).eval()
    chunk = 2 * n_window
    for length in (1, 2, 3, 7, chunk - 1, chunk, chunk + 1, 3 * chunk, 5 * chunk + 13, 1234):
        features = torch.randn(1, 128, length)
        with torch.no_grad():
            tokens, mask = tower(features, torch.tensor([length]))
        assert int(mask.sum()) == int(tower.output_lengths(torch.tensor([length]))), length


@pytest.mark.parametrize("kind", ["qwen2_5_omni", "qwen3_omni", "whisper"])
def test_tower_batch_invariance(fsdd_clips, kind):
    tower = tiny_tower(kind)
    waves = [load_audio(p) for p in fsdd_clips[:4]]
    features, lengths = LogMelExtractor(tower.n_mels)(waves)
    with torch.no_grad():
        tokens, mask = tower(features, lengths)
        for i in range(len(waves)):
            alone, alone_mask = tower(features[i : i + 1, :, : lengths[i]], lengths[i : i + 1])
            n = int(alone_mask.sum())
            assert int(mask[i].sum()) == n
            torch.testing.assert_close(tokens[i, :n], alone[0, :n], rtol=0, atol=1e-5)


def test_whisper_tower_equals_stock_forward_on_full_window():
    """On a full 30 s input our masked short path is the stock WhisperEncoder.forward."""
    tower = tiny_tower("whisper")
    features = torch.randn(2, 80, 3000)
    lengths = torch.tensor([3000, 3000])
    with torch.no_grad():
        ours, mask = tower(features, lengths)
        stock = tower.encoder(features).last_hidden_state
    assert mask.all()
    torch.testing.assert_close(ours, stock, rtol=0, atol=1e-5)


def test_whisper_layer_mean_equals_the_stock_hidden_states():
    """layers="mean": every layer's output through the final layer norm, averaged (stock hidden_states hold
    the embeddings first and the last layer already normed)."""
    tower = tiny_tower("whisper")
    tower.set_layers("mean")
    features = torch.randn(1, 80, 3000)
    with torch.no_grad():
        ours, _ = tower(features, torch.tensor([3000]))
        states = tower.encoder(features, output_hidden_states=True).hidden_states
        norm = tower.encoder.layer_norm
        expected = torch.stack([norm(h) for h in states[1:-1]] + [states[-1]]).mean(0)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)
    with pytest.raises(ConfigError, match="supports layers"):
        tiny_tower("qwen3_omni").set_layers("mean")


def test_token_cache_reuses_tokens_and_matches_direct_encoding(fsdd_clips):
    from audiovec.towers import TokenCache

    tower = tiny_tower("whisper").requires_grad_(False).eval()
    waves = [load_audio(p) for p in fsdd_clips[:4]]
    features, lengths = LogMelExtractor(tower.n_mels)(waves)
    with torch.no_grad():
        direct, direct_mask = tower(features, lengths)
        tower.token_cache = TokenCache()
        first, first_mask = tower(features, lengths)
        order = torch.tensor([2, 0, 3, 1])  # another batch order, shorter padding
        again, again_mask = tower(features[order][..., : int(lengths[order].max())], lengths[order])
    assert tower.token_cache.misses == 4 and tower.token_cache.hits == 4
    assert torch.equal(first_mask, direct_mask)
    torch.testing.assert_close(first, direct, rtol=0, atol=1e-6)
    torch.testing.assert_close(again, direct[order], rtol=0, atol=1e-6)
    tower.train()
    with pytest.raises(RuntimeError, match="frozen"):
        tower(features, lengths)


def test_qwen3_omni_clip_does_not_depend_on_its_batch():
    """transformers' Qwen3-Omni encoder pads each clip's last chunk to the longest chunk of the call, and the
    GELU of the padding's conv bias leaks into the clip's last tokens; the tower groups its calls so that
    every clip is padded as alone. The tower is initialised wider than transformers' default (0.02), at
    which the tiny tower's output hardly depends on its input and hides the leak."""
    from audiovec.towers import build_tower

    torch.manual_seed(0)
    tower = build_tower("qwen3_omni", dict(QWEN3_OMNI_AUDIO_TINY, initializer_range=0.2)).eval()
    chunk = 2 * QWEN3_OMNI_AUDIO_TINY["n_window"]
    sizes = [chunk - 40, chunk + 50, chunk - 40, chunk - 7, 3 * chunk, chunk]
    clips = [torch.randn(1, 128, n) for n in sizes]
    batch = torch.cat([_pad_frames(c, max(sizes)) for c in clips])
    with torch.no_grad():
        tokens, mask = tower(batch, torch.tensor(sizes))
        for i, clip in enumerate(clips):
            alone, alone_mask = tower(clip, torch.tensor([sizes[i]]))
            n = int(alone_mask.sum())
            assert int(mask[i].sum()) == n and not mask[i, n:].any()
            torch.testing.assert_close(tokens[i, :n], alone[0], rtol=0, atol=1e-4)
            assert not tokens[i, n:].any()


def _pad_frames(features: torch.Tensor, frames: int) -> torch.Tensor:
    return torch.nn.functional.pad(features, (0, frames - features.shape[-1]))
