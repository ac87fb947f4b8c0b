"""Zero-shot classification on real FSDD clips: prompt ensembling, scores consistent with the model's
own cosine similarities, label parsing, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audiovec.apps.classify import DEFAULT_TEMPLATES, ZeroShotClassifier, label_vectors, parse_labels
from audiovec.cli import main
from audiovec.errors import ConfigError
from audiovec.model import AudioTextEmbedder

LABELS = ["dog barking", "a siren", "a man speaking", "rain"]


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> AudioTextEmbedder:
    return AudioTextEmbedder.from_pretrained(tiny_model_dir)


def test_label_vectors_average_the_templates(model):
    vecs = label_vectors(model, LABELS[:2], ["{}", "the sound of {}"])
    for vec, label in zip(vecs, LABELS[:2]):
        mean = model.encode_text([label, f"the sound of {label}"]).mean(0)
        np.testing.assert_allclose(vec, mean / np.linalg.norm(mean), atol=1e-5)
    single = label_vectors(model, LABELS[:2], ["a recording of {}"])
    np.testing.assert_allclose(
        single, model.encode_text([f"a recording of {x}" for x in LABELS[:2]]), atol=1e-5
    )


def test_predictions_follow_the_cosine_similarities(model, fsdd_clips):
    clf = ZeroShotClassifier(model, LABELS)
    preds = clf.classify([str(p) for p in fsdd_clips[:6]])
    audio = model.encode_audio([str(p) for p in fsdd_clips[:6]])
    sims = model.similarity(audio, label_vectors(model, LABELS, DEFAULT_TEMPLATES))
    for pred, row in zip(preds, sims):
        assert pred.label == LABELS[int(np.argmax(row))]
        assert [pred.scores[x] for x in LABELS] == pytest.approx(row.tolist(), abs=1e-4)
        assert sum(pred.probs.values()) == pytest.approx(1.0, abs=1e-6)
        top = pred.top(3)
        assert [name for name, _ in top] == [LABELS[i] for i in np.argsort(-row)[:3]]
        assert top[0][1] >= top[1][1] >= top[2][1]


def test_logit_scale_sharpens_but_keeps_the_order(model, fsdd_clips):
    soft = ZeroShotClassifier(model, LABELS, logit_scale=1.0).classify([str(fsdd_clips[0])])[0]
    sharp = ZeroShotClassifier(model, LABELS, logit_scale=1000.0).classify([str(fsdd_clips[0])])[0]
    assert soft.label == sharp.label
    assert max(sharp.probs.values()) > max(soft.probs.values())


def test_parse_labels(tmp_path):
    assert parse_labels("dog, siren ,dog,,rain") == ["dog", "siren", "rain"]
    file = tmp_path / "labels.txt"
    file.write_text("# sounds\ndog\n\nsiren  # loud\n")
    assert parse_labels(file=file) == ["dog", "siren"]
    with pytest.raises(ConfigError, match="at least two"):
        parse_labels("dog")
    with pytest.raises(ConfigError, match="cannot read"):
        parse_labels(file=tmp_path / "missing.txt")
    with pytest.raises(ConfigError):
        ZeroShotClassifier(None, ["a", "b"], templates=["no placeholder"])


def test_cli_classify_json_and_bad_file(tiny_model_dir, model, fsdd_clips, tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"\x00" * 64)
    files = [str(fsdd_clips[0]), str(bad), str(fsdd_clips[5])]
    code = main(
        ["classify", str(tiny_model_dir), "--labels", ",".join(LABELS), *files, "--top-k", "2", "--json"]
    )
    assert code == 1  # one file failed; the others were still classified
    records = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in records] == files and "error" in records[1]
    expected = ZeroShotClassifier(model, LABELS).classify([files[0], files[2]])
    assert [records[0]["label"], records[2]["label"]] == [p.label for p in expected]
    assert len(records[0]["top"]) == 2
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("\n".join(LABELS))
    assert main(["classify", str(tiny_model_dir), "--labels-file", str(labels_file), files[0]]) == 0
    assert expected[0].label in capsys.readouterr().out
