"""Turn one Debian package's labelled sound files into 16 kHz mono clips and manifest rows.

A package is processed in one pass over its ``.deb`` (see :mod:`audiovec.demo.corpus.debian`): each file its label
table keeps is decoded, trimmed of leading/trailing silence, cut into at most ``crops`` clips of at most
10 s (long ambient loops give several), peak-normalised and written as 16-bit WAV. The package's rows are
written last, so a folder with its rows file is complete and is reused by the next build.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiovec.audio import SAMPLE_RATE, load_audio
from audiovec.demo.corpus.debian import iter_members
from audiovec.demo.corpus.labels import Labelled, load_table
from audiovec.demo.synth.common import fade, normalize, trim_silence
from audiovec.errors import AudiovecError

log = logging.getLogger(__name__)

MIN_SECONDS = 0.3
MAX_SECONDS = 10.0
ROWS_VERSION = 1


@dataclass(frozen=True)
class PackageJob:
    package: str
    deb: str
    out_dir: str  # the corpus folder
    tmp_dir: str | None = None


def crops(wave: np.ndarray, n: int, max_seconds: float = MAX_SECONDS) -> list[np.ndarray]:
    """At most ``n`` evenly spaced, non-overlapping pieces of at most ``max_seconds`` (the whole wave when
    it is short enough). Deterministic: the same file always gives the same clips."""
    size = int(max_seconds * SAMPLE_RATE)
    if len(wave) <= size:
        return [wave]
    count = max(1, min(n, len(wave) // size))
    starts = np.linspace(0, len(wave) - size, count).astype(int) if count > 1 else [0]
    return [fade(wave[s : s + size], 30.0) for s in starts]


def clip_waves(data: bytes, labelled: Labelled) -> list[np.ndarray]:
    """The clips one sound file gives (none when it is undecodable, silent or too short)."""
    wave = load_audio(data)
    if wave.size == 0 or float(np.max(np.abs(wave))) < 1e-3:
        return []
    wave = trim_silence(wave, threshold=0.01)
    if len(wave) < MIN_SECONDS * SAMPLE_RATE:
        return []
    return [normalize(piece, -2.0) for piece in crops(wave, labelled.crops)]


def table_digest(package: str) -> str:
    """A fingerprint of the label table and vocabulary, so an edited table rebuilds its package."""
    from importlib import resources

    root = resources.files("audiovec.demo.corpus")
    parts = [
        root.joinpath("labels", f"{package}.yaml").read_bytes(),
        root.joinpath("vocabulary.yaml").read_bytes(),
    ]
    extra = root.joinpath("vocabulary.d")
    if extra.is_dir():
        parts += [
            p.read_bytes() for p in sorted(extra.iterdir(), key=lambda p: p.name) if p.name.endswith(".yaml")
        ]
    return hashlib.sha256(b"\0".join(parts) + str(ROWS_VERSION).encode()).hexdigest()[:16]


def rows_file(out_dir: str | Path, package: str) -> Path:
    return Path(out_dir) / "packages" / f"{package}.jsonl"


def load_rows(out_dir: str | Path, package: str) -> list[dict] | None:
    """A package's rows from an earlier build with the same label table, or None."""
    path = rows_file(out_dir, package)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    head = json.loads(lines[0]) if lines else {}
    if head.get("digest") != table_digest(package):
        return None
    rows = [json.loads(line) for line in lines[1:] if line.strip()]
    if not all((Path(out_dir) / r["audio"]).is_file() for r in rows):
        return None
    return rows


def process_package(job: PackageJob) -> list[dict]:
    """Write the clips of one package under ``out_dir/audio/<package>/`` and return their rows (without
    captions: the corpus builder writes those, per split)."""
    import soundfile as sf

    cached = load_rows(job.out_dir, job.package)
    if cached is not None:
        return cached
    table = load_table(job.package)
    folder = Path(job.out_dir) / "audio" / job.package
    shutil.rmtree(folder, ignore_errors=True)  # clips of an older table
    folder.mkdir(parents=True)
    rows: list[dict] = []
    for member in iter_members(job.package, job.deb, job.tmp_dir):
        labelled = table.label(member.path)
        if labelled is None:
            continue
        try:
            waves = clip_waves(member.data, labelled)
        except AudiovecError as exc:
            log.debug("skipping %s:%s: %s", job.package, member.path, exc)
            continue
        for k, wave in enumerate(waves):
            name = hashlib.sha1(f"{member.path}#{k}".encode()).hexdigest()[:12]
            audio = f"audio/{job.package}/{name}.wav"
            sf.write(Path(job.out_dir) / audio, np.clip(wave, -1, 1), SAMPLE_RATE, subtype="PCM_16")
            rows.append({
                "id": f"{job.package}:{name}", "audio": audio, "source": job.package, "origin": member.path,
                "crop": k, "labels": list(labelled.labels), "category": labelled.category, "kind": labelled.kind,
                "group": f"{job.package}#{labelled.rule}", "rule": labelled.rule, "language": labelled.language,
                "speaker": labelled.speaker, "says": labelled.says, "duration": round(len(wave) / SAMPLE_RATE, 3),
            })  # fmt: skip
    path = rows_file(job.out_dir, job.package)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps({"package": job.package, "digest": table_digest(job.package)}) + "\n")
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return rows
