"""Build the real-audio corpus: curated Debian sounds first, FSDD recordings, synthetic sources as a supplement.

Layout of ``out_dir``::

    audio/<source>/<id>.wav        16 kHz mono PCM-16 clips (at most 10 s)
    packages/<package>.jsonl       one package's clips (reused while its label table is unchanged)
    synth/                         the synthetic supplement (``audiovec data synth``)
    train.jsonl                    training clips: real train sources + FSDD train speakers + synthetic
    heldout.jsonl                  held-out REAL sources only (whole packages, FSDD speakers, languages),
                                   captioned independently of the training templates: the dev benchmark
    synthetic_test.jsonl           the synthetic supplement's own test split (secondary)
    corpus.json                    config, counts per split / source / category, licences; written last

Whole sources are held out, never only wordings: a model is tuned against sounds it has never heard from
packages it has never seen. See docs/corpus.md.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from audiovec.data.manifest import read_manifest, write_manifest
from audiovec.demo.corpus import debian, words
from audiovec.demo.corpus.captions import heldout_captions, train_captions
from audiovec.demo.corpus.labels import Labelled, available_tables, load_table
from audiovec.demo.corpus.sounds import PackageJob, process_package
from audiovec.demo.synth import build_corpus as build_synth
from audiovec.demo.synth import fsdd
from audiovec.demo.synth.captions import with_article
from audiovec.demo.synth.common import rng_for
from audiovec.demo.synth.speech import ESpeak
from audiovec.errors import DataError

log = logging.getLogger(__name__)

CORPUS_VERSION = 2
CAPTIONS_PER_CLIP = 4
# Held out for the development benchmark: whole packages, FSDD speakers and klettres languages, chosen to
# cover the categories a user meets (instruments, vehicles, weapons, household, speech in other languages).
HELDOUT_PACKAGES = (
    "supertuxkart-data",
    "trigger-rally-data",
    "sonic-pi-samples",
    "openarena-data",
    "pokerth-data",
)
# at most this many held-out clips per voice (a klettres language, an FSDD speaker, a package's speaker):
# speech must not swamp the benchmark
HELDOUT_PER_VOICE = 20
HELDOUT_FSDD_SPEAKERS = ("george", "yweweler")
HELDOUT_LANGUAGES = (
    "Czech",
    "Dutch",
    "Hungarian",
)  # klettres-data folders (their eSpeak words stay in training)
# Corpus sizes: which packages each uses (train + held-out), and how many synthetic clips.
SMALL_PACKAGES = (  # ~90 MB of downloads: a little of every kind, two held-out packages among them
    "oxygen-sounds", "yaru-theme-sound", "kapman", "granatier", "chromium-bsu-data", "bzflag-data",
    "openttd-opensfx", "hydrogen-data", "lmms-common", "freedoom", "sonic-pi-samples", "pokerth-data",
)  # fmt: skip
SIZES: dict[str, dict[str, Any]] = {
    "small": {"packages": SMALL_PACKAGES, "synth": 60, "words": 64, "fsdd_per_speaker": 20},
    "default": {"packages": "all", "synth": 600, "words": 640, "fsdd_per_speaker": 60},
    "large": {"packages": "all", "synth": 1500, "words": 1600, "fsdd_per_speaker": 500},
}


@dataclass
class CorpusConfig:
    size: str = "default"
    seed: int = 0
    packages: list[str] = field(default_factory=list)  # the Debian packages used (resolved from size)
    heldout_packages: list[str] = field(default_factory=lambda: list(HELDOUT_PACKAGES))
    heldout_fsdd_speakers: list[str] = field(default_factory=lambda: list(HELDOUT_FSDD_SPEAKERS))
    heldout_languages: list[str] = field(default_factory=lambda: list(HELDOUT_LANGUAGES))
    heldout_per_voice: int = HELDOUT_PER_VOICE
    synth: int = 600
    words: int = 640  # eSpeak NG words in 32 languages (corpus/words.py)
    fsdd: bool = True
    fsdd_per_speaker: int = 100
    version: int = CORPUS_VERSION


def resolve_config(
    size: str = "default", seed: int = 0, packages: list[str] | None = None, **overrides: Any
) -> CorpusConfig:
    if size not in SIZES:
        raise DataError(f"corpus size {size!r}: choose one of {', '.join(SIZES)}")
    spec = SIZES[size]
    chosen = packages if packages is not None else spec["packages"]
    if chosen == "all":
        chosen = [p for p in debian.PACKAGES if p in available_tables()]
    for package in chosen:
        debian.check_allowed(package)
        if package not in available_tables():
            raise DataError(f"Debian package {package!r} has no label table (corpus/labels/{package}.yaml)")
    config = CorpusConfig(
        size=size,
        seed=seed,
        packages=list(chosen),
        synth=spec["synth"],
        fsdd_per_speaker=spec["fsdd_per_speaker"],
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def _split_of(row: dict, config: CorpusConfig) -> str:
    if row["source"] in config.heldout_packages or row.get("language") in config.heldout_languages:
        return "heldout"
    return "train"


def _labelled(row: dict) -> Labelled:
    rule = load_table(row["source"]).rules[row["rule"]]
    return Labelled(
        labels=tuple(row["labels"]), captions=rule.captions, kind=row["kind"], rule=row["rule"],
        language=row.get("language"), speaker=row.get("speaker"), says=row.get("says"),
    )  # fmt: skip


def _caption_rows(rows: list[dict], split: str, seed: int) -> list[dict]:
    out = []
    for row in rows:
        rng = rng_for(seed, "captions", split, row["id"])
        labelled = _labelled(row)
        captions = (
            heldout_captions(labelled, rng)
            if split == "heldout"
            else train_captions(labelled, rng, CAPTIONS_PER_CLIP)
        )
        if not captions:
            continue
        out.append({**row, "captions": captions, "split": split})
    return out


def debian_rows(
    config: CorpusConfig, out_dir: Path, cache_dir: Path, progress: bool = True
) -> tuple[list[dict], dict[str, str]]:
    """Rows of every usable package (downloading the missing ones) and each package's licence."""
    if not config.packages:
        return [], {}
    if not debian.have_apt() and not all(debian.cached_deb(p, cache_dir) for p in config.packages):
        log.warning(
            "apt-get/dpkg-deb not found: building the corpus without real Debian sounds "
            "(FSDD and synthetic sources only); real-sound retrieval will be much weaker"
        )
        return [], {}
    debs = debian.download(config.packages, cache_dir)
    jobs = [PackageJob(p, str(d), str(out_dir), str(cache_dir)) for p, d in debs.items()]
    jobs.sort(key=lambda j: -os.path.getsize(j.deb))  # the biggest first: they set the wall time
    rows: list[dict] = []
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="debian packages", unit="pkg", disable=not progress)
    with ProcessPoolExecutor(max_workers=min(2, len(jobs) or 1)) as pool:
        for job, package_rows in zip(jobs, pool.map(process_package, jobs)):
            rows += package_rows
            bar.set_postfix_str(f"{job.package}: {len(package_rows)} clips")
            bar.update(1)
    bar.close()
    licences = {p: load_table(p).licence for p in debs}
    return rows, licences


