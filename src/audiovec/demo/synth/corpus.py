"""Build the synthetic audio-text corpus: plan clips per source and split, render, write WAVs + manifests.

Layout of ``out_dir``: ``audio/<id>.wav`` (16 kHz mono PCM-16), ``train.jsonl``, ``test.jsonl`` and
``corpus.json`` (config, counts, held-out combinations, licences). ``corpus.json`` is written last, so its
presence with the same config means a complete corpus, which a re-run reuses as is.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from audiovec.data.manifest import write_manifest
from audiovec.demo.synth import events, fsdd, instruments, scenes, speech
from audiovec.demo.synth.captions import holdout, make_captions
from audiovec.demo.synth.common import SAMPLE_RATE, Clip, rng_for
from audiovec.errors import DataError

log = logging.getLogger(__name__)

CORPUS_VERSION = 1
DEFAULT_N = 600
TEST_FRACTION = 0.2
HOLDOUT_FRACTION = 0.25
CAPTIONS_PER_CLIP = 3
# template family -> (share of n, module with combos/make_spec/render)
FAMILIES = {
    "speech_en": (0.15, speech),
    "speech_foreign": (0.08, speech),
    "instrument": (0.19, instruments),
    "drums": (0.04, instruments),
    "event": (0.22, events),
    "fsdd": (0.12, fsdd),
    "overlay": (0.10, scenes),
    "sequence": (0.10, scenes),
}
LICENCES = {
    "speech": "Generated with eSpeak NG (GPL-3.0-or-later; library and voices from the espeakng-loader package); "
    "sentences written for audiovec.",
    "instrument": "Rendered from the TimGM6mb General MIDI soundfont by Tim Brechbill (GPL-2.0, as packaged in "
    "Debian's timgm6mb-soundfont; bundled by pretty_midi) with tinysoundfont (MIT).",
    "event": "Synthesised by audiovec with numpy/scipy (Apache-2.0).",
    "fsdd": "Free Spoken Digit Dataset, Jakobovski/free-spoken-digit-dataset (CC BY-SA 4.0): attribute the "
    "dataset and share derived audio under the same licence.",
    "scene": "Mixtures of the speech, instrument and event clips above; their terms apply.",
}


@dataclass
class Item:
    """One planned clip."""

    id: str
    family: str
    split: str
    spec: dict


def _counts(n: int, families: list[str]) -> dict[str, tuple[int, int]]:
    """(train, test) clip counts per family; every family gets >= 1 of each once n allows it."""
    shares = np.array([FAMILIES[f][0] for f in families])
    totals = np.floor(shares / shares.sum() * n).astype(int)
    for i in np.argsort(-shares)[: n - int(totals.sum())]:
        totals[i] += 1
    out = {}
    for family, total in zip(families, totals, strict=True):
        test = int(round(total * TEST_FRACTION))
        if total >= 2:
            test = min(max(test, 1), total - 1)
        out[family] = (int(total) - test, test)
    return out


def _make_spec(family: str, combo: tuple, split: str, rng: np.random.Generator, fsdd_files: dict) -> dict:
    if family == "fsdd":
        return fsdd.make_spec(combo, split, rng, fsdd_files)
    return FAMILIES[family][1].make_spec(family, combo, rng)


def plan(n: int, seed: int, fsdd_files: dict | None) -> tuple[list[Item], dict[str, list]]:
    """Every clip's id, split and spec, plus the held-out combinations per family (test split only)."""
    families = [f for f in FAMILIES if f != "fsdd" or fsdd_files]
    items: list[Item] = []
    held_out: dict[str, list] = {}
    for family, (n_train, n_test) in _counts(n, families).items():
        combos = FAMILIES[family][1].combos(family)
        if family == "fsdd":
            combos = [c for c in combos if (c[0], c[1]) in fsdd_files]  # type: ignore[operator]
        held = holdout(combos, HOLDOUT_FRACTION, rng_for(seed, "holdout", family))
        held_out[family] = sorted(held, key=repr)
        pools = {"train": [c for c in combos if c not in held], "test": sorted(held, key=repr) or combos}
        for split, count in (("train", n_train), ("test", n_test)):
            pool = pools[split]
            order = rng_for(seed, "order", family, split).permutation(len(pool))
            for i in range(count):
                combo = pool[int(order[i % len(pool)])]
                spec = _make_spec(family, combo, split, rng_for(seed, family, split, i), fsdd_files or {})
                items.append(Item(f"{family}-{split}-{i:04d}", family, split, spec))
    return items, held_out


def _render(item: Item, engine: speech.ESpeak) -> Clip:
    module = FAMILIES[item.family][1]
    if module in (speech, scenes):
        return module.render(item.spec, engine)
    return module.render(item.spec)


