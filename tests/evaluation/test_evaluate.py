"""evaluate.py, benchmarks_data.py and ``audiovec eval`` on a tiny real model and real FSDD audio."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from audiovec.cli import main
from audiovec.data.fsdd import bundled_files as fsdd_files
from audiovec.errors import DataError
from audiovec.evaluation.evaluate import EmbeddingCache, evaluate, model_fingerprint
from audiovec.evaluation.metrics import retrieval_metrics
from audiovec.evaluation.retrieval_sets import (
    from_captioned_clips,
    from_manifest,
    load_benchmark,
    read_mteb_dataset,
)
from audiovec.tiny import save_tiny_embedder, tiny_embedder

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
METRIC_KEYS = ("hit_rate@5", "recall@5", "ndcg@10", "map@10", "mrr@10")


def captions_of(path) -> list[str]:
    digit, speaker, take = path.stem.split("_")
    return [
        f"{WORDS[int(digit)]} spoken by {speaker}",
        f"take {take} of {speaker} saying {WORDS[int(digit)]}",
    ]


@pytest.fixture(scope="module")
def clips():
    return fsdd_files()[::50]  # 12 clips, several digits and speakers


@pytest.fixture(scope="module")
def model():
    return tiny_embedder()


@pytest.fixture
def manifest(tmp_path, clips):
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    lines = []
    for p in clips:
        shutil.copy(p, audio_dir / p.name)
        lines.append(json.dumps({"audio": f"audio/{p.name}", "captions": captions_of(p)}))
    path = tmp_path / "eval.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


class CountingModel:
    """The tiny model, counting what it is asked to encode."""

    def __init__(self, inner):
        self.inner = inner
        self.audio_calls = 0
        self.text_calls = 0
        self.fingerprint = "counting-" + model_fingerprint(inner)

    def encode_audio(self, inputs, **kw):
        self.audio_calls += len(inputs)
        return self.inner.encode_audio(inputs, **kw)

    def encode_text(self, texts, **kw):
        self.text_calls += len(texts)
        return self.inner.encode_text(texts, **kw)


def test_manifest_metrics_equal_direct_computation(model, manifest, clips):
    data = from_manifest(manifest)
    res = evaluate(model, [data], use_cache=False)["eval"]
    audio = model.encode_audio([str(p) for p in clips])
    texts = [c for p in clips for c in captions_of(p)]
    text = model.encode_text(texts)
    expected = retrieval_metrics(text, audio, [[i // 2] for i in range(len(texts))])
    for key in METRIC_KEYS:
        assert res["t2a"][key] == pytest.approx(expected[key])
    assert res["sizes"] == {"clips": 12, "texts": 24, "pairs": 24, "t2a_queries": 24, "a2t_queries": 12}
    assert res["chance"]["t2a"]["hit_rate@5"] == pytest.approx(5 / 12)
    assert 0 <= res["a2t"]["hit_rate@1"] <= res["a2t"]["hit_rate@5"] <= res["a2t"]["hit_rate@10"] <= 1


def test_cache_reuses_vectors_and_notices_changed_files(model, manifest, tmp_path, clips):
    counting = CountingModel(model)
    data = from_manifest(manifest)
    first = evaluate(counting, [data], cache_dir=tmp_path / "cache")["eval"]
    assert (counting.audio_calls, counting.text_calls) == (12, 24)
    second = evaluate(counting, [data], cache_dir=tmp_path / "cache")["eval"]
    assert (counting.audio_calls, counting.text_calls) == (12, 24)  # nothing re-encoded
    assert second["t2a"] == first["t2a"] and second["encoded"] == {"audio_encoded": 0, "text_encoded": 0}
    # overwrite one clip with another recording: size/mtime change, so only it is re-encoded
    shutil.copy(clips[1], manifest.parent / "audio" / clips[0].name)
    evaluate(counting, [from_manifest(manifest)], cache_dir=tmp_path / "cache")
    assert counting.audio_calls == 13


def test_fingerprint_follows_weights():
    a, b = tiny_embedder(seed=0), tiny_embedder(seed=0)
    assert model_fingerprint(a) == model_fingerprint(b)
    next(iter(b.parameters())).data.view(-1)[0] += 0.5
    assert model_fingerprint(a) != model_fingerprint(b)


def test_embedding_cache_roundtrip(tmp_path):
    cache = EmbeddingCache(tmp_path, "fp")
    cache.put({"k1": np.arange(4, dtype=np.float32)})
    got = cache.get(["k1", "k2"])
    assert list(got) == ["k1"] and got["k1"].tolist() == [0, 1, 2, 3] and len(cache) == 1
    cache.close()


def test_identical_captions_are_merged_into_one_multi_relevant_query(clips):
    data = from_captioned_clips("s", [(p.stem, str(p), ["a voice", p.stem]) for p in clips[:3]])
    assert data.texts[0] == "a voice" and data.t2a_relevant()[0] == [0, 1, 2]
    queries, rel = data.a2t_relevant()
    assert queries == [0, 1, 2] and rel[1] == [0, 2]


def test_set_errors(tmp_path, clips):
    with pytest.raises(DataError, match="no audio"):
        from_captioned_clips("s", [])
    bad = tmp_path / "m.jsonl"
    bad.write_text(json.dumps({"audio": "missing.wav", "captions": ["x"]}) + "\n")
    with pytest.raises(DataError, match="not found"):
        from_manifest(bad)


def _write_clotho(root, clips):
    (root / "evaluation").mkdir(parents=True)
    rows = ["file_name,caption_1,caption_2,caption_3,caption_4,caption_5"]
    for p in clips:
        shutil.copy(p, root / "evaluation" / p.name)
        caps = captions_of(p) + [f"voice number {i} {p.stem}" for i in range(3)]
        rows.append(",".join([p.name, *caps]))
    (root / "clotho_captions_evaluation.csv").write_text("\n".join(rows) + "\n")


def test_official_clotho_layout(tmp_path, clips):
    _write_clotho(tmp_path / "clotho", clips[:5])
    data = load_benchmark("clotho", tmp_path)
    assert data.name == "clotho" and len(data.audio) == 5 and len(data.texts) == 25
    assert all(len(r) == 5 for r in data.a2t_relevant()[1])


def test_official_audioset_strong_layout_uses_event_names(tmp_path, clips):
    root = tmp_path / "audioset_strong"
    root.mkdir()
    (root / "mid_to_display_name.tsv").write_text("/m/speech\tSpeech\n/m/dog\tDog\n")
    lines = ["segment_id\tstart_time_seconds\tend_time_seconds\tlabel"]
    for i, p in enumerate(clips[:4]):
        seg = f"clip{i}_30000"
        shutil.copy(p, root / f"{seg}.wav")
        lines.append(f"{seg}\t0.0\t1.0\t/m/speech")
        if i % 2:
            lines.append(f"{seg}\t0.5\t1.0\t/m/dog")
    (root / "audioset_eval_strong.tsv").write_text("\n".join(lines) + "\n")
    data = load_benchmark("audioset-strong", tmp_path)
    assert sorted(data.texts) == ["Dog", "Speech"]
    rel = dict(zip(data.texts, data.t2a_relevant(), strict=True))
    assert rel["Speech"] == [0, 1, 2, 3] and rel["Dog"] == [1, 3]


@pytest.mark.parametrize("fmt", ["save_to_disk", "parquet"])
def test_mteb_local_layout_matches_manifest(tmp_path, clips, fmt, model):
    import datasets

    root = tmp_path / "audiocaps"
    corpus = datasets.Dataset.from_list(
        [{"id": p.stem, "audio": {"bytes": p.read_bytes(), "path": p.name}} for p in clips[:6]]
    )
    queries = datasets.Dataset.from_list(
        [
            {"id": f"q{i}-{j}", "text": c}
            for i, p in enumerate(clips[:6])
            for j, c in enumerate(captions_of(p))
        ]
    )
    qrels = datasets.Dataset.from_list(
        [
            {"query-id": f"q{i}-{j}", "corpus-id": p.stem, "score": 1}
            for i, p in enumerate(clips[:6])
            for j in range(2)
        ]
    )
    for name, ds in (("corpus", corpus), ("queries", queries), ("qrels", qrels)):
        if fmt == "save_to_disk":
            datasets.DatasetDict({"test": ds}).save_to_disk(str(root / name))
        else:
            (root / name).mkdir(parents=True)
            ds.to_parquet(str(root / name / "test-00000-of-00001.parquet"))
    data = load_benchmark("audiocaps", tmp_path)
    assert isinstance(data.audio[0], bytes) and len(data.texts) == 12
    same = from_captioned_clips("ref", [(p.stem, str(p), captions_of(p)) for p in clips[:6]])
    ours = evaluate(model, [data], use_cache=False)["audiocaps"]
    ref = evaluate(model, [same], use_cache=False)["ref"]
    assert ours["t2a"] == pytest.approx(ref["t2a"]) and ours["a2t"] == pytest.approx(ref["a2t"])


def test_mteb_layout_errors(tmp_path):
    with pytest.raises(DataError, match="corpus"):
        read_mteb_dataset(tmp_path)
    with pytest.raises(DataError, match="unknown benchmark"):
        load_benchmark("nope", tmp_path)
    with pytest.raises(DataError, match="no folder"):
        load_benchmark("clotho", tmp_path)


def test_cli_eval_writes_valid_json(tmp_path, manifest, capsys):
    model_dir = save_tiny_embedder(tmp_path / "model")
    out = tmp_path / "res.json"
    code = main(
        [
            "eval",
            str(model_dir),
            "--manifest",
            str(manifest),
            "--json",
            str(out),
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "eval T2A hit_rate@5" in table and "chance" in table
    run = json.loads(out.read_text())
    assert run["model"] == "model" and run["ks"] == [1, 5, 10] and len(run["fingerprint"]) == 24
    res = run["results"]["eval"]
    for direction in ("t2a", "a2t"):
        for key in METRIC_KEYS:
            assert 0.0 <= res[direction][key] <= 1.0
        assert res[direction]["hit_rate@1"] <= res[direction]["hit_rate@5"] <= res[direction]["hit_rate@10"]
        assert res[direction]["recall@5"] <= res[direction]["hit_rate@5"]
    assert res["sizes"]["t2a_queries"] == 24


def test_cli_eval_usage_errors(tmp_path, capsys):
    model_dir = tmp_path / "m"
    assert main(["eval", str(model_dir)]) == 1
    assert "nothing to evaluate" in capsys.readouterr().err
    assert main(["eval", str(model_dir), "--benchmark", "clotho"]) == 1
    assert "--data-root" in capsys.readouterr().err
