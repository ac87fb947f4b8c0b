"""The curated label tables, checked offline against the list of every sound file in the allowed Debian
packages (tests/data/debian_sound_files.tsv.gz: package, path inside the package, duration)."""

from __future__ import annotations

import gzip
import re
from collections import defaultdict
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from audiovec.demo.corpus import debian
from audiovec.demo.corpus.captions import SAYS_HELDOUT, SAYS_TRAIN, heldout_captions, train_captions
from audiovec.demo.corpus.labels import available_tables, load_table, parse_table, vocabulary
from audiovec.errors import DataError

LISTING = Path(__file__).parents[1] / "data" / "debian_sound_files.tsv.gz"


def _files() -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    with gzip.open(LISTING, "rt", encoding="utf-8") as f:
        for line in f:
            package, path, _duration = line.rstrip("\n").split("\t")
            out[package].append(path)
    return out


FILES = _files()
TABLES = available_tables()


def _bare_name(path: str) -> str:
    return " ".join(re.findall(r"[a-z]+", PurePosixPath(path).stem.lower()))


def test_every_package_with_sounds_has_a_table_and_only_allowed_packages_do() -> None:
    assert set(TABLES) <= set(debian.PACKAGES)
    assert {p for p, files in FILES.items() if files} - {"timgm6mb-soundfont", "opl3-soundfont"} <= set(
        TABLES
    )


@pytest.mark.parametrize("package", TABLES)
def test_every_file_is_kept_with_labels_or_dropped_with_a_reason(package: str) -> None:
    table = load_table(package)
    vocab = vocabulary()
    unmatched = [p for p in FILES[package] if table.rule_for(p) is None]
    assert not unmatched, f"{package}: no rule for {unmatched[:5]}"
    for path in FILES[package]:
        _, rule = table.rule_for(path)
        if rule.drop is not None:
            assert rule.drop.strip(), f"{package}: drop rule {rule.match} needs a reason"
            continue
        labelled = table.label(path)
        assert labelled is not None and labelled.labels and all(label in vocab for label in labelled.labels)
        assert labelled.captions or labelled.says, f"{package}: {path} would have no caption of its own"


@pytest.mark.parametrize("package", TABLES)
def test_no_caption_is_a_file_name(package: str) -> None:
    table = load_table(package)
    names = {_bare_name(p) for p in FILES[package]}
    for rule in table.rules:
        for caption in rule.captions:
            assert not re.search(r"_|\.(wav|ogg|oga|flac)\b|/", caption), f"{package}: {caption!r}"
            assert caption.lower() not in names, f"{package}: caption {caption!r} is a file name"


def test_written_captions_are_varied_true_to_the_clip_and_never_file_names() -> None:
    table = load_table("klettres-data")
    path = next(p for p in FILES["klettres-data"] if "/cs/alpha/" in p)
    labelled = table.label(path)
    rng = np.random.default_rng(0)
    train = train_captions(labelled, rng, n=4)
    assert len(train) == 4 and len({c.lower().rstrip(".") for c in train}) == 4
    held = heldout_captions(labelled, rng)
    assert any(f"'{labelled.says}'" in c and "Czech" in c for c in held)
    for caption in train + held:
        assert _bare_name(path) != caption.lower() and len(caption.split()) >= 3
    assert not set(SAYS_TRAIN) & set(SAYS_HELDOUT)  # held-out speech frames never occur in training


def test_a_table_naming_an_unknown_label_is_refused() -> None:
    bad = {"package": "x", "rules": [{"match": "*.wav", "labels": ["not_a_label"], "captions": ["a sound"]}]}
    with pytest.raises(DataError, match="not in vocabulary"):
        parse_table(bad, "labels/x.yaml")
    with pytest.raises(DataError, match="needs labels"):
        parse_table({"rules": [{"match": "*.wav"}]}, "labels/x.yaml")
