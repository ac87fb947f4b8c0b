"""The English-word supplement: distinct words from the text model's vocabulary, spoken, captioned with the word."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import soundfile as sf

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

from speech_supplement import ENGLISH_VOICES, english_words, manifest_with_words  # noqa: E402


def test_words_are_whole_distinct_vocabulary_entries() -> None:
    words = english_words(500)
    assert len(set(words)) == 500 and words[:3] == ["the", "and", "was"]
    assert all(w.isalpha() and w.islower() and len(w) >= 3 for w in words)


def test_manifest_adds_one_spoken_clip_per_word_after_the_corpus_rows(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    row = {"id": "real:1", "audio": "audio/dog.wav", "captions": ["A dog barks."], "source": "pkg"}
    (corpus / "train.jsonl").write_text(json.dumps(row) + "\n")

    manifest = manifest_with_words(corpus, tmp_path / "work", 5, seed=0)

    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert rows[0] == {**row, "audio": str(corpus / "audio/dog.wav")}
    extra = rows[1:]
    assert [r["says"] for r in extra] == english_words(5)
    assert [r["voice"] for r in extra] == [*ENGLISH_VOICES, ENGLISH_VOICES[0]]
    for r in extra:
        wave, rate = sf.read(r["audio"])
        assert rate == 16_000 and len(wave) >= 16_000 and abs(wave).max() > 0.1  # speech, not silence
        quoted = {q for c in r["captions"] for q in re.findall(r"(?:^|\s)'([^']+)'", c)}
        assert quoted <= {r["says"]} and len(r["captions"]) == 4  # no caption names another word
        assert r["group"] == f"english-words#{r['says'][0]}"
    assert sum(any(f"'{r['says']}'" in c for c in r["captions"]) for r in extra) >= 3
