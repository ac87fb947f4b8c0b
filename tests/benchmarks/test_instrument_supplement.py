"""The instrument supplement's manifests: the corpus as built, and the same plus clips whose soundfonts alternate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

from instrument_supplement import manifests, variant_name  # noqa: E402


def test_extra_clips_alternate_soundfonts_and_keep_the_corpus_rows(tmp_path: Path) -> None:
    pytest.importorskip("tinysoundfont")
    from audiovec.demo.synth import instruments

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    row = {"id": "real:1", "audio": "audio/dog.wav", "captions": ["A dog barks."], "source": "pkg"}
    (corpus / "train.jsonl").write_text(json.dumps(row) + "\n")
    timgm6mb = instruments.soundfont_path().read_bytes()
    # the same bytes under both names: the test checks which name each clip was given, not the timbre
    built = manifests(corpus, tmp_path / "work", 2, "both", {"TimGM6mb": timgm6mb, "OPL-3 FM": timgm6mb})

    assert list(built) == ["as built", variant_name(2, "both")] == ["as built", "+ 2 per instrument (both)"]
    as_built = [json.loads(line) for line in built["as built"].read_text().splitlines()]
    assert as_built == [{**row, "audio": str(corpus / "audio/dog.wav")}]
    rows = [json.loads(line) for line in built["+ 2 per instrument (both)"].read_text().splitlines()]
    assert rows[0] == as_built[0] and len(rows) == 1 + 2 * len(instruments.INSTRUMENTS)
    extra = rows[1:]
    assert [r["soundfont"] for r in extra[:4]] == ["TimGM6mb", "OPL-3 FM"] * 2
    assert all(
        Path(r["audio"]).is_file() and r["captions"] and r["source"] == "instrument-extra" for r in extra
    )
    assert len({r["id"] for r in extra}) == len(extra)
