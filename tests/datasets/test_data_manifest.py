"""Manifests, the contamination guard and text-pair files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiovec.cli import main
from audiovec.data.exclude import Exclusion, apply_exclusions, row_keys, write_id_list
from audiovec.data.manifest import manifest_stats, read_manifest, write_manifest
from audiovec.data.prepare.nli_pairs import nli_to_pairs
from audiovec.data.text_pairs import TextPairDataset, collate_text_pairs, read_text_pairs, write_text_pairs
from audiovec.errors import DataError


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_relative_audio_resolves_against_manifest_folder_not_cwd(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "data" / "clips").mkdir(parents=True)
    manifest = _write_lines(
        tmp_path / "data" / "m.jsonl",
        [json.dumps({"audio": "clips/a.wav", "captions": ["a dog"], "extra": {"k": 1}}), ""],
    )
    monkeypatch.chdir(tmp_path)
    (row,) = read_manifest(manifest)
    assert row["audio"] == str((tmp_path / "data" / "clips" / "a.wav").resolve())
    assert row["id"] == "clips/a.wav"  # id defaults to the path as written
    assert row["extra"] == {"k": 1}  # unknown keys kept


def test_write_makes_paths_relative_and_round_trips(tmp_path: Path) -> None:
    clip = tmp_path / "out" / "audio" / "x.wav"
    rows = [
        {
            "audio": str(clip),
            "captions": ["rain", "rain on a roof"],
            "labels": ["Rain"],
            "source": "t",
            "n": 3,
        },
        {"id": "custom", "audio": "/elsewhere/y.flac", "captions": ["wind"]},
    ]
    out = tmp_path / "out" / "m.jsonl"
    assert write_manifest(rows, out) == 2
    raw = [json.loads(line) for line in out.read_text().splitlines()]
    assert raw[0]["audio"] == "audio/x.wav"  # inside the manifest folder: relative
    assert raw[0]["id"] == raw[0]["audio"]
    assert raw[1]["audio"] == "/elsewhere/y.flac"  # outside: kept absolute
    back = read_manifest(out)
    assert back[0]["audio"] == str(clip.resolve())
    assert back[0]["n"] == 3 and back[0]["labels"] == ["Rain"]
    assert back[1]["id"] == "custom"
    assert not list(out.parent.glob(".*.tmp"))  # atomic write leaves no temp file


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "invalid JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"captions": ["x"]}', "'audio'"),
        ('{"audio": "a.wav"}', "'captions'"),
        ('{"audio": "a.wav", "captions": []}', "'captions'"),
        ('{"audio": "a.wav", "captions": "just a string"}', "'captions'"),
        ('{"audio": "a.wav", "captions": ["ok", ""]}', "caption"),
        ('{"audio": "a.wav", "captions": ["ok"], "labels": "dog"}', "'labels'"),
        ('{"audio": "a.wav", "captions": ["ok"], "id": 7}', "'id'"),
        ('{"audio": "a.wav", "captions": ["ok"], "duration": -1}', "'duration'"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    manifest = _write_lines(tmp_path / "bad.jsonl", ['{"audio": "ok.wav", "captions": ["fine"]}', "", line])
    with pytest.raises(DataError) as info:
        read_manifest(manifest)
    assert f"{manifest}:3" in str(info.value)
    assert message in str(info.value)


def test_duplicate_ids_are_reported(tmp_path: Path) -> None:
    row = json.dumps({"id": "same", "audio": "a.wav", "captions": ["x"]})
    manifest = _write_lines(tmp_path / "dup.jsonl", [row, row])
    with pytest.raises(DataError, match="'same' appears twice"):
        read_manifest(manifest)
    assert len(read_manifest(manifest, unique_ids=False)) == 2


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")


_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20).filter(str.strip)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    captions=st.lists(_text, min_size=1, max_size=4),
    extra=st.dictionaries(st.sampled_from(["a", "b", "youtube_id"]), st.integers() | _text, max_size=3),
)
def test_round_trip_preserves_everything(tmp_path: Path, captions: list[str], extra: dict) -> None:
    rows = [{"id": "r", "audio": str(tmp_path / "a b" / "c.wav"), "captions": captions, **extra}]
    out = tmp_path / "m.jsonl"
    write_manifest(rows, out)
    (back,) = read_manifest(out)
    assert back == {**rows[0], "audio": str((tmp_path / "a b" / "c.wav").resolve())}


def test_stats_counts_and_missing_files(tmp_path: Path, fsdd_clips: list[Path]) -> None:
    rows = [
        {
            "id": "a",
            "audio": str(fsdd_clips[0]),
            "captions": ["x", "y"],
            "labels": ["L"],
            "source": "s1",
            "duration": 1.5,
        },
        {"id": "b", "audio": str(tmp_path / "gone.wav"), "captions": ["x"], "source": "s2", "duration": 2.5},
    ]
    stats = manifest_stats(rows)
    assert stats["rows"] == 2 and stats["captions"] == 3 and stats["unique_captions"] == 2
    assert stats["sources"] == {"s1": 1, "s2": 1}
    assert stats["missing_audio"] == 1
    assert stats["mean_seconds"] == 2.0 and stats["labelled_rows"] == 1


def test_stats_cli_exit_code_reflects_missing_audio(tmp_path: Path, fsdd_clips: list[Path], capsys) -> None:
    good = tmp_path / "good.jsonl"
    write_manifest([{"audio": str(fsdd_clips[0]), "captions": ["zero"]}], good)
    assert main(["data", "stats", str(good), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 1
    bad = tmp_path / "bad.jsonl"
    write_manifest([{"audio": str(tmp_path / "missing.wav"), "captions": ["zero"]}], bad)
    assert main(["data", "stats", str(bad)]) == 1
    _write_lines(tmp_path / "broken.jsonl", ['{"audio": 3}'])
    assert main(["data", "stats", str(tmp_path / "broken.jsonl")]) == 1
    assert "broken.jsonl:1" in capsys.readouterr().err


# --- contamination guard -------------------------------------------------------------------------------


def _row(id_: str, audio: str, **extra) -> dict:
    return {"id": id_, "audio": audio, "captions": ["c"], **extra}


def test_row_keys_include_origin_ids() -> None:
    keys = row_keys(_row("audiocaps:abc_30", "/d/Yabc_30.wav", youtube_id="abc", freesound_id=""))
    assert keys == {"audiocaps:abc_30", "Yabc_30", "yt:abc"}


def test_exclusion_by_manifest_matches_shared_youtube_and_freesound_ids(tmp_path: Path) -> None:
    evaluation = tmp_path / "eval.jsonl"
    write_manifest(
        [
            _row("audiocaps:vid1_30", str(tmp_path / "vid1_30.wav"), youtube_id="vid1"),
            _row("clotho:bird.wav", str(tmp_path / "bird.wav"), freesound_id="1234"),
        ],
        evaluation,
    )
    train = [
        _row("audioset_strong:vid1_30000", "/a/vid1_30000.wav", youtube_id="vid1"),  # same video
        _row("fsd50k:1234", "/a/1234.wav", freesound_id="1234"),  # same Freesound sound
        _row("fsd50k:999", "/a/999.wav", freesound_id="999"),
        _row("other", "/b/bird.wav"),  # same file name as an evaluation clip
    ]
    kept, dropped = apply_exclusions(train, [evaluation])
    assert [r["id"] for r in kept] == ["fsd50k:999"]
    assert len(dropped) == 3


def test_exclusion_by_id_list_with_comments(tmp_path: Path) -> None:
    ids = _write_lines(tmp_path / "ids.txt", ["# MTEB test ids", "keep#not-a-comment", "clip-7", "yt:zz", ""])
    rows = [_row("clip-7", "/x/a.wav"), _row("b", "/x/b.wav", youtube_id="zz"), _row("c", "/x/c.wav")]
    kept, _ = Exclusion.from_files([ids]).filter(rows)
    assert [r["id"] for r in kept] == ["c"]
    assert "keep#not-a-comment" in Exclusion.from_files([ids]).keys


def test_id_list_round_trip(tmp_path: Path) -> None:
    rows = [_row("a", "/x/one.wav", youtube_id="v"), _row("b", "/x/two.wav")]
    write_id_list(rows, tmp_path / "ids.txt")
    kept, dropped = apply_exclusions(rows + [_row("c", "/x/three.wav")], [tmp_path / "ids.txt"])
    assert [r["id"] for r in kept] == ["c"] and len(dropped) == 2


def test_exclusion_by_content_hash_catches_renamed_copy(tmp_path: Path, fsdd_clips: list[Path]) -> None:
    evaluation = tmp_path / "eval.jsonl"
    write_manifest([_row("e", str(fsdd_clips[0]))], evaluation)
    copy = tmp_path / "renamed_copy.wav"
    shutil.copy(fsdd_clips[0], copy)
    rows = [_row("t1", str(copy)), _row("t2", str(fsdd_clips[1]))]
    assert len(apply_exclusions(rows, [evaluation])[0]) == 2  # names differ: keys alone miss it
    kept, dropped = apply_exclusions(rows, [evaluation], by_hash=True)
    assert [r["id"] for r in kept] == ["t2"] and [r["id"] for r in dropped] == ["t1"]


def test_exclusion_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="exclusion file not found"):
        Exclusion.from_files([tmp_path / "missing.txt"])
    _write_lines(tmp_path / "mixed.txt", ["plain-id", '{"audio": "x"}'])
    with pytest.raises(DataError, match=r"mixed.txt:2"):
        Exclusion.from_files([tmp_path / "mixed.txt"])


def test_exclude_cli(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    write_manifest([_row("a", "/x/a.wav"), _row("b", "/x/b.wav")], manifest)
    ids = _write_lines(tmp_path / "ids.txt", ["a"])
    out = tmp_path / "kept.jsonl"
    assert main(["data", "exclude", str(manifest), "--exclude", str(ids), "--out", str(out)]) == 0
    assert [r["id"] for r in read_manifest(out)] == ["b"]


# --- text pairs ----------------------------------------------------------------------------------------


def test_text_pairs_read_write_and_collate(tmp_path: Path) -> None:
    rows = [
        {"anchor": "a dog barks", "positive": "barking", "negative": "silence", "src": "x"},
        {"anchor": "rain falls", "positive": "rainfall"},
    ]
    path = tmp_path / "pairs.jsonl"
    assert write_text_pairs(rows, path) == 2
    assert read_text_pairs(path) == rows
    batch = collate_text_pairs([TextPairDataset(path)[i] for i in range(2)])
    assert batch["anchors"] == ["a dog barks", "rain falls"]
    assert batch["negatives"] == ["silence", None]
    assert batch["has_negative"].tolist() == [True, False]


def test_text_pairs_validation(tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "p.jsonl", ['{"anchor": "a", "positive": "b"}', '{"anchor": "a", "positive": ""}']
    )
    with pytest.raises(DataError, match=r"p.jsonl:2: 'positive'"):
        read_text_pairs(path)
    with pytest.raises(DataError, match="'negative'"):
        TextPairDataset([{"anchor": "a", "positive": "b", "negative": 3}])


def test_nli_to_pairs_from_snli_format(tmp_path: Path) -> None:
    lines = [
        {"sentence1": "A man plays guitar.", "sentence2": "Someone makes music.", "gold_label": "entailment"},
        {
            "sentence1": "A man plays guitar.",
            "sentence2": "The man is asleep.",
            "gold_label": "contradiction",
        },
        {"sentence1": "A man plays guitar.", "sentence2": "He is on stage.", "gold_label": "neutral"},
        {"sentence1": "A man plays guitar.", "sentence2": "A person plays.", "gold_label": "entailment"},
        {"sentence1": "Dogs run.", "sentence2": "Animals move.", "gold_label": "entailment"},
        {"sentence1": "Dogs run.", "sentence2": "Cats sleep.", "gold_label": "-"},
    ]
    src = _write_lines(tmp_path / "snli_1.0_train.jsonl", [json.dumps(x) for x in lines])
    pairs = nli_to_pairs([src])
    assert [(p["anchor"], p["positive"], p.get("negative")) for p in pairs] == [
        ("A man plays guitar.", "Someone makes music.", "The man is asleep."),
        ("A man plays guitar.", "A person plays.", "The man is asleep."),
        ("Dogs run.", "Animals move.", None),
    ]
    assert len(nli_to_pairs([src], require_negative=True)) == 2
    out = tmp_path / "pairs.jsonl"
    assert main(["data", "nli", str(src), "--out", str(out)]) == 0
    assert len(read_text_pairs(out)) == 3
