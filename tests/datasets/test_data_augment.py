"""data.augment: waveform transforms keep length and caption-relevant content, and a clip has fixed versions."""

from __future__ import annotations

import numpy as np
import pytest

from audiovec.audio import load_audio
from audiovec.data.augment import SAMPLE_RATE, AugmentSpec, add_noise, augment, colour, reverberate
from audiovec.data.datasets import ManifestDataset
from audiovec.data.fsdd import bundled_files as fsdd_files
from audiovec.errors import ConfigError
from audiovec.train.config import Recipe, from_dict, load_recipe, save_recipe
from audiovec.train.data import audio_dataset


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def _tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return 0.3 * np.sin(2 * np.pi * freq * t)


def _band_level(wave: np.ndarray, freq: float) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    freqs = np.fft.rfftfreq(wave.shape[0], d=1.0 / SAMPLE_RATE)
    return float(spectrum[np.argmin(np.abs(freqs - freq))])


@pytest.mark.parametrize("snr", [5.0, 20.0])
def test_noise_is_added_at_the_requested_snr(snr: float) -> None:
    wave = _tone(440.0)
    noisy = add_noise(wave, snr, np.random.default_rng(1))
    measured = 20 * np.log10(_rms(wave) / _rms(noisy - wave))
    assert noisy.shape == wave.shape
    assert measured == pytest.approx(snr, abs=0.05)


def test_reverb_keeps_length_and_level_and_decays_by_rt60() -> None:
    click = np.zeros(SAMPLE_RATE)
    click[0] = 1.0
    rt60 = 0.5
    wet = reverberate(click, rt60, np.random.default_rng(2))
    early = np.sum(wet[1 : SAMPLE_RATE // 10] ** 2)  # first 100 ms after the direct sound
    late = np.sum(wet[int(0.4 * SAMPLE_RATE) : int(0.5 * SAMPLE_RATE)] ** 2)
    assert wet.shape == click.shape
    assert _rms(wet) == pytest.approx(_rms(click), rel=1e-6)
    assert early > 100 * late  # -60 dB at rt60: 400-500 ms lies at least 20 dB under the first 100 ms
    assert np.all(wet[int(rt60 * SAMPLE_RATE) + 1 :] == pytest.approx(0.0, abs=1e-9))


def test_colour_cuts_one_end_of_the_spectrum() -> None:
    wave = _tone(60.0) + _tone(7950.0)
    for seed in range(8):
        out = colour(wave, np.random.default_rng(seed))
        low = _band_level(out, 60.0) / _band_level(wave, 60.0)
        high = _band_level(out, 7950.0) / _band_level(wave, 7950.0)
        assert max(low, high) / min(low, high) > 1.4  # >3 dB tilt toward one end


def test_augment_is_deterministic_and_bounded() -> None:
    wave = load_audio(fsdd_files()[0])
    spec = AugmentSpec(variants=3, noise_p=1.0, reverb_p=1.0, filter_p=1.0, gain_db=[20.0, 20.0])
    one = augment(wave, spec, np.random.default_rng(5))
    again = augment(wave, spec, np.random.default_rng(5))
    other = augment(wave, spec, np.random.default_rng(6))
    assert one.dtype == np.float32 and one.shape == wave.shape
    assert np.array_equal(one, again) and not np.array_equal(one, other)
    assert np.max(np.abs(one)) == pytest.approx(1.0, abs=1e-6)  # +20 dB is scaled back, not clipped
    assert np.array_equal(augment(np.zeros(100), spec, np.random.default_rng(0)), np.zeros(100))


def test_a_clip_has_a_fixed_set_of_versions_and_version_0_is_the_clip() -> None:
    path = fsdd_files()[0]
    rows = [{"id": "a", "audio": str(path), "captions": ["a man saying zero"]}]
    dataset = ManifestDataset(rows, seed=0, augment=AugmentSpec(variants=3))
    clean = load_audio(path)
    seen: dict[int, np.ndarray] = {}
    for epoch in range(40):
        wave = dataset[(0, epoch)]["waveform"]
        version = dataset.version(0, epoch)
        if version in seen:
            assert np.array_equal(wave, seen[version])
        seen[version] = wave
    assert sorted(seen) == [0, 1, 2]
    assert np.array_equal(seen[0], clean)
    assert not np.array_equal(seen[1], clean) and not np.array_equal(seen[1], seen[2])
    off = ManifestDataset(rows, seed=0, augment=AugmentSpec(variants=1))
    assert all(np.array_equal(off[(0, e)]["waveform"], clean) for e in range(5))


def test_recipe_augment_applies_to_training_clips_only(tmp_path) -> None:
    recipe = from_dict(
        Recipe,
        {"model": {"tiny": {}}, "data": {"train": ["x.jsonl"], "augment": {"variants": 2, "noise_p": 1.0}}},
    ).validate()
    rows = [{"id": "a", "audio": str(fsdd_files()[0]), "captions": ["a man saying zero"]}]
    train = audio_dataset(recipe, [], seed=0, rows=rows, augment=True)
    dev = audio_dataset(recipe, [], seed=0, rows=rows)
    assert train.augment is not None and train.augment.noise_p == 1.0
    assert dev.augment is None
    save_recipe(recipe, tmp_path / "r.yaml")
    assert load_recipe(tmp_path / "r.yaml").data.augment == recipe.data.augment


@pytest.mark.parametrize(
    ("augment", "message"),
    [({"noise_p": 1.5}, "noise_p"), ({"snr_db": [30, 5]}, "snr_db"), ({"variants": -1}, "variants")],
)
def test_bad_augment_settings_are_named(augment: dict, message: str) -> None:
    data = {"model": {"tiny": {}}, "data": {"train": ["x.jsonl"], "augment": augment}}
    with pytest.raises(ConfigError, match=f"data.augment.{message}"):
        from_dict(Recipe, data).validate()
