"""Optional real sound effects and voices from a fixed allow-list of Debian game/desktop data packages.

Only behind ``--debian``: the packages are fetched with ``apt-get download`` (nothing is installed), unpacked
with ``dpkg-deb -x`` into a cache folder, and every short WAV/OGG/FLAC inside becomes a clip whose caption
is written from its path ("explosion big" from ``sounds/explosion_big_2.ogg``). Other Debian packages are
deliberately left alone: they are kept for independent evaluation.
"""

from __future__ import annotations

import logging
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiovec.audio import load_audio
from audiovec.data.synth.common import Clip, fit_length, normalize, trim_silence
from audiovec.errors import AudiovecError, DataError

log = logging.getLogger(__name__)

PACKAGES = (
    "megaglest-data",
    "freedroidrpg-data",
    "oxygen-sounds",
    "0ad-data",
    "openttd-opensfx",
    "warzone2100-data",
    "pingus-data",
    "xmoto-data",
)
AUDIO_SUFFIXES = {".wav", ".ogg", ".flac"}
# path words that say nothing about the sound
NOISE_WORDS = {
    "usr", "share", "games", "data", "sound", "sounds", "sfx", "snd", "audio", "wav", "ogg", "flac", "oxygen",
    "sys", "stereo", "mono", "the", "of", "and", "fx", "effects", "effect", "sample", "samples", "misc",
    "generic", "common", "default", "new", "old", "tmp", "final", "core", "base", "mod", "mods", "public",
}  # fmt: skip
MIN_SECONDS, MAX_SECONDS = 0.3, 10.0


@dataclass(frozen=True)
class DebianSound:
    """One sound file found in an unpacked package."""

    path: Path
    package: str
    folder: str  # path of its folder inside the package, for the held-out rule
    desc: str


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise DataError(f"--debian needs {cmd[0]!r} (Debian/Ubuntu only): {exc}") from exc
    except subprocess.CalledProcessError as exc:
        raise DataError(f"{' '.join(cmd)} failed in {cwd}: {exc.stderr.strip()[-500:]}") from exc


def fetch(package: str, cache_dir: Path) -> Path:
    """Download (never install) and unpack ``package`` under ``cache_dir``; returns the unpacked root."""
    if package not in PACKAGES:
        raise DataError(f"Debian package {package!r} is not on the allow-list {PACKAGES}")
    root = cache_dir / "unpacked" / package
    if (root / ".complete").exists():
        return root
    debs = cache_dir / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        _run(["apt-get", "download", package], debs)
        found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise DataError(f"apt-get download {package} produced no .deb in {debs}")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    _run(["dpkg-deb", "-x", str(found[-1]), str(root)], cache_dir)
    (root / ".complete").write_text(found[-1].name)
    return root


def describe(relative: str) -> str | None:
    """A caption phrase from a file's path inside its package, or None when the path says nothing."""
    parts = Path(relative).with_suffix("").parts
    words_of = [
        [w.lower() for w in re.findall(r"[A-Z]{2,}(?![a-z])|[A-Z]?[a-z]+", re.sub(r"[_\-.]+", " ", p))]
        for p in parts
    ]
    stem = [w for w in words_of[-1] if w not in NOISE_WORDS and len(w) > 1]
    for folder in reversed(words_of[:-1]):  # a short stem borrows words from its folders
        if len(stem) >= 2:
            break
        stem = [w for w in folder if w not in NOISE_WORDS and len(w) > 1 and w not in stem] + stem
    return " ".join(stem[:6]) if stem else None


def _split_cat(cat: Path, out_dir: Path) -> list[Path]:
    """Extract the RIFF/WAV samples of an OpenTTD ``.cat`` sound archive (named by their stored names)."""
    blob, out = cat.read_bytes(), []
    out_dir.mkdir(parents=True, exist_ok=True)
    for match in re.finditer(rb"RIFF", blob):
        start = match.start()
        size = struct.unpack("<I", blob[start + 4 : start + 8])[0] + 8
        name_len = blob[start - 1] if start else 0
        name = blob[start - 1 - name_len : start - 1].split(b"\0")[0].decode("latin-1", "ignore").strip()
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or f"sample_{len(out)}"
        target = out_dir / (Path(name).stem + ".wav")
        target.write_bytes(blob[start : start + size])
        out.append(target)
    return out


def collect(
    cache_dir: str | Path, packages: tuple[str, ...] = PACKAGES, per_package: int = 600
) -> list[DebianSound]:
    """Fetch, unpack and list usable sounds (at most ``per_package`` per package, chosen by path order)."""
    cache_dir = Path(cache_dir)
    sounds: list[DebianSound] = []
    for package in packages:
        try:
            root = fetch(package, cache_dir)
        except DataError as exc:
            log.warning("skipping Debian package %s: %s", package, exc)
            continue
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        for cat in sorted(root.rglob("*.cat")):
            files += _split_cat(cat, cache_dir / "extracted" / package / cat.stem)
        found = []
        for path in files:
            rel = str(path.relative_to(root) if path.is_relative_to(root) else path.relative_to(cache_dir))
            desc = describe(rel)
            if desc:
                found.append(DebianSound(path, package, str(Path(rel).parent), desc))
        if len(found) > per_package:
            keep = np.linspace(0, len(found) - 1, per_package).astype(int)
            found = [found[i] for i in keep]
        log.info("Debian package %s: %d usable sounds", package, len(found))
        sounds += found
    return sounds


def render(sound: DebianSound) -> Clip | None:
    """Decode one sound to a 1–10 s clip; None when it cannot be decoded or is too short/silent."""
    try:
        wave = load_audio(sound.path)
    except AudiovecError as exc:
        log.debug("skipping %s: %s", sound.path, exc)
        return None
    wave = trim_silence(wave, threshold=0.02)
    if len(wave) < MIN_SECONDS * 16_000 or float(np.max(np.abs(wave), initial=0.0)) < 1e-3:
        return None
    wave = fit_length(normalize(wave, -2.0), max_s=MAX_SECONDS)
    labels = ["debian", f"package:{sound.package}"] + sound.desc.split()
    return Clip(wave, "debian", "debian", {"desc": sound.desc, "package": sound.package}, labels)