def fsdd_rows(config: CorpusConfig, out_dir: Path, fsdd_dir: Path | None) -> list[dict]:
    """One row per FSDD recording (``fsdd_per_speaker`` takes per speaker, spread over the digits)."""

    folder = fsdd_dir if fsdd_dir is not None else fsdd.default_dir()
    if not config.fsdd or folder is None:
        if config.fsdd:
            log.warning("FSDD recordings not found (set AUDIOVEC_FSDD): building the corpus without them")
        return []
    files = fsdd.index(folder)
    rows = []
    for (speaker, digit), paths in sorted(files.items()):
        per_digit = max(1, config.fsdd_per_speaker // 10)
        for path in paths[:per_digit]:
            rows.append({
                "id": f"fsdd:{path.stem}", "audio": str(path.resolve()), "source": "fsdd", "origin": path.name,
                "labels": ["counting", "man_speech", "speech"], "category": "speech", "kind": "real",
                "group": f"fsdd#{speaker}", "language": "English", "speaker": "man", "says": fsdd.DIGITS[digit],
                "accent": fsdd.SPEAKERS[speaker], "fsdd_speaker": speaker,
            })  # fmt: skip
    return rows


FSDD_CAPTIONS = (
    "a man with {accent} accent saying '{says}'",
    "a man says the number {says}",
    "a man counting: '{says}'",
    "the digit {says} spoken by a man",
)
FSDD_HELDOUT = ("a male voice pronounces the number '{says}'", "'{says}', said by a man with {accent} accent")


def _fsdd_captions(row: dict, split: str, seed: int) -> list[str]:

    rng = rng_for(seed, "captions", split, row["id"])
    frames = FSDD_HELDOUT if split == "heldout" else FSDD_CAPTIONS
    accent = with_article(row["accent"])
    chosen = [frames[int(i)] for i in rng.permutation(len(frames))[: (2 if split == "heldout" else 3)]]
    return [c.format(accent=accent, says=row["says"]) for c in chosen]


def synth_rows(config: CorpusConfig, out_dir: Path, progress: bool) -> tuple[list[dict], list[dict]]:
    """The synthetic supplement's train and test rows (its own generators; no FSDD: that is real)."""
    if config.synth <= 0:
        return [], []

    result = build_synth(
        out_dir / "synth", n=config.synth, seed=config.seed, use_fsdd=False, progress=progress
    )
    out = {}
    for split in ("train", "test"):
        rows = read_manifest(result[split])
        for row in rows:
            row.update(
                kind="synthetic", category=f"synthetic {row.get('source', 'other')}", id=f"synth:{row['id']}"
            )
        out[split] = rows
    return out["train"], out["test"]


def word_rows(config: CorpusConfig, out_dir: Path, progress: bool) -> list[dict]:
    """eSpeak NG words in many languages (training only: synthetic)."""
    if config.words <= 0:
        return []
    import soundfile as sf
    from tqdm.auto import tqdm

    folder = out_dir / "audio" / "words"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    specs = words.plan(config.words, rng_for(config.seed, "words"))
    with ESpeak() as engine:
        for i, spec in enumerate(tqdm(specs, desc="words", unit="clip", disable=not progress)):
            wave = words.render(spec, engine)
            audio = f"audio/words/{i:05d}.wav"
            sf.write(out_dir / audio, wave, 16_000, subtype="PCM_16")
            labelled = words.labelled(spec)
            captions = train_captions(
                labelled, rng_for(config.seed, "captions", "words", i), CAPTIONS_PER_CLIP
            )
            rows.append({
                "id": f"words:{i:05d}", "audio": audio, "source": "espeak-words", "labels": list(labelled.labels),
                "category": "synthetic speech", "kind": "synthetic", "group": f"words#{spec['language']}",
                "language": spec["language"], "speaker": spec["person"], "says": spec["says"],
                "duration": round(len(wave) / 16_000, 3), "captions": captions, "split": "train",
            })  # fmt: skip
    return rows


def build_corpus(
    out_dir: str | os.PathLike,
    size: str = "default",
    seed: int = 0,
    packages: list[str] | None = None,
    fsdd_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """Build (or reuse) the corpus; returns the manifest paths and counts (see the module docstring)."""
    config = resolve_config(size, seed, packages, **overrides)
    out = Path(out_dir)
    meta_path = out / "corpus.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("config") == asdict(config) and all(
            (out / f).is_file() for f in meta["manifests"].values()
        ):
            log.info("reusing the complete corpus in %s", out)
            return _summary(out, meta, reused=True)
    out.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()

    real, licences = debian_rows(config, out, cache, progress)
    by_split: dict[str, list[dict]] = {"train": [], "heldout": []}
    for split in by_split:
        by_split[split] = _caption_rows([r for r in real if _split_of(r, config) == split], split, seed)
    for row in fsdd_rows(config, out, Path(fsdd_dir) if fsdd_dir else None):
        split = "heldout" if row["fsdd_speaker"] in config.heldout_fsdd_speakers else "train"
        by_split[split].append({**row, "captions": _fsdd_captions(row, split, seed), "split": split})
    real_heldout = [r for r in by_split["heldout"] if r["kind"] == "real"]  # the benchmark is real only
    by_split["heldout"] = _cap_voices(real_heldout, config.heldout_per_voice, seed)
    synth_train, synth_test = synth_rows(config, out, progress)
    by_split["train"] += synth_train + word_rows(config, out, progress)
    manifests = {"train": "train.jsonl", "heldout": "heldout.jsonl", "synthetic_test": "synthetic_test.jsonl"}
    write_manifest(by_split["train"], out / manifests["train"])
    write_manifest(by_split["heldout"], out / manifests["heldout"])
    write_manifest(synth_test, out / manifests["synthetic_test"])
    meta = _metadata(config, by_split, synth_test, licences, manifests)
    meta_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return _summary(out, meta, reused=False)


def _cap_voices(rows: list[dict], per_voice: int, seed: int) -> list[dict]:
    """Each held-out voice (speaker, or language of klettres-data) gives at most ``per_voice`` clips (a
    fixed, seeded choice), so speech does not swamp the other categories."""
    by_voice: dict[str, list[dict]] = {}
    out = []
    for row in rows:
        voice = row.get("fsdd_speaker") or (row["language"] if row["source"] == "klettres-data" else None)
        if voice is None and row.get("category") == "speech":
            voice = f"{row['source']}:{row.get('speaker')}"
        if voice is None:
            out.append(row)
        else:
            by_voice.setdefault(voice, []).append(row)
    for voice, voice_rows in sorted(by_voice.items()):
        order = rng_for(seed, "heldout-cap", voice).permutation(len(voice_rows))
        out += [voice_rows[int(i)] for i in sorted(order[:per_voice])]
    return out


def default_cache_dir() -> Path:
    """Downloaded ``.deb`` files live here between builds (``$AUDIOVEC_CACHE`` or ``~/.cache/audiovec``)."""
    root = os.environ.get("AUDIOVEC_CACHE") or Path.home() / ".cache" / "audiovec"
    return Path(root) / "debian"


def _metadata(
    config: CorpusConfig,
    by_split: dict[str, list[dict]],
    synth_test: list[dict],
    licences: dict[str, str],
    manifests: dict[str, str],
) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    for split, rows in [*by_split.items(), ("synthetic_test", synth_test)]:
        counts[split] = {
            "total": len(rows),
            "hours": round(sum(float(r.get("duration") or 0) for r in rows) / 3600, 3),
            "by_kind": dict(Counter(r.get("kind", "?") for r in rows)),
            "by_category": dict(sorted(Counter(r.get("category", "?") for r in rows).items())),
            "by_source": dict(sorted(Counter(r.get("source", "?") for r in rows).items())),
        }
    train_captions_seen = {c.lower().rstrip(".") for r in by_split["train"] for c in r["captions"]}
    held = [c for r in by_split["heldout"] for c in r["captions"]]
    overlap = sum(c.lower().rstrip(".") in train_captions_seen for c in held)
    return {
        "name": "audiovec-real-sounds",
        "config": asdict(config),
        "counts": counts,
        "heldout_captions_also_in_train": round(overlap / max(1, len(held)), 4),
        "licences": {
            **licences,
            "fsdd": "CC BY-SA 4.0 (Free Spoken Digit Dataset)",
            "synthetic": "see synth/corpus.json",
        },
        "manifests": manifests,
    }


def _summary(out: Path, meta: dict[str, Any], reused: bool) -> dict[str, Any]:
    return {
        "out_dir": str(out), "reused": reused, "counts": meta["counts"], "corpus": str(out / "corpus.json"),
        **{split: str(out / name) for split, name in meta["manifests"].items()},
    }  # fmt: skip


__all__ = ["CorpusConfig", "SIZES", "build_corpus", "default_cache_dir", "resolve_config"]
