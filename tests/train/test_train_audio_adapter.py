"""trainable: audio_adapter — the audio path learns (projector + audio-only backbone LoRA) while text keeps
the pretrained vectors exactly; captions are embedded once and reused; the adapter is saved, not merged."""

from __future__ import annotations

import numpy as np

from audiovec.data.fsdd import bundled_files as fsdd_files
from audiovec.model import AudioTextEmbedder
from audiovec.tiny import save_tiny_embedder
from audiovec.train.config import Recipe, from_dict

TEXTS = ["a man saying seven", "a dog barking", "rain on a roof"]


def _recipe(model_dir, out) -> Recipe:
    return from_dict(Recipe, {
        "model": {"path": str(model_dir)},
        "data": {"train": [{"fsdd": {"n": 64}}], "max_seconds": 2.0},
        "train": {"trainable": "audio_adapter", "steps": 6, "batch_size": 8, "lr": 1e-2, "new_lr": 1e-2,
                  "warmup_steps": 1, "precision": "fp32", "audio_adapter": {"r": 4, "alpha": 8}},
        "output": {"dir": str(out), "checkpoint_every": 0, "progress": False, "plot": False},
    }).validate()  # fmt: skip


def test_audio_adapter_training_keeps_text_and_changes_audio(tmp_path):
    from audiovec.train.trainer import Trainer

    base = save_tiny_embedder(tmp_path / "base")
    before = AudioTextEmbedder.from_pretrained(base)
    clips = [str(p) for p in fsdd_files()[::100]]
    trainer = Trainer(_recipe(base, tmp_path / "run"))
    forwards = []
    original = trainer.model.forward_text
    trainer.model.forward_text = lambda *a, **k: forwards.append(a[0].shape[0]) or original(*a, **k)
    summary = trainer.fit()
    assert trainer.encoder.text_cache and sum(forwards) == len(
        trainer.encoder.text_cache
    )  # each caption once
    after = AudioTextEmbedder.from_pretrained(summary["model"])
    assert after.config.audio_adapter == {"r": 4, "alpha": 8.0, "targets": "all-linear"}
    assert any(k.startswith("audio_adapter.") for k in after.state_dict())
    np.testing.assert_array_equal(after.encode_text(TEXTS), before.encode_text(TEXTS))
    moved = np.abs(after.encode_audio(clips) - before.encode_audio(clips)).max()
    assert moved > 1e-3