def _write_wav(path: Path, wave: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".wav", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, np.clip(wave, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _row(item_id: str, clip: Clip, split: str, seed: int) -> dict:
    captions = make_captions(
        clip.family, clip.attrs, split, rng_for(seed, "captions", item_id), CAPTIONS_PER_CLIP
    )
    return {
        "id": item_id,
        "audio": f"audio/{item_id}.wav",
        "captions": captions,
        "labels": clip.labels,
        "source": clip.source,
        "duration": round(len(clip.audio) / SAMPLE_RATE, 3),
    }


def _reusable(out_dir: Path, config: dict) -> dict | None:
    try:
        meta = json.loads((out_dir / "corpus.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("config") != config:
        return None
    for split in ("train", "test"):
        manifest = out_dir / f"{split}.jsonl"
        if not manifest.is_file():
            return None
        for line in manifest.read_text(encoding="utf-8").splitlines():
            if line.strip() and not (out_dir / json.loads(line)["audio"]).is_file():
                return None
    return meta


def _summary(out_dir: Path, meta: dict, reused: bool) -> dict:
    return {
        "out_dir": str(out_dir),
        "train": str(out_dir / "train.jsonl"),
        "test": str(out_dir / "test.jsonl"),
        "corpus": str(out_dir / "corpus.json"),
        "counts": meta["counts"],
        "reused": reused,
    }


def build_corpus(
    out_dir: str | os.PathLike,
    n: int = DEFAULT_N,
    seed: int = 0,
    fsdd_dir: str | os.PathLike | None = None,
    progress: bool = True,
    use_fsdd: bool = True,
) -> dict:
    """Build (or reuse) the corpus in ``out_dir``; returns manifest paths and counts.

    ``n`` synthetic/FSDD clips are split about 80/20 into train/test (real Debian sounds are the
    real-sound corpus's: ``audiovec data sounds``); ``use_fsdd=False`` leaves the FSDD recordings out (the real-sound
    corpus adds them itself, split by speaker). The same arguments always give the same bytes.
    """
    if n < 1:
        raise DataError(f"corpus size n must be >= 1, got {n}")
    out_dir = Path(out_dir)
    folder = Path(fsdd_dir) if fsdd_dir is not None else fsdd.default_dir()
    fsdd_files = fsdd.index(folder) if folder is not None and use_fsdd else None
    if fsdd_files is None and use_fsdd:
        log.warning("FSDD recordings not found (set AUDIOVEC_FSDD); building the corpus without them")
    config = {
        "version": CORPUS_VERSION,
        "n": n,
        "seed": seed,
        "fsdd": fsdd_files is not None,
    }
    meta = _reusable(out_dir, config)
    if meta is not None:
        log.info("reusing the complete corpus in %s", out_dir)
        return _summary(out_dir, meta, reused=True)

    items, held_out = plan(n, seed, fsdd_files)
    audio_dir = out_dir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "corpus.json").unlink(missing_ok=True)
    rows: dict[str, list[dict]] = {"train": [], "test": []}
    with speech.ESpeak() as engine:
        for item in tqdm(items, desc="synth corpus", unit="clip", disable=not progress):
            clip = _render(item, engine)
            _write_wav(audio_dir / f"{item.id}.wav", clip.audio)
            rows[item.split].append(_row(item.id, clip, item.split, seed))
    _drop_train_wording_from_test(rows)
    _remove_stale(audio_dir, {r["id"] for split in rows.values() for r in split})
    for split, split_rows in rows.items():
        write_manifest(split_rows, out_dir / f"{split}.jsonl")
    meta = _metadata(config, rows, held_out)
    (out_dir / "corpus.json").write_text(
        json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return _summary(out_dir, meta, reused=False)


def _drop_train_wording_from_test(rows: dict[str, list[dict]]) -> None:
    """Belt and braces: a test caption identical to any training caption is removed."""
    seen = {c for row in rows["train"] for c in row["captions"]}
    for row in rows["test"]:
        kept = [c for c in row["captions"] if c not in seen]
        if not kept:
            raise DataError(f"test clip {row['id']} has only captions that also occur in training")
        row["captions"] = kept


def _remove_stale(audio_dir: Path, keep: set[str]) -> None:
    for path in audio_dir.glob("*.wav"):
        if path.stem not in keep:
            path.unlink()


def _metadata(config: dict, rows: dict[str, list[dict]], held_out: dict[str, list]) -> dict:
    counts: dict[str, dict[str, int]] = {}
    for split, split_rows in rows.items():
        counts[split] = {}
        for row in split_rows:
            counts[split][row["source"]] = counts[split].get(row["source"], 0) + 1
        counts[split]["total"] = len(split_rows)
    hours = sum(r["duration"] for split in rows.values() for r in split) / 3600
    return {
        "name": "audiovec-synth",
        "config": config,
        "counts": counts,
        "sample_rate": SAMPLE_RATE,
        "hours": round(hours, 4),
        "instrument_renderer": instruments.renderer(),
        "held_out_combinations": {k: [list(c) for c in v] for k, v in held_out.items()},
        "licences": LICENCES,
        "manifests": {"train": "train.jsonl", "test": "test.jsonl"},
    }
