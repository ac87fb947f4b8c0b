"""Audio-only adapters: text vectors stay exactly the pretrained backbone's, audio vectors change, and the
adapter survives save/load with the backbone's own weight names untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiovec.errors import ConfigError
from audiovec.model import AudioTextEmbedder
from audiovec.tiny import tiny_embedder

TEXTS = ["a dog barking", "rain on a window", "a man speaking"]


def _waves(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(16_000 * (i + 1)).astype(np.float32) * 0.1 for i in range(n)]


def _perturb(model: AudioTextEmbedder) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.audio_adapter.parameters():
            p.add_(torch.randn_like(p) * 0.5)


@pytest.mark.parametrize("backbone", ["qwen2", "bert"])
def test_adapter_changes_audio_only(backbone: str) -> None:
    model = tiny_embedder(backbone=backbone)
    keys = set(model.backbone.state_dict())
    text0, audio0 = model.encode_text(TEXTS), model.encode_audio(_waves(), sample_rate=16_000)
    model.add_audio_adapter(r=4, alpha=8)
    assert set(model.backbone.state_dict()) == keys  # the backbone's weights keep their names
    np.testing.assert_allclose(model.encode_audio(_waves(), sample_rate=16_000), audio0, atol=1e-6)  # up = 0
    _perturb(model)
    np.testing.assert_array_equal(model.encode_text(TEXTS), text0)
    audio1 = model.encode_audio(_waves(), sample_rate=16_000)
    assert np.abs(audio1 - audio0).max() > 1e-3
    with pytest.raises(ConfigError, match="already has"):
        model.add_audio_adapter()


def test_adapter_saves_and_loads(tmp_path) -> None:
    model = tiny_embedder()
    model.add_audio_adapter(r=4, alpha=8, targets=["q_proj", "v_proj"])
    _perturb(model)
    folder = model.save_pretrained(tmp_path / "m")
    loaded = AudioTextEmbedder.from_pretrained(folder)
    assert loaded.config.audio_adapter == {"r": 4, "alpha": 8.0, "targets": ["q_proj", "v_proj"]}
    waves = _waves()
    np.testing.assert_array_equal(
        loaded.encode_audio(waves, sample_rate=16_000), model.encode_audio(waves, sample_rate=16_000)
    )
    np.testing.assert_array_equal(loaded.encode_text(TEXTS), model.encode_text(TEXTS))


def test_adapter_targets_must_match_something() -> None:
    with pytest.raises(ConfigError, match="no nn.Linear"):
        tiny_embedder().add_audio_adapter(targets=["no_such_layer"])
