"""The mteb encoder wrapper, and the round trip: mteb's own evaluation equals ``audiovec eval``."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("mteb")

from audiovec.cli import main
from audiovec.data.fsdd import bundled_files as fsdd_files
from audiovec.errors import DataError
from audiovec.evaluation.mteb import MtebEncoder, audio_item_to_ref, local_retrieval_task, run_mteb
from audiovec.evaluation.retrieval_sets import from_manifest
from audiovec.tiny import save_tiny_embedder, tiny_embedder

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mteb")
    lines = []
    for p in fsdd_files()[::25][:20]:
        digit, speaker, take = p.stem.split("_")
        caps = [
            f"{WORDS[int(digit)]} spoken by {speaker}",
            f"{speaker} says {WORDS[int(digit)]}, take {take}",
        ]
        lines.append(json.dumps({"audio": str(p), "captions": caps}))
    path = folder / "local.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_encoder_satisfies_the_protocol():
    from mteb.models import EncoderProtocol

    enc = MtebEncoder(tiny_embedder())
    assert isinstance(enc, EncoderProtocol)
    assert enc.mteb_model_meta.modalities == ["audio", "text"]


def test_encode_reads_mteb_batches():
    from torch.utils.data import DataLoader

    model = tiny_embedder()
    enc = MtebEncoder(model)
    path = fsdd_files(1)[0]
    import soundfile as sf

    wave, rate = sf.read(path, dtype="float32")
    rows = [
        {"audio": {"array": wave, "sampling_rate": rate}},
        {"audio": {"bytes": path.read_bytes(), "path": None}},
    ]
    loader = DataLoader(rows, batch_size=2, collate_fn=lambda b: {"audio": [r["audio"] for r in b]})
    vecs = enc.encode(loader, task_metadata=None, hf_split="test", hf_subset="default")
    direct = model.encode_audio([str(path)])[0]
    assert vecs.shape == (2, model.embedding_dim)
    np.testing.assert_allclose(vecs[1], direct, atol=1e-5)
    assert float(vecs[0] @ direct) > 0.999  # same clip via array at its own rate
    texts = DataLoader(
        [{"text": "one"}, {"text": "two"}],
        batch_size=2,
        collate_fn=lambda b: {"text": [r["text"] for r in b]},
    )
    tv = enc.encode(texts, task_metadata=None, hf_split="test", hf_subset="default")
    np.testing.assert_allclose(tv, model.encode_text(["one", "two"]), atol=1e-5)


def test_audio_item_errors():
    with pytest.raises(DataError, match="not understood"):
        audio_item_to_ref(3.5)


def test_mteb_round_trip_equals_audiovec_eval(manifest, tmp_path, capsys):
    model_dir = save_tiny_embedder(tmp_path / "model")
    out = tmp_path / "ours.json"
    assert (
        main(
            [
                "eval",
                str(model_dir),
                "--manifest",
                str(manifest),
                "--json",
                str(out),
                "--no-cache",
                "--ks",
                "1,5,10",
            ]
        )
        == 0
    )
    ours = json.loads(out.read_text())["results"]["local"]

    from audiovec.model import AudioTextEmbedder

    data = from_manifest(manifest)
    tasks = [local_retrieval_task(data, "t2a"), local_retrieval_task(data, "a2t")]
    result = run_mteb(AudioTextEmbedder.from_pretrained(model_dir), tasks)
    scores = {tr.task_name: tr.scores["test"][0] for tr in result.task_results}
    theirs = {"t2a": scores[tasks[0].metadata.name], "a2t": scores[tasks[1].metadata.name]}
    for direction in ("t2a", "a2t"):
        # mteb rounds its trec_eval averages to 5 decimals
        assert theirs[direction]["hit_rate_at_5"] == pytest.approx(ours[direction]["hit_rate@5"], abs=1e-5)
        for k in (1, 10):
            assert theirs[direction][f"hit_rate_at_{k}"] == pytest.approx(
                ours[direction][f"hit_rate@{k}"], abs=1e-5
            )
            assert theirs[direction][f"recall_at_{k}"] == pytest.approx(
                ours[direction][f"recall@{k}"], abs=1e-5
            )
        # rank-weighted metrics move when two near-tied items (the tiny random model's vectors agree to ~1e-4)
        # swap places under mteb's own float32 similarity; set membership (hit rate, recall) does not
        for ours_key, theirs_key in (
            ("ndcg@10", "ndcg_at_10"),
            ("map@10", "map_at_10"),
            ("mrr@10", "mrr_at_10"),
        ):
            assert theirs[direction][theirs_key] == pytest.approx(ours[direction][ours_key], abs=5e-3)
    # the check has teeth: a t2a set of 20 clips leaves hit_rate@10 strictly between 0 and 1 for a random model
    assert 0.0 < ours["t2a"]["hit_rate@10"] < 1.0
