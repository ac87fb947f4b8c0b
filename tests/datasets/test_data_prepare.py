"""Preparers read tiny fixture trees laid out exactly like each dataset's official distribution."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from audiovec.audio import load_audio
from audiovec.cli import main
from audiovec.data.manifest import read_manifest
from audiovec.data.prepare import prepare_dataset, preparer
from audiovec.data.prepare.audioset_strong import event_captions
from audiovec.data.prepare.common import humanize_label, label_captions
from audiovec.errors import DataError


def _clip(path: Path, source: Path | None = None, seconds: float = 0.5, freq: float = 440.0) -> Path:
    """A real audio file: a copied FSDD recording, or a tone (FLAC when the suffix says so)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if source is not None:
        data, rate = sf.read(source, dtype="float32")
    else:
        rate = 16_000
        t = np.arange(int(seconds * rate)) / rate
        data = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    sf.write(path, data, rate)
    return path


def _csv(path: Path, header: list[str] | None, rows: list[list[str]], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def _by_id(rows: list[dict]) -> dict[str, dict]:
    return {row["id"]: row for row in rows}


# --- UrbanSound8K ----------------------------------------------------------------------------------------


@pytest.fixture
def urbansound(tmp_path: Path, fsdd_clips: list[Path]) -> Path:
    root = tmp_path / "UrbanSound8K"
    header = ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]
    rows = [
        ["100032-3-0-0.wav", "100032", "0.0", "0.317", "1", "5", "3", "dog_bark"],
        ["100263-2-0-117.wav", "100263", "58.5", "62.5", "1", "5", "2", "children_playing"],
        ["101415-3-0-2.wav", "101415", "1.0", "5.0", "1", "1", "3", "dog_bark"],
        ["999-1-0-0.wav", "999", "0.0", "1.0", "2", "1", "1", "car_horn"],  # listed, audio absent
    ]
    _csv(root / "metadata" / "UrbanSound8K.csv", header, rows)
    for (name, *_rest, fold, _cid, _cls), clip in zip(rows[:3], fsdd_clips, strict=False):
        _clip(root / "audio" / f"fold{fold}" / name, clip)
    return root


