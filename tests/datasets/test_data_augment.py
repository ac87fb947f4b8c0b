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
from audiovec.train.data import audio_dataset, make_loader


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


def test_noise_has_one_of_the_three_colours() -> None:
    wave = _tone(440.0, seconds=4.0)
    freqs = np.fft.rfftfreq(wave.shape[0], d=1.0 / SAMPLE_RATE)
    bands = np.geomspace(100.0, 6000.0, 12)
    slopes = set()
    for seed in range(12):
        noise = add_noise(wave, 10.0, np.random.default_rng(seed)) - wave
        power = np.abs(np.fft.rfft(noise)) ** 2
        level = [power[(freqs >= lo) & (freqs < hi)].mean() for lo, hi in zip(bands[:-1], bands[1:])]
        centre = np.sqrt(bands[:-1] * bands[1:])
        slope = np.polyfit(np.log10(centre), np.log10(level), 1)[0]  # power ~ f**slope
        nearest = min((0.0, -1.0, -2.0), key=lambda s: abs(s - slope))
        assert abs(slope - nearest) < 0.2, slope
        slopes.add(nearest)
        assert power[freqs < 20.0].sum() < 1e-9 * power.sum()  # nothing below 20 Hz
    assert slopes == {0.0, -1.0, -2.0}


def test_reverb_keeps_length_and_level_and_decays_by_rt60() -> None:
    click = np.zeros(2 * SAMPLE_RATE)
    click[0] = 1.0
    for rt60 in (0.3, 0.8):
        wet = reverberate(click, rt60, np.random.default_rng(2))
        assert wet.shape == click.shape
        assert _rms(wet) == pytest.approx(_rms(click), rel=1e-6)
        # Schroeder's backward integration of the reverberant tail: -5 to -25 dB takes a third of rt60
        decay = np.cumsum(wet[1:][::-1] ** 2)[::-1]
        db = 10 * np.log10(decay / decay[0] + 1e-300)
        t5, t25 = (np.argmax(db <= -level) / SAMPLE_RATE for level in (5.0, 25.0))
        assert 3 * (t25 - t5) == pytest.approx(rt60, rel=0.1)
        assert np.all(wet[int(rt60 * SAMPLE_RATE) + 1 :] == pytest.approx(0.0, abs=1e-9))


def test_colour_cuts_one_end_of_the_spectrum_and_passes_the_middle() -> None:
    wave = _tone(60.0) + _tone(1000.0) + _tone(7950.0)
    cuts = set()
    for seed in range(12):
        out = colour(wave, np.random.default_rng(seed))
        low, mid, high = (_band_level(out, f) / _band_level(wave, f) for f in (60.0, 1000.0, 7950.0))
        assert mid == pytest.approx(1.0, abs=0.15)  # cutoffs lie at 80-500 Hz or 1.5-7 kHz
        cut = "low" if low < high else "high"
        assert max(low, high) < 1.0 + 1e-3 and min(low, high) < 0.75  # one end loses at least 2.5 dB
        cuts.add(cut)
    assert cuts == {"low", "high"}


def test_colour_does_not_wrap_the_end_of_a_clip_onto_its_start() -> None:
    click = np.zeros(8000)
    click[-1] = 1.0
    for seed in range(6):
        out = colour(click, np.random.default_rng(seed))
        assert np.sum(out[:4000] ** 2) < 1e-6 * np.sum(out**2)


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


def test_clips_at_the_same_position_of_different_datasets_are_augmented_apart() -> None:
    files = fsdd_files()
    spec = AugmentSpec(variants=2, noise_p=1.0)
    one = ManifestDataset([{"id": "a", "audio": str(files[0]), "captions": ["x"]}], augment=spec)
    two = ManifestDataset([{"id": "b", "audio": str(files[0]), "captions": ["x"]}], augment=spec)
    waves = [(d[(0, e)]["waveform"], d.version(0, e)) for d in (one, two) for e in range(20)]
    first = next(w for w, v in waves[:20] if v == 1)
    second = next(w for w, v in waves[20:] if v == 1)
    assert not np.array_equal(first, second)  # same file, same index, other id: other noise


def test_a_clip_drawn_twice_in_an_epoch_can_get_two_versions() -> None:
    rows = [{"id": "a", "audio": str(fsdd_files()[0]), "captions": ["x"]}]
    dataset = ManifestDataset(rows, augment=AugmentSpec(variants=3))
    assert len({dataset.version(0, 0, position) for position in range(30)}) == 3


def test_make_loader_keeps_dev_clips_as_recorded() -> None:
    recipe = from_dict(
        Recipe,
        {
            "model": {"tiny": {}},
            "data": {
                "train": [{"fsdd": {"n": 8}}], "dev": {"fsdd": {"n": 4, "split": "dev"}},
                "balance": "sqrt", "augment": {"variants": 3},
            },
            "train": {"batch_size": 4},
        },
    ).validate()  # fmt: skip
    train = make_loader(recipe, None, 80, rank=0, world=1).dataset
    dev = make_loader(recipe, None, 80, rank=0, world=1, dev=True).dataset
    assert all(part.augment is not None for part in train.parts)
    assert dev.augment is None


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
    [
        ({"noise_p": 1.5}, "noise_p"),
        ({"snr_db": [30, 5]}, "snr_db"),
        ({"gain_db": 3}, "gain_db"),
        ({"variants": -1}, "variants"),
        ({"variants": 2.5}, "variants"),
    ],
)
def test_bad_augment_settings_are_named(augment: dict, message: str) -> None:
    data = {"model": {"tiny": {}}, "data": {"train": ["x.jsonl"], "augment": augment}}
    with pytest.raises(ConfigError, match=f"data.augment.{message}"):
        from_dict(Recipe, data).validate()
