"""The embedder end to end: text parity with the backbone, batch invariance, long clips, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audiovec.audio import load_audio
from audiovec.errors import AudioDecodeError, CheckpointError, ConfigError, UnsafeCheckpointError
from audiovec.model import AudioTextEmbedder
from audiovec.tiny import tiny_embedder


@pytest.mark.parametrize("backbone", ["qwen2", "qwen3", "bert"])
def test_text_vectors_equal_backbone_hidden_states_pooled_by_hand(backbone):
    model = tiny_embedder("qwen3_omni", backbone)
    texts = ["a man saying seven", "rain", "a dog barking in the distance while a car passes"]
    ours = model.encode_text(texts, batch_size=2)
    tok = model.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model.backbone(
            input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]
        ).last_hidden_state
    m = tok["attention_mask"].unsqueeze(-1).float()
    by_hand = torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1), dim=-1).numpy()
    diff = np.abs(ours - by_hand).max()
    print(f"{backbone}: max |encode_text - pooled backbone| = {diff:.2e}")
    assert diff <= 1e-5


@pytest.mark.parametrize("tower", ["qwen2_5_omni", "qwen3_omni", "whisper"])
def test_clip_alone_equals_clip_in_mixed_batch(fsdd_clips, tower):
    model = tiny_embedder(tower, "qwen2")
    long_clip = np.concatenate([load_audio(p) for p in fsdd_clips])  # ~6 s of real speech
    inputs = [str(p) for p in fsdd_clips[:5]] + [long_clip]
    batch = model.encode_audio(inputs, batch_size=3, sample_rate=16000)
    assert batch.shape == (6, model.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    worst = 0.0
    for i, item in enumerate(inputs):
        alone = model.encode_audio(item, sample_rate=16000 if i == 5 else None)
        worst = max(worst, float(np.abs(alone - batch[i]).max()))
    print(f"{tower}: max |alone - in batch| = {worst:.2e}")
    assert worst <= 1e-5


def test_long_clip_is_duration_weighted_mean_of_windows(fsdd_clips):
    model = tiny_embedder("qwen3_omni", "qwen2", window_seconds=2.0)
    wave = np.concatenate([load_audio(p) for p in fsdd_clips[:8]])
    assert len(wave) > 2 * 32000, "needs several windows"
    whole = model.encode_audio(wave, sample_rate=16000)
    size = 32000
    windows = [wave[s : s + size] for s in range(0, len(wave), size)]
    vecs = model.encode_audio(windows, sample_rate=16000)
    weights = np.array([len(w) for w in windows], dtype=np.float64)
    expected = (vecs * weights[:, None]).sum(0)
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(whole, expected, atol=1e-5)


def test_inputs_of_every_kind_agree(fsdd_clips):
    model = tiny_embedder()
    path = fsdd_clips[0]
    data = path.read_bytes()
    wave = load_audio(path)
    with open(path, "rb") as handle:
        from_file = model.encode_audio(handle)
    vecs = [
        model.encode_audio(str(path)),
        model.encode_audio(data),
        from_file,
        model.encode_audio(wave, sample_rate=16000),
        model.encode_audio(torch.from_numpy(wave), sample_rate=16000),
    ]
    for v in vecs[1:]:
        np.testing.assert_allclose(v, vecs[0], atol=1e-6)


def test_bad_file_in_batch_is_skipped_and_reported(fsdd_clips, tmp_path):
    model = tiny_embedder()
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 3)
    inputs = [str(fsdd_clips[0]), str(bad), str(fsdd_clips[1])]
    result = model.encode_audio_detailed(inputs, on_error="skip")
    assert list(result.errors) == [1] and "broken.wav" in result.errors[1]
    assert result.ok.tolist() == [True, False, True]
    assert np.isnan(result.vectors[1]).all() and np.isfinite(result.vectors[[0, 2]]).all()
    np.testing.assert_allclose(result.vectors[0], model.encode_audio(str(fsdd_clips[0])), atol=1e-6)
    with pytest.raises(AudioDecodeError, match="broken.wav"):
        model.encode_audio(inputs)


@pytest.mark.parametrize(
    ("tower", "backbone"), [("qwen3_omni", "qwen2"), ("qwen2_5_omni", "qwen3"), ("whisper", "bert")]
)
def test_save_and_load_round_trip(fsdd_clips, tmp_path, tower, backbone):
    model = tiny_embedder(tower, backbone, pooling="last" if backbone == "qwen3" else "mean")
    folder = model.save_pretrained(tmp_path / "m")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert not any(p.suffix in {".bin", ".pt", ".pkl"} for p in folder.iterdir())
    config = json.loads((folder / "config.json").read_text())
    assert config["tower"]["kind"] == tower and config["features"]["n_mels"] == model.tower.n_mels
    loaded = AudioTextEmbedder.from_pretrained(folder)
    clips = [str(p) for p in fsdd_clips[:3]]
    np.testing.assert_allclose(loaded.encode_audio(clips), model.encode_audio(clips), atol=1e-6)
    np.testing.assert_allclose(loaded.encode_text(["a cat"]), model.encode_text(["a cat"]), atol=1e-6)


def test_loading_refuses_pickle_and_reports_missing(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        AudioTextEmbedder.from_pretrained(tmp_path / "nope")
    folder = tiny_embedder().save_pretrained(tmp_path / "m")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="pickle"):
        AudioTextEmbedder.from_pretrained(folder)


def test_backbone_position_limit_is_checked():
    with pytest.raises(ConfigError, match="positions"):
        tiny_embedder("whisper", "bert", projector_downsample=1)


def test_bf16_inference_close_to_fp32(fsdd_clips):
    model = tiny_embedder()
    clips = [str(p) for p in fsdd_clips[:4]]
    fp32 = model.encode_audio(clips)
    bf16 = model.to(torch.bfloat16).encode_audio(clips)
    cos = (fp32 * bf16).sum(1)
    assert cos.min() > 0.99, cos


def test_min_seconds_pads_with_silence_but_pools_only_the_clip(fsdd_clips):
    model = tiny_embedder("whisper", "qwen2", min_seconds=3.0)
    wave = load_audio(fsdd_clips[0])
    assert len(wave) < 3 * 16000
    batch = model.featurize([wave])
    assert int(batch["lengths"][0]) == 300 and int(batch["content_lengths"][0]) == len(wave) // 160
    vec = model.encode_audio(wave, sample_rate=16000)
    padded = np.concatenate([wave, np.zeros(3 * 16000 - len(wave), np.float32)])
    tokens, mask = model.tower(
        **{k: v for k, v in model.featurize([padded]).items() if k != "content_lengths"}
    )
    keep = int(model.tower.output_lengths(batch["content_lengths"])[0])
    with torch.no_grad():
        by_hand = model._pool_backbone(*model.projector(tokens[:, :keep], mask[:, :keep]))[0].numpy()
    np.testing.assert_allclose(vec, by_hand, atol=1e-5)
    reloaded_config = model.config.to_json()["features"]
    assert reloaded_config["min_seconds"] == 3.0
