"""End to end against transformers: a raw waveform through the omni model's own path (its processor's feature
extractor, the thinker's audio features, its LLM, then mean pooling) gives encode_audio's vector, for clips
shorter and longer than 30 s; each tower's window policy is what its reference sees (docs/long-audio.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audiovec.audio import SAMPLE_RATE, window_spans
from audiovec.build.compose import compose
from audiovec.model import AudioTextEmbedder, EmbedderConfig
from audiovec.tiny import tiny_embedder, tiny_tokenizer
from helpers.omni_reference import (
    OMNI_KINDS,
    embedder_from_thinker,
    thinker_reference,
    tiny_thinker,
    tower_tokens,
    varying_speech,
)

# under 30 s, and over: where audiovec used to cut 30 s windows (120 s: slow)
LENGTHS = (5.0, 45.0, pytest.param(120.0, marks=pytest.mark.slow))
# Qwen2.5-Omni's processor pads every clip with zeros to 300 s, so the clip's last STFT frames see zeros
# where ours (a clip alone, as Qwen3-Omni's processor) reflect the clip: a few tokens at the end differ.
TOKEN_TOLERANCE = {"qwen2_5_omni": 1e-3, "qwen3_omni": 1e-5}
# |ours - reference| as a share of |reference - the reference of another clip of that length|: the tiny
# random models put every vector close to every other (Qwen3-Omni's within 1 - cos < 1e-7), so a gap is only
# measured against that spread. The policy gives 7e-6 to 8e-4; 30 s windows floored each at its own peak
# gave 0.67 and 2.3 (Qwen2.5-Omni, 45 / 120 s) and 100 and 270 (Qwen3-Omni).
SPREAD_TOLERANCE = 1e-2


@pytest.fixture(scope="module", params=OMNI_KINDS)
def omni(request, tmp_path_factory):
    """``(kind, thinker, model)``: a tiny thinker and the audiovec model of its tower and LLM."""
    kind = request.param
    thinker = tiny_thinker(kind)
    if kind == "qwen2_5_omni":  # the user's path: compose the saved checkpoint with itself
        folder = tmp_path_factory.mktemp("thinker") / kind
        thinker.save_pretrained(folder)
        tiny_tokenizer().save_pretrained(folder)
        model = compose(folder, folder, save=False).model
    else:  # compose refuses the 30B mixture-of-experts LLM as a backbone: the same modules, put together
        model = embedder_from_thinker(thinker, kind)
    return kind, thinker, model.eval()


@pytest.mark.parametrize("seconds", LENGTHS)
def test_encode_audio_equals_the_omni_model_end_to_end(omni, seconds):
    kind, thinker, model = omni
    wave = varying_speech(seconds)
    reference, reference_tokens = thinker_reference(thinker, kind, wave)
    other, _ = thinker_reference(thinker, kind, varying_speech(seconds, seed=1))
    ours = model.encode_audio(wave, sample_rate=SAMPLE_RATE)
    tokens = tower_tokens(model, wave)
    assert tokens.shape == reference_tokens.shape
    rel = (tokens - reference_tokens).norm(dim=-1) / reference_tokens.norm(dim=-1)
    spread = float(np.linalg.norm(reference.astype(np.float64) - other))
    share = float(np.linalg.norm(ours.astype(np.float64) - reference)) / spread
    gap = 1.0 - float(ours @ reference)
    print(
        f"{kind} {seconds:g} s: |ours - ref| / spread {share:.2e}, 1 - cos {gap:.2e}, max token rel {rel.max():.2e}"
    )
    assert float(rel.max()) <= TOKEN_TOLERANCE[kind]
    assert share <= SPREAD_TOLERANCE
    assert gap <= 1e-6  # 30 s windows gave 5e-5 to 2e-4 here (benchmarks/results/long_audio.json)


@pytest.mark.slow
@pytest.mark.parametrize("omni", ["qwen2_5_omni"], indirect=True)
def test_qwen25_windows_are_the_processors_300_s(omni):
    """Qwen2.5-Omni's processor truncates at 300 s: a window is exactly one processor call, and a longer
    file is the duration-weighted mean of its 300 s windows (nothing of it is dropped)."""
    kind, thinker, model = omni
    assert (model.config.window_seconds, model.config.log_mel_floor) == (300.0, "window")
    wave = varying_speech(330.0)
    reference, _ = thinker_reference(thinker, kind, wave)  # sees the first 300 s only
    first, rest = (
        model.encode_audio(wave[s:e], sample_rate=SAMPLE_RATE) for s, e in window_spans(len(wave), 300)
    )
    assert 1.0 - float(first @ reference) <= 1e-6
    pooled = 300 * first.astype(np.float64) + 30 * rest
    np.testing.assert_allclose(
        model.encode_audio(wave, sample_rate=SAMPLE_RATE), pooled / np.linalg.norm(pooled), atol=1e-6
    )


def test_window_policy_per_tower():
    """Whisper 30 s; Qwen2.5-Omni its processor's 300 s; Qwen3-Omni the whole file up to 600 s, floored
    once per file; each within the backbone's positions and cut at the tower's attention window."""
    qwen3 = embedder_from_thinker(tiny_thinker("qwen3_omni"), "qwen3_omni")
    assert (qwen3.config.window_seconds, qwen3.config.log_mel_floor) == (600.0, "file")
    policies = {kind: tiny_embedder(kind) for kind in ("whisper", "qwen2_5_omni", "qwen3_omni")}
    # the tiny Qwen2 backbone has 2048 positions: 81.9 s of Qwen2.5-Omni tokens, 157.5 s of Qwen3-Omni's
    assert {k: (m.config.window_seconds, m.config.log_mel_floor) for k, m in policies.items()} == {
        "whisper": (30.0, "window"),
        "qwen2_5_omni": (80.0, "window"),  # 2 s chunks
        "qwen3_omni": (152.0, "file"),  # 8 s attention windows
    }
    explicit = tiny_embedder("qwen3_omni", window_seconds=30.0, log_mel_floor="window")
    assert (explicit.config.window_seconds, explicit.config.log_mel_floor) == (30.0, "window")


@pytest.mark.parametrize("kind", ["whisper", "qwen2_5_omni", "qwen3_omni"])
def test_clips_up_to_30_s_keep_their_vectors(kind):
    """The policy changes nothing for clips up to 30 s: the same vectors as 30 s windows floored per window."""
    before = tiny_embedder(kind, window_seconds=30.0, log_mel_floor="window")
    now = tiny_embedder(kind)
    waves = [varying_speech(s, seed=i) for i, s in enumerate((0.5, 7.0, 29.9, 30.0))]
    np.testing.assert_array_equal(
        now.encode_audio(waves, sample_rate=SAMPLE_RATE), before.encode_audio(waves, sample_rate=SAMPLE_RATE)
    )


def test_saved_policy_round_trips_and_old_folders_keep_theirs(tmp_path):
    model = tiny_embedder()
    folder = model.save_pretrained(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert config["features"]["window_seconds"] == 152.0 and config["features"]["log_mel_floor"] == "file"
    loaded = AudioTextEmbedder.from_pretrained(folder)
    assert (loaded.config.window_seconds, loaded.config.log_mel_floor) == (152.0, "file")
    # written before the policy: 30 s windows floored per window, as they were embedded then
    del config["features"]["log_mel_floor"]
    config["features"]["window_seconds"] = 30.0
    assert EmbedderConfig.from_json(config).log_mel_floor == "window"
    # window_seconds null: the tower's own
    config["features"]["window_seconds"] = None
    rebuilt = AudioTextEmbedder(EmbedderConfig.from_json(config), model.tower, model.backbone, None)
    assert rebuilt.config.window_seconds == 152.0


def test_file_floor_is_one_floor_for_every_window():
    """A quiet window of a loud file is floored at the file's peak - 8, as in the file's whole log-mel."""
    model = tiny_embedder()
    wave = varying_speech(60.0)  # full level from 0 s, -30 dB from 25 s to 50 s
    quiet = wave[30 * SAMPLE_RATE : 45 * SAMPLE_RATE]
    extractor = model.feature_extractor
    file_peak = extractor.peak(wave)
    assert file_peak - extractor.peak(quiet) > 2.0  # its own floor would sit 2+ decades lower
    own, _ = extractor([quiet])
    floored, _ = extractor([quiet], peaks=[file_peak])
    whole, _ = extractor([wave])
    frames = slice(3000 + 2, 4500 - 2)  # away from the edges (reflect padding there vs the file's samples)
    torch.testing.assert_close(floored[0, :, 2:-2], whole[0, :, frames], rtol=0, atol=1e-5)
    assert float((own[0] - whole[0, :, 3000:4500]).abs().max()) > 0.1