def test_urbansound8k(urbansound: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        rows = prepare_dataset("urbansound8k", urbansound)
    assert "1 listed clip(s) have no audio" in caplog.text
    by_id = _by_id(rows)
    assert set(by_id) == {
        "urbansound8k:100032-3-0-0",
        "urbansound8k:100263-2-0-117",
        "urbansound8k:101415-3-0-2",
    }
    row = by_id["urbansound8k:100032-3-0-0"]
    assert row["labels"] == ["dog_bark"] and row["split"] == "fold5" and row["freesound_id"] == "100032"
    assert "dog bark" in row["captions"] and len(row["captions"]) >= 3
    assert all("dog bark" in c for c in row["captions"])
    assert row["duration"] == pytest.approx(sf.info(row["audio"]).duration, abs=1e-3)
    only_fold1 = prepare_dataset("urbansound8k", urbansound, splits=["fold1"])
    assert [r["id"] for r in only_fold1] == ["urbansound8k:101415-3-0-2"]
    with pytest.raises(DataError, match=r"UrbanSound8K.csv:5: audio for '999-1-0-0.wav' not found"):
        prepare_dataset("urbansound8k", urbansound, strict=True)
    with pytest.raises(DataError, match="unknown split"):
        prepare_dataset("us8k", urbansound, splits=["fold11"])


# --- FSD50K -----------------------------------------------------------------------------------------------


def _fsd50k(root: Path, fsdd_clips: list[Path], *, hf_layout: bool = False) -> Path:
    labels = root / ("labels" if hf_layout else "FSD50K.ground_truth")
    vocab = [
        ["0", "Bark", "/m/05tny_"],
        ["1", "Dog", "/m/0bt9lr"],
        ["2", "Animal", "/m/0jbk"],
        ["3", "Music", "/m/04rlf"],
    ]
    vocab += [
        ["4", "Electric_guitar", "/m/02sgy"],
        ["5", "Guitar", "/m/0342h"],
        ["6", "Musical_instrument", "/m/04szw"],
    ]
    _csv(labels / "vocabulary.csv", None, vocab)
    dev = [
        ["64760", "Bark,Dog,Animal", "/m/05tny_,/m/0bt9lr,/m/0jbk", "train"],
        [
            "16399",
            "Electric_guitar,Guitar,Musical_instrument,Music",
            "/m/02sgy,/m/0342h,/m/04szw,/m/04rlf",
            "val",
        ],
    ]
    _csv(labels / "dev.csv", ["fname", "labels", "mids", "split"], dev)
    _csv(labels / "eval.csv", ["fname", "labels", "mids"], [["37199", "Music", "/m/04rlf"]])
    for (fname, *_), clip in zip(dev, fsdd_clips, strict=False):
        _clip(root / ("clips/dev" if hf_layout else "FSD50K.dev_audio") / f"{fname}.wav", clip)
    _clip(root / ("clips/eval" if hf_layout else "FSD50K.eval_audio") / "37199.wav", fsdd_clips[3])
    return root


@pytest.mark.parametrize("hf_layout", [False, True])
def test_fsd50k(tmp_path: Path, fsdd_clips: list[Path], hf_layout: bool) -> None:
    root = _fsd50k(tmp_path / "FSD50K", fsdd_clips, hf_layout=hf_layout)
    rows = _by_id(prepare_dataset("fsd50k", root))
    assert set(rows) == {"fsd50k:64760", "fsd50k:16399"}  # eval is a test split: not by default
    bark = rows["fsd50k:64760"]
    assert bark["labels"] == ["Bark", "Dog", "Animal"] and bark["split"] == "train"
    assert "bark and dog" in bark["captions"]  # generic "Animal" left out of captions
    assert not any("animal" in c for c in bark["captions"])
    guitar = rows["fsd50k:16399"]
    assert guitar["split"] == "val" and "the sound of electric guitar and guitar" in guitar["captions"]
    evaluation = prepare_dataset("fsd50k", root, splits=["eval"])
    assert [r["id"] for r in evaluation] == ["fsd50k:37199"]
    assert evaluation[0]["captions"][0] == "music"  # only generic labels: they are used


def test_fsd50k_label_outside_vocabulary(tmp_path: Path, fsdd_clips: list[Path]) -> None:
    root = _fsd50k(tmp_path / "FSD50K", fsdd_clips)
    _csv(
        root / "FSD50K.ground_truth" / "dev.csv",
        ["fname", "labels", "mids", "split"],
        [["64760", "Barkk", "/m/x", "train"]],
    )
    with pytest.raises(DataError, match=r"dev.csv:2: label\(s\) \['Barkk'\] are not in vocabulary.csv"):
        prepare_dataset("fsd50k", root)


# --- Clotho -----------------------------------------------------------------------------------------------


@pytest.fixture
def clotho(tmp_path: Path, fsdd_clips: list[Path]) -> Path:
    root = tmp_path / "clotho"
    header = ["file_name"] + [f"caption_{i}" for i in range(1, 6)]
    splits = {
        "development": [["Santa Motor.wav", "A motor hums, then stops.", "an engine, idling", "b", "c", "d"]],
        "validation": [["Rain_on_roof.wav", "rain falls on a roof", "r2", "r3", "r4", "r5"]],
        "evaluation": [["Birds 01.wav", "birds chirp", "b2", "b3", "b4", "b5"]],
    }
    for i, (split, rows) in enumerate(splits.items()):
        _csv(root / f"clotho_captions_{split}.csv", header, rows)
        _clip(root / split / rows[0][0], fsdd_clips[i])
    meta = ["file_name", "keywords", "sound_id", "sound_link", "start_end_samples", "manufacturer", "license"]
    _csv(
        root / "clotho_metadata_development.csv",
        meta,
        [["Santa Motor.wav", "motor;engine", "12345", "", "", "x", "cc"]],
    )
    return root


def test_clotho(clotho: Path) -> None:
    rows = _by_id(prepare_dataset("clotho", clotho))
    assert set(rows) == {"clotho:Santa Motor.wav", "clotho:Rain_on_roof.wav"}  # evaluation never by default
    motor = rows["clotho:Santa Motor.wav"]
    assert (
        motor["captions"][:2] == ["A motor hums, then stops.", "an engine, idling"]
        and len(motor["captions"]) == 5
    )
    assert motor["freesound_id"] == "12345" and motor["keywords"] == ["motor", "engine"]
    assert "labels" not in motor
    assert rows["clotho:Rain_on_roof.wav"]["split"] == "validation"
    evaluation = prepare_dataset("clotho", clotho, splits=["evaluation"])
    assert evaluation[0]["split"] == "evaluation" and evaluation[0]["captions"][0] == "birds chirp"


# --- MACS -------------------------------------------------------------------------------------------------


def test_macs(tmp_path: Path, fsdd_clips: list[Path]) -> None:
    root = tmp_path / "macs"
    names = ["airport-lisbon-1000-40000-a.wav", "park-helsinki-241-7186-a.wav"]
    document = {
        "files": [
            {
                "filename": names[0],
                "annotations": [
                    {
                        "annotator_id": 1,
                        "sentence": "people talk in a large hall",
                        "tags": ["adults_talking", "announcement_jingle"],
                    },
                    {
                        "annotator_id": 2,
                        "sentence": "footsteps and chatter",
                        "tags": ["footsteps", "adults_talking"],
                    },
                ],
            },
            {
                "filename": names[1],
                "annotations": [{"annotator_id": 3, "sentence": "birds sing", "tags": ["birds_singing"]}],
            },
            {
                "filename": "tram-vienna-1-1-a.wav",
                "annotations": [{"annotator_id": 4, "sentence": "a tram", "tags": []}],
            },
        ]
    }
    (root).mkdir()
    (root / "MACS.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    tau = root / "TAU-urban-acoustic-scenes-2019-development"
    for name, clip in zip(names, fsdd_clips, strict=False):
        _clip(tau / "audio" / name, clip)
    _csv(
        tau / "meta.csv",
        ["filename", "scene_label", "identifier", "source_label"],
        [[f"audio/{names[0]}", "airport", "lisbon-1000", "a"]],
        "\t",
    )
    rows = _by_id(prepare_dataset("macs", root))
    assert set(rows) == {f"macs:{n}" for n in names}  # the clip without audio is skipped
    airport = rows[f"macs:{names[0]}"]
    assert airport["captions"] == ["people talk in a large hall", "footsteps and chatter"]
    assert airport["labels"] == ["adults_talking", "announcement_jingle", "footsteps"]
    assert airport["scene"] == "airport" and rows[f"macs:{names[1]}"]["scene"] == "park"


def test_macs_malformed_yaml(tmp_path: Path) -> None:
    (tmp_path / "MACS.yaml").write_text("files:\n  - annotations: []\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"MACS.yaml: files\[0\]: entry has no 'filename'"):
        prepare_dataset("macs", tmp_path)


# --- AudioCaps --------------------------------------------------------------------------------------------


@pytest.fixture
def audiocaps(tmp_path: Path, fsdd_clips: list[Path]) -> Path:
    root = tmp_path / "audiocaps"
    header = ["audiocap_id", "youtube_id", "start_time", "caption"]
    _csv(
        root / "dataset" / "train.csv",
        header,
        [["91139", "r1nicOVtvkQ", "130", "A woman talks nearby as water pours"]],
    )
    _csv(
        root / "dataset" / "val.csv",
        header,
        [
            ["97151", "vfY_TJq7n_U", "130", "Rustling occurs, ducks quack"],
            ["97152", "vfY_TJq7n_U", "130", "Ducks quack and water splashes"],
        ],
    )
    _csv(
        root / "dataset" / "test.csv",
        header,
        [["103549", "--0w1YA1Hm4", "30", "A vehicle driving as a man speaks"]],
    )
    _clip(root / "audio" / "train" / "Yr1nicOVtvkQ_130.000_140.000.wav", fsdd_clips[0])  # AudioSet-style name
    _clip(root / "audio" / "val" / "vfY_TJq7n_U.flac", fsdd_clips[1])  # bare YouTube id, FLAC
    _clip(root / "audio" / "test" / "103549.wav", fsdd_clips[2])  # named by audiocap_id
    return root


def test_audiocaps(audiocaps: Path) -> None:
    rows = _by_id(prepare_dataset("audiocaps", audiocaps))
    assert set(rows) == {
        "audiocaps:r1nicOVtvkQ_130",
        "audiocaps:vfY_TJq7n_U_130",
    }  # test split not by default
    val = rows["audiocaps:vfY_TJq7n_U_130"]
    assert val["captions"] == ["Rustling occurs, ducks quack", "Ducks quack and water splashes"]
    assert val["audiocap_ids"] == ["97151", "97152"] and val["youtube_id"] == "vfY_TJq7n_U"
    assert val["audio"].endswith(".flac")
    test = prepare_dataset("audiocaps", audiocaps, splits=["test"])
    assert test[0]["audio"].endswith("103549.wav") and test[0]["start_time"] == 30.0


# --- AudioSet strong --------------------------------------------------------------------------------------


def _audioset(root: Path, fsdd_clips: list[Path]) -> Path:
    _csv(
        root / "mid_to_display_name.tsv",
        None,
        [["/m/0bt9lr", "Dog"], ["/m/0k4j", "Car"], ["/m/09x0r", "Speech"]],
        "\t",
    )
    header = ["segment_id", "start_time_seconds", "end_time_seconds", "label"]
    train = [
        ["--0w1YA1Hm4_30000", "0.000", "2.000", "/m/0bt9lr"],
        ["--0w1YA1Hm4_30000", "4.500", "10.000", "/m/0k4j"],
        ["--0w1YA1Hm4_30000", "5.000", "6.000", "/m/09x0r"],
        ["-1OlgJWehn8_0", "0.0", "10.0", "/m/09x0r"],
    ]
    _csv(root / "audioset_train_strong.tsv", header, train, "\t")
    _csv(root / "audioset_eval_strong.tsv", header, [["abcdefghijk_10000", "0", "1", "/m/0k4j"]], "\t")
    _clip(root / "audio" / "train" / "--0w1YA1Hm4_30000.wav", fsdd_clips[0])
    _clip(root / "audio" / "train" / "Y-1OlgJWehn8_0.000_10.000.wav", fsdd_clips[1])
    _clip(root / "audio" / "eval" / "abcdefghijk_10000.flac", fsdd_clips[2])
    return root


def test_audioset_strong(tmp_path: Path, fsdd_clips: list[Path]) -> None:
    root = _audioset(tmp_path / "audioset", fsdd_clips)
    rows = _by_id(prepare_dataset("audiosetstrong", root))
    assert set(rows) == {"audioset_strong:--0w1YA1Hm4_30000", "audioset_strong:-1OlgJWehn8_0"}
    row = rows["audioset_strong:--0w1YA1Hm4_30000"]
    assert row["labels"] == ["Dog", "Car", "Speech"] and row["youtube_id"] == "--0w1YA1Hm4"
    assert row["captions"][0] == "dog, followed by car and speech"
    assert "dog, car and speech" in row["captions"]
    assert row["events"][1] == [4.5, 10.0, "Car"]
    assert [r["split"] for r in prepare_dataset("audioset_strong", root, splits=["eval"])] == ["eval"]


def test_audioset_unknown_mid(tmp_path: Path, fsdd_clips: list[Path]) -> None:
    root = _audioset(tmp_path / "audioset", fsdd_clips)
    _csv(
        root / "audioset_train_strong.tsv",
        ["segment_id", "start_time_seconds", "end_time_seconds", "label"],
        [["x_0", "0", "1", "/m/zzz"]],
        "\t",
    )
    with pytest.raises(DataError, match=r"audioset_train_strong.tsv:2: label '/m/zzz'"):
        prepare_dataset("audioset_strong", root)


def test_event_captions_overlap_and_sequence() -> None:
    assert event_captions([(0, 10, "Rain"), (2, 3, "Thunder")])[0] == "rain and thunder"
    assert event_captions([(5, 6, "Door"), (0, 1, "Knock")])[0] == "knock, followed by door"


# --- shared pieces and the CLI ------------------------------------------------------------------------------


def test_label_helpers() -> None:
    assert humanize_label("Accelerating_and_revving_and_vroom") == "accelerating and revving and vroom"
    assert humanize_label("Male speech, man speaking") == "male speech, man speaking"
    assert humanize_label("TV") == "TV"
    captions = label_captions(["Dog", "dog", "Cat"])
    assert captions[0] == "dog and cat" and len(captions) == len(set(captions)) > 1
    assert label_captions([]) == []


def test_prepare_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'esc50'"):
        preparer("esc50")
    with pytest.raises(DataError, match="source folder not found"):
        prepare_dataset("clotho", tmp_path / "nowhere")
    with pytest.raises(DataError, match="clotho_captions_development.csv"):
        prepare_dataset("clotho", tmp_path)


def test_cli_prepare_with_exclusion_across_datasets(
    tmp_path: Path, audiocaps: Path, fsdd_clips: list[Path], capsys
) -> None:
    """AudioCaps test clips are AudioSet videos: excluding the test manifest removes them from AudioSet."""
    audioset = _audioset(tmp_path / "audioset", fsdd_clips)
    test_manifest = tmp_path / "manifests" / "audiocaps_test.jsonl"
    assert (
        main(
            [
                "data",
                "prepare",
                "audiocaps",
                "--src",
                str(audiocaps),
                "--out",
                str(test_manifest),
                "--split",
                "test",
            ]
        )
        == 0
    )
    out = tmp_path / "manifests" / "audioset_train.jsonl"
    code = main(
        [
            "data",
            "prepare",
            "audioset_strong",
            "--src",
            str(audioset),
            "--out",
            str(out),
            "--exclude",
            str(test_manifest),
        ]
    )
    assert code == 0
    rows = read_manifest(out)
    assert [r["id"] for r in rows] == ["audioset_strong:-1OlgJWehn8_0"]
    assert "1 clips" in capsys.readouterr().out
    raw = json.loads(out.read_text().splitlines()[0])
    assert Path(raw["audio"]).is_absolute()  # audio outside the manifest folder stays absolute
    wave = load_audio(rows[0]["audio"])
    assert wave.dtype == np.float32 and wave.size > 1000
    assert main(["data", "prepare", "clotho", "--src", str(tmp_path / "empty"), "--out", str(out)]) == 1


def test_read_csv_keeps_quoted_newlines_and_latin1(tmp_path: Path) -> None:
    from audiovec.data.prepare.common import read_csv

    path = tmp_path / "c.csv"
    path.write_text('file_name,caption_1\n"a.wav","first line\nsecond, line"\n', encoding="utf-8")
    assert read_csv(path) == [{"file_name": "a.wav", "caption_1": "first line\nsecond, line"}]
    path.write_bytes("file_name,keywords\nb.wav,caf\xe9\n".encode("latin-1"))
    assert read_csv(path, required=["keywords"])[0]["keywords"] == "caf\xe9"
    with pytest.raises(DataError, match="missing column"):
        read_csv(path, required=["sound_id"])


def test_cli_accepts_dataset_name_aliases(tmp_path: Path, fsdd_clips: list[Path]) -> None:
    root = _audioset(tmp_path / "audioset", fsdd_clips)
    out = tmp_path / "m.jsonl"
    assert (
        main(["data", "prepare", "AudioSetStrong", "--src", str(root), "--out", str(out), "--no-durations"])
        == 0
    )
    assert all("duration" not in row for row in read_manifest(out))
    assert main(["data", "prepare", "esc50", "--src", str(root), "--out", str(out)]) == 1
