"""The synthetic corpus: layout, determinism, held-out wording and combinations, and real signal content."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiovec.audio import load_audio
from audiovec.data.manifest import read_manifest
from audiovec.demo.synth import build_corpus, events, fsdd, instruments, scenes, speech
from audiovec.demo.synth.captions import TEMPLATES, holdout, make_captions
from audiovec.demo.synth.common import SAMPLE_RATE
from audiovec.demo.synth.corpus import CAPTIONS_PER_CLIP, plan

N = 40
SOURCES = {"speech", "instrument", "event", "fsdd", "scene"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    build_corpus(out, n=N, seed=3, progress=False)
    return out


@pytest.fixture(scope="module")
def engine():
    with speech.ESpeak() as eng:
        yield eng


def _digest(folder: Path) -> dict[str, str]:
    files = sorted([*folder.glob("audio/*.wav"), *folder.glob("*.jsonl")])
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _spectrum(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    power = np.abs(np.fft.rfft(wave)) ** 2
    return np.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE), power


def _band_fraction(wave: np.ndarray, lo: float, hi: float) -> float:
    freqs, power = _spectrum(wave)
    return float(power[(freqs >= lo) & (freqs < hi)].sum() / power.sum())


def _rms(wave: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(wave))))


# --- layout ----------------------------------------------------------------------------------------------


def test_layout_counts_and_every_file_decodes(corpus: Path) -> None:
    meta = json.loads((corpus / "corpus.json").read_text())
    train, test = read_manifest(corpus / "train.jsonl"), read_manifest(corpus / "test.jsonl")
    assert len(train) + len(test) == N
    assert meta["counts"]["train"]["total"] == len(train) and meta["counts"]["test"]["total"] == len(test)
    assert 0.1 * N <= len(test) <= 0.3 * N
    assert {r["source"] for r in train} == SOURCES and {r["source"] for r in test} == SOURCES
    assert "CC BY-SA 4.0" in meta["licences"]["fsdd"]
    for row in train + test:
        assert set(row) == {"id", "audio", "captions", "labels", "source", "duration"}
        wave = load_audio(row["audio"])
        assert 1.0 <= len(wave) / SAMPLE_RATE <= 10.0
        assert abs(len(wave) / SAMPLE_RATE - row["duration"]) < 1e-3
        assert _rms(wave) > 1e-3, f"{row['id']} is silent"
        assert np.max(np.abs(wave)) <= 1.0
        assert row["captions"] and all(c.strip() for c in row["captions"]) and row["labels"]


def test_captions_read_naturally(corpus: Path) -> None:
    rows = read_manifest(corpus / "train.jsonl") + read_manifest(corpus / "test.jsonl")
    for caption in (c for r in rows for c in r["captions"]):
        assert caption == caption.strip() and "  " not in caption and "{" not in caption, caption
        assert not re.search(r"\ba [aeiou]", caption), caption
        assert not re.search(r"\ban [bcdfgjklmnpqrstvwxyz]", caption), caption


# --- held-out wording and combinations -----------------------------------------------------------------


def test_no_caption_string_is_shared_between_splits(corpus: Path) -> None:
    train = {c for r in read_manifest(corpus / "train.jsonl") for c in r["captions"]}
    test_rows = read_manifest(corpus / "test.jsonl")
    assert not train & {c for r in test_rows for c in r["captions"]}
    # the builder's safety filter never had to drop anything: the templates alone keep splits apart
    for row in test_rows:
        expected = min(CAPTIONS_PER_CLIP, len(TEMPLATES[_family(row["id"])][1]))
        assert len(row["captions"]) == expected, row


def _family(row_id: str) -> str:
    return row_id.rsplit("-", 2)[0]


def test_train_and_test_templates_never_produce_the_same_string(engine) -> None:
    rng = np.random.default_rng(0)
    clips = [speech.render(speech.make_spec(k, c, rng), engine) for k in ("speech_en", "speech_foreign")
             for c in speech.combos(k)[:6]]  # fmt: skip
    clips += [
        instruments.render(instruments.make_spec("instrument", c, rng))
        for c in instruments.combos("instrument")[::9]
    ]
    clips += [
        instruments.render(instruments.make_spec("drums", c, rng)) for c in instruments.combos("drums")[::4]
    ]
    clips += [events.render(events.make_spec("event", c, rng)) for c in events.combos()[::5]]
    clips += [
        scenes.render(scenes.make_spec(k, c, rng), engine)
        for k in ("overlay", "sequence")
        for c in scenes.combos(k)[::60]
    ]
    families = {c.family for c in clips}
    assert families == {"speech_en", "speech_foreign", "instrument", "drums", "event", "overlay", "sequence"}
    for clip in clips:
        train = set(make_captions(clip.family, clip.attrs, "train", rng, k=10))
        test = set(make_captions(clip.family, clip.attrs, "test", rng, k=10))
        assert train and test and not train & test


def test_held_out_combinations_only_in_test(corpus: Path) -> None:
    def pairs(split: str, source: str, a: str, b: str) -> set[tuple[str, str]]:
        out = set()
        for row in read_manifest(corpus / f"{split}.jsonl"):
            if row["source"] == source and _family(row["id"]) in ("instrument", "speech_en"):
                labels = row["labels"]
                first = next((x for x in labels if x.startswith(a)), None)
                second = next((x for x in labels if x.startswith(b)), None) if b else labels[1]
                if first and second:
                    out.add((first, second))
        return out

    for source, a, b in (("instrument", "register:", ""), ("speech", "sentence:", "")):
        test = pairs("test", source, a, b)
        assert test and not test & pairs("train", source, a, b)


def test_fsdd_keeps_the_official_split() -> None:
    items, held = plan(200, seed=1, fsdd_files=fsdd.index(fsdd.default_dir()))
    takes = {"train": set(), "test": set()}
    for item in items:
        if item.family == "fsdd":
            takes[item.split] |= {int(Path(f).stem.rsplit("_", 1)[1]) for f in item.spec["files"]}
    assert takes["test"] and takes["test"] <= set(range(5)) and min(takes["train"]) >= 5
    assert held["instrument"] and held["speech_en"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=36), st.integers(0, 99))
def test_holdout_keeps_every_value_in_training(combos, seed) -> None:
    held = holdout(combos, 0.3, np.random.default_rng(seed))
    train = set(combos) - held
    assert held <= set(combos)
    for pos in range(2):
        assert {c[pos] for c in combos} == {c[pos] for c in train}


# --- determinism and reuse -----------------------------------------------------------------------------


def test_same_seed_same_bytes_and_reuse(corpus: Path, tmp_path: Path) -> None:
    again = build_corpus(tmp_path / "a", n=N, seed=3, progress=False)
    assert not again["reused"]
    assert _digest(tmp_path / "a") == _digest(corpus)
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*.wav")}
    reused = build_corpus(tmp_path / "a", n=N, seed=3, progress=False)
    assert reused["reused"] and stamp == {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*.wav")}
    other = build_corpus(tmp_path / "b", n=N, seed=4, progress=False)
    assert not other["reused"] and _digest(tmp_path / "b") != _digest(corpus)


def test_espeak_output_depends_only_on_its_arguments(engine) -> None:
    first = engine.say("the train leaves at nine", "en+f2", 170, 50, 50)
    engine.say("something else entirely", "de+m3", 250, 30, 70)
    with speech.ESpeak() as fresh:
        assert np.array_equal(fresh.say("the train leaves at nine", "en+f2", 170, 50, 50), first)


# --- signal content per source -------------------------------------------------------------------------


def test_speech_has_energy_in_speech_bands_and_gender_changes_pitch(engine) -> None:
    rng = np.random.default_rng(0)
    waves = {}
    for person in ("man", "woman"):
        spec = speech.make_spec("speech_en", ("please close the door", person), rng)
        spec.update(style="plain", variant="m1" if person == "man" else "f2", rate=170, pitch=50)
        waves[person] = speech.render(spec, engine).audio
        assert _band_fraction(waves[person], 80, 4000) > 0.85
        frames = waves[person][: len(waves[person]) // 400 * 400].reshape(-1, 400)
        energy = np.sqrt(np.mean(frames**2, axis=1))
        assert energy.max() > 5 * np.median(energy[energy > 0]) or energy.min() < 0.05 * energy.max()
    # fundamental: the strongest autocorrelation lag in the 70-400 Hz range
    f0 = {}
    for person, wave in waves.items():
        ac = np.correlate(wave[:8000], wave[:8000], "full")[7999:]
        lag = np.argmax(ac[40:230]) + 40
        f0[person] = SAMPLE_RATE / lag
    assert f0["woman"] > 1.3 * f0["man"]


def test_siren_sweeps_and_far_sounds_are_duller() -> None:
    wave = events.render(
        events.make_spec("event", ("siren", "wailing", False), np.random.default_rng(1))
    ).audio
    frames = wave[: len(wave) // 1600 * 1600].reshape(-1, 1600)
    peaks = [np.argmax(np.abs(np.fft.rfft(f * np.hanning(1600)))) * SAMPLE_RATE / 1600 for f in frames]
    assert min(peaks) > 450 and max(peaks) < 1900 and max(peaks) - min(peaks) > 400
    near = events.render(
        events.make_spec("event", ("applause", "large", False), np.random.default_rng(2))
    ).audio
    far = events.render(
        events.make_spec("event", ("applause", "large", True), np.random.default_rng(2))
    ).audio
    assert _band_fraction(far, 2000, 8000) < 0.5 * _band_fraction(near, 2000, 8000)
    assert _rms(far) < _rms(near)


def test_rain_and_knocks_have_the_right_texture() -> None:
    light = events.render(events.make_spec("event", ("rain", "light"), np.random.default_rng(3))).audio
    heavy = events.render(events.make_spec("event", ("rain", "heavy"), np.random.default_rng(3))).audio

    # heavy rain is a dense, steady hiss; light rain is sparse drops over a quiet bed
    def steadiness(wave):
        frames = wave[: len(wave) // 320 * 320].reshape(-1, 320)
        energy = np.sqrt(np.mean(frames**2, axis=1))
        return np.median(energy) / energy.max()

    assert steadiness(heavy) > 2 * steadiness(light)
    assert _band_fraction(heavy, 1000, 8000) > 0.7
    knock = events.render(events.make_spec("event", ("knock", "rapid"), np.random.default_rng(4))).audio
    assert _band_fraction(knock, 0, 1000) > 0.8


def test_instruments_follow_register_and_render_with_the_soundfont() -> None:
    assert instruments.renderer() == "tinysoundfont" and instruments.soundfont_path().is_file()
    rng = np.random.default_rng(5)

    def centroid(name, register):
        spec = instruments.make_spec("instrument", (name, register), rng)
        spec.update(texture="melody", dynamics="loud")
        wave = instruments.render(spec).audio
        assert _rms(wave) > 0.01
        freqs, power = _spectrum(wave)
        return float((freqs * power).sum() / power.sum())

    assert centroid("cello", "low") < centroid("cello", "high")
    assert centroid("tuba", "low") < centroid("flute", "high")
    drums = instruments.render(instruments.make_spec("drums", ("rock beat", "fast"), rng)).audio
    assert _rms(drums) > 0.01


def test_instruments_render_with_the_soundfont_given() -> None:
    spec = instruments.make_spec("instrument", ("piano", "mid-range"), np.random.default_rng(2))
    default = instruments.render(spec).audio
    assert np.array_equal(
        instruments.render(spec, soundfont=instruments.soundfont_path().read_bytes()).audio, default
    )
    with pytest.raises(Exception):  # noqa: B017 - the bytes reach the synthesiser (which refuses these)
        instruments.render(spec, soundfont=b"not a soundfont")


def test_additive_fallback_plays_the_requested_pitch() -> None:
    wave = instruments._additive([(0.0, 1.0, 0, 69, 100)], "sustained", 1.2, seed=0)
    freqs, power = _spectrum(wave)
    assert abs(freqs[np.argmax(power)] - 440.0) < 3.0


def test_fsdd_clip_is_real_speech_from_the_named_speaker() -> None:
    files = fsdd.index(fsdd.default_dir())
    spec = fsdd.make_spec(("lucas", 7), "test", np.random.default_rng(0), files)
    assert Path(spec["files"][0]).name.startswith("7_lucas_")
    clip = fsdd.render(spec)
    assert clip.attrs["accent"] == "German" and clip.attrs["digits"][0] == "seven"
    assert len(clip.audio) >= SAMPLE_RATE and _band_fraction(clip.audio, 80, 4000) > 0.8
    assert any(
        "German accent" in c for c in make_captions("fsdd", clip.attrs, "train", np.random.default_rng(0))
    )


def test_overlay_keeps_the_background_under_the_speech(engine) -> None:
    spec = scenes.make_spec("overlay", ("speech:woman", "rain:heavy"), np.random.default_rng(6))
    spec["parts"][0]["spec"].update(style="plain", variant="f3")  # voiced speech, not a whisper
    wave = scenes.render(spec, engine).audio
    frames = wave[: len(wave) // 320 * 320].reshape(-1, 320)
    energy = np.sqrt(np.mean(frames**2, axis=1))
    assert energy.min() > 0.02 * energy.max()  # rain fills the pauses between words
    assert _band_fraction(wave, 80, 1000) > 0.1 and _band_fraction(wave, 2000, 8000) > 0.1


def test_cli_builds_a_corpus(tmp_path: Path, capsys) -> None:
    from audiovec.cli import main

    assert main(["data", "synth", "--out", str(tmp_path), "--n", "12", "--seed", "1", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["counts"]["train"]["total"] + printed["counts"]["test"]["total"] == 12
    assert len(read_manifest(tmp_path / "train.jsonl")) == printed["counts"]["train"]["total"]
