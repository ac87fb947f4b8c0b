"""Real recordings: the Free Spoken Digit Dataset (CC BY-SA 4.0), captioned with speaker accent and digits.

Clips string 1–3 recordings of one speaker together (FSDD files are 0.1–2.3 s). The official split is kept:
takes 0–4 of each speaker and digit only ever reach the test split, takes 5–49 only training.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from audiovec.audio import load_audio
from audiovec.data.fsdd import BUNDLED_DIR, bundled_files, default_dir  # noqa: F401  (re-exported)
from audiovec.demo.synth.common import Clip, fit_length, normalize, pick, seconds, trim_silence
from audiovec.errors import DataError

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# speaker -> accent, from the dataset README (all speakers are men speaking English)
SPEAKERS = {
    "jackson": "American",
    "theo": "American",
    "nicolas": "French",
    "yweweler": "German",
    "lucas": "German",
    "george": "Greek",
}
TEST_TAKES = range(0, 5)
LICENCE = "CC BY-SA 4.0 — Free Spoken Digit Dataset (Jakobovski/free-spoken-digit-dataset)"


def index(folder: str | os.PathLike) -> dict[tuple[str, int], list[Path]]:
    """(speaker, digit) -> recordings sorted by take, for the speakers this module knows."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"FSDD folder {folder} does not exist; set AUDIOVEC_FSDD to its recordings/ folder")
    out: dict[tuple[str, int], list[Path]] = {}
    for path in folder.glob("*.wav"):
        parts = path.stem.split("_")
        if len(parts) == 3 and parts[0].isdigit() and parts[1] in SPEAKERS and parts[2].isdigit():
            out.setdefault((parts[1], int(parts[0])), []).append(path)
    if not out:
        raise DataError(f"FSDD folder {folder} has no '{{digit}}_{{speaker}}_{{take}}.wav' recordings")
    for paths in out.values():
        paths.sort(key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    return out


def combos(kind: str = "fsdd") -> list[tuple[str, int]]:
    """Held-out rule pairs: (speaker, first digit)."""
    return [(s, d) for s in SPEAKERS for d in range(10)]


def make_spec(combo: tuple[str, int], split: str, rng: np.random.Generator, files: dict) -> dict:
    """Pick 1–3 digits and one take of each from the split's takes."""
    speaker, first = combo
    digits = [first] + [int(d) for d in rng.integers(0, 10, int(rng.choice([0, 1, 2], p=[0.5, 0.25, 0.25])))]
    chosen = []
    for d in digits:
        takes = [
            p
            for p in files.get((speaker, d), [])
            if (int(p.stem.rsplit("_", 1)[1]) in TEST_TAKES) == (split == "test")
        ]
        if not takes:
            raise DataError(f"FSDD has no {split} recording of speaker {speaker!r} saying {d}")
        chosen.append(str(pick(rng, takes)))
    return {"speaker": speaker, "digits": digits, "files": chosen, "gap": float(rng.uniform(0.15, 0.4))}


def render(spec: dict) -> Clip:
    """Join the chosen recordings with short pauses (16 kHz, at least 1 s)."""
    gap = np.zeros(seconds(spec["gap"]), np.float32)
    parts: list[np.ndarray] = []
    for path in spec["files"]:
        parts += [trim_silence(load_audio(path), threshold=0.05), gap]
    wave = np.concatenate([gap[: seconds(0.1)], *parts])
    wave = fit_length(normalize(wave, -2.0))
    accent = SPEAKERS[spec["speaker"]]
    words = [DIGITS[d] for d in spec["digits"]]
    attrs = {"accent": accent, "digits": words, "speaker": spec["speaker"]}
    labels = ["speech", "fsdd", "man", "English", f"accent:{accent}", f"speaker:{spec['speaker']}"]
    labels += [f"digit:{w}" for w in words]
    return Clip(wave, "fsdd", "fsdd", attrs, labels)
