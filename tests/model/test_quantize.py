"""Quantised vectors: values and packing equal sentence-transformers' ``quantize_embeddings`` (and a hand
computation), calibration ranges saved with the model and loaded back, ``encode_*(precision=)``, and an
int8 / binary index that finds the planted item and re-scores it with the float vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audiovec.apps.index import AudioIndex
from audiovec.errors import CheckpointError, ConfigError
from audiovec.index_quantized import QuantizedVectors, add_vectors, set_precision
from audiovec.model import AudioTextEmbedder
from audiovec.quantize import (
    CALIBRATION_NAME,
    PRECISIONS,
    Calibration,
    dequantize_int8,
    quantize_embeddings,
    unpack_bits,
)


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_hand_computed_values() -> None:
    x = np.array([[-1.0, 0.0, 0.5], [1.0, 0.5, -0.5], [0.0, 1.0, 0.0]], dtype=np.float32)
    width = 255 / 128  # a step of exactly 1/128, so every value below is exact in float32
    ranges = np.array([[-1.0, 0.0, -0.5], [-1.0 + width, width, -0.5 + width]], dtype=np.float32)
    # uint8: floor((x - min) / ((max - min) / 255)), clipped to 0..255 (1.0 > max: 255); int8: that - 128
    expected_u8 = np.array([[0, 0, 128], [255, 64, 0], [128, 128, 64]], dtype=np.uint8)
    np.testing.assert_array_equal(quantize_embeddings(x, "uint8", ranges=ranges), expected_u8)
    np.testing.assert_array_equal(
        quantize_embeddings(x, "int8", ranges=ranges), (expected_u8.astype(int) - 128).astype(np.int8)
    )
    # binary: bits x > 0, packed big-endian 8 to a byte (3 dims → one byte, low bits zero); binary = byte - 128
    bits = np.array([[0b00100000], [0b11000000], [0b01000000]], dtype=np.uint8)
    np.testing.assert_array_equal(quantize_embeddings(x, "ubinary"), bits)
    np.testing.assert_array_equal(quantize_embeddings(x, "binary"), (bits.astype(int) - 128).astype(np.int8))
    np.testing.assert_array_equal(unpack_bits(quantize_embeddings(x, "binary"), 3, "binary"), x > 0)
    assert quantize_embeddings(x, "float32").dtype == np.float32
    with pytest.raises(ConfigError, match="float32, int8, uint8, binary, ubinary"):
        quantize_embeddings(x, "int4")
    with pytest.raises(ConfigError, match=r"expected \(2, 3\)"):
        quantize_embeddings(x, "int8", ranges=ranges[:, :2])


@pytest.mark.parametrize("precision", PRECISIONS)
def test_equal_to_sentence_transformers(precision: str) -> None:
    st = pytest.importorskip("sentence_transformers.util.quantization")
    corpus, queries = unit_rows(300, 70, seed=1), unit_rows(20, 70, seed=2)
    for kwargs in (
        {},
        {"calibration_embeddings": corpus},
        {"ranges": Calibration.from_embeddings(corpus).ranges[70]},
    ):
        ours = quantize_embeddings(queries if kwargs else corpus, precision, **kwargs)
        theirs = st.quantize_embeddings(queries if kwargs else corpus, precision, **kwargs)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)


def test_int8_round_trip_is_within_one_step() -> None:
    x = unit_rows(200, 32)
    ranges = Calibration.from_embeddings(x).ranges[32]
    back = dequantize_int8(quantize_embeddings(x, "int8", ranges=ranges), ranges)
    step = (ranges[1] - ranges[0]) / 255
    assert (np.abs(back - x) <= step / 2 + 1e-6).all()


# ------------------------------------------------------------------------------------------------ the model
@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> AudioTextEmbedder:
    return AudioTextEmbedder.from_pretrained(tiny_model_dir)


TEXTS = ["a dog barks", "rain on a window", "a car horn", "church bells", "a baby laughs", "wind"]


def test_encode_precision_and_calibration_saved_with_the_model(
    model: AudioTextEmbedder, tmp_path: Path
) -> None:
    floats = model.encode_text(TEXTS)
    d = model.embedding_dim
    with pytest.raises(ConfigError, match="model.calibrate"):
        model.encode_text(TEXTS, precision="int8")
    packed = model.encode_text(TEXTS, precision="binary")
    assert packed.dtype == np.int8 and packed.shape == (len(TEXTS), (d + 7) // 8)
    np.testing.assert_array_equal(packed, quantize_embeddings(floats, "binary"))
    np.testing.assert_array_equal(
        model.encode_text(TEXTS[0], precision="ubinary"), quantize_embeddings(floats[:1], "ubinary")[0]
    )

    model.config.matryoshka_dims = [d, d // 2]
    try:
        calibration = model.calibrate(floats)
        assert sorted(calibration.ranges) == [d // 2, d] and calibration.count == len(TEXTS)
        folder = model.save_pretrained(tmp_path / "saved")
    finally:
        model.config.matryoshka_dims = None
        model.calibration = None
    saved = json.loads((folder / CALIBRATION_NAME).read_text())
    assert set(saved["ranges"]) == {str(d), str(d // 2)}
    loaded = AudioTextEmbedder.from_pretrained(folder)
    assert loaded.calibration is not None
    np.testing.assert_array_equal(loaded.calibration.ranges[d], calibration.ranges[d])
    codes = loaded.encode_text(TEXTS, precision="int8")
    np.testing.assert_array_equal(codes, quantize_embeddings(floats, "int8", ranges=calibration.ranges[d]))
    # a truncated vector is quantised with the ranges of its own size
    half = loaded.encode_text(TEXTS, precision="uint8", truncate_dim=d // 2)
    cut = loaded.encode_text(TEXTS, truncate_dim=d // 2)
    np.testing.assert_array_equal(half, quantize_embeddings(cut, "uint8", ranges=calibration.ranges[d // 2]))
    with pytest.raises(ConfigError, match=f"no int8 calibration for {d // 4}-dimensional"):
        loaded.encode_text(TEXTS, precision="int8", truncate_dim=d // 4)


def test_encode_audio_precision_failed_rows_are_zero(model: AudioTextEmbedder, fsdd_clips) -> None:
    clips = [str(p) for p in fsdd_clips[:2]] + ["/nonexistent.wav"]
    floats = model.encode_audio(clips, on_error="skip")
    packed = model.encode_audio(clips, on_error="skip", precision="ubinary")
    np.testing.assert_array_equal(packed[:2], quantize_embeddings(floats[:2], "ubinary"))
    assert (packed[2] == 0).all()


def test_bad_calibration_file_is_named(tmp_path: Path) -> None:
    (tmp_path / CALIBRATION_NAME).write_text('{"ranges": {"4": [[0, 0, 0], [1, 1, 1]]}}')
    with pytest.raises(CheckpointError, match=r"size 4 have shape \(2, 3\)"):
        Calibration.load(tmp_path)
    with pytest.raises(ConfigError, match="at least 2"):
        Calibration.from_embeddings(unit_rows(1, 4))


# ------------------------------------------------------------------------------------------------ the index
def planted(n: int = 3000, d: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Clustered unit vectors plus queries that are noisy copies of chosen rows (the planted answers)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, d)).astype(np.float32)
    x = centres[rng.integers(0, 30, n)] + 0.6 * rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    targets = [int(i) for i in rng.choice(n, 12, replace=False)]
    q = x[targets] + 0.08 * rng.standard_normal((12, d)).astype(np.float32)
    return x, q / np.linalg.norm(q, axis=1, keepdims=True), targets


@pytest.mark.parametrize("precision", ["int8", "binary"])
def test_quantised_index_finds_the_planted_item_with_float_scores(precision: str, tmp_path: Path) -> None:
    x, queries, targets = planted()
    index = AudioIndex(tmp_path / "db")
    add_vectors(index, [f"row{i}" for i in range(len(x))], x, precision=precision)
    assert index.meta()["precision"] == precision
    for q, target in zip(queries, targets):
        hits = index.search(q, k=5)
        assert hits[0].path == f"row{target}"
        # re-scored with the float vectors: the scores are exact cosines, in order
        assert hits[0].score == pytest.approx(float(x[target] @ q), abs=1e-5)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    stored = sorted((tmp_path / "db" / "quantized").iterdir())
    assert [p.name for p in stored] == [
        f"{precision}.codes.npy",
        f"{precision}.json",
        f"{precision}.rowids.npy",
    ]
    codes = np.load(tmp_path / "db" / "quantized" / f"{precision}.codes.npy")
    assert codes.nbytes == (
        len(x) * 64 if precision == "int8" else len(x) * 8
    )  # 4x / 32x smaller than float32


def test_quantised_index_follows_adds_and_deletes(tmp_path: Path) -> None:
    x, queries, targets = planted(n=500)
    index = AudioIndex(tmp_path / "db")
    add_vectors(index, [f"row{i}" for i in range(400)], x[:400], precision="binary")
    late = next(i for i in range(len(targets)) if targets[i] >= 400)
    assert index.search(queries[late], k=1)[0].path != f"row{targets[late]}"  # not indexed yet
    add_vectors(index, [f"row{i}" for i in range(400, 500)], x[400:], precision="binary")
    assert index.search(queries[late], k=1)[0].path == f"row{targets[late]}"  # the copy was rebuilt
    index.table().delete(f"path = 'row{targets[late]}'")
    assert all(h.path != f"row{targets[late]}" for h in index.search(queries[late], k=10))
    set_precision(index, "float32")
    assert index.search(queries[0], k=1)[0].path == f"row{targets[0]}"


def test_rescore_multiplier_one_vs_more_on_binary(tmp_path: Path) -> None:
    """With one candidate per result the binary ranking alone decides; more candidates re-scored by floats
    can only agree more with the exact float ranking."""
    x, queries, _ = planted(n=2000, d=64, seed=3)
    index = AudioIndex(tmp_path / "db")
    add_vectors(index, [f"row{i}" for i in range(len(x))], x, precision="binary")
    exact = [set(np.argsort(-(x @ q))[:10]) for q in queries]

    def recall(multiplier: int) -> float:
        found = [
            {int(h.path[3:]) for h in index.search(q, k=10, rescore_multiplier=multiplier)} for q in queries
        ]
        return float(np.mean([len(f & e) / 10 for f, e in zip(found, exact)]))

    low, high = recall(1), recall(8)
    assert high >= low and high >= 0.9, (low, high)
    with pytest.raises(ValueError, match="rescore_multiplier"):
        index.search(queries[0], rescore_multiplier=0)


def test_quantized_vectors_reload_by_version(tmp_path: Path) -> None:
    x, _, _ = planted(n=100)
    index = AudioIndex(tmp_path / "db")
    add_vectors(index, [f"row{i}" for i in range(100)], x, precision="int8")
    built = QuantizedVectors.build(index.table(), "int8")
    built.save(tmp_path / "q", version=7)
    again = QuantizedVectors.load(tmp_path / "q", "int8", 7)
    assert again is not None and np.array_equal(again.codes, built.codes)
    assert QuantizedVectors.load(tmp_path / "q", "int8", 8) is None


def test_index_precision_choices(tmp_path: Path) -> None:
    index = AudioIndex(tmp_path / "db")
    with pytest.raises(ConfigError, match="uint8 / ubinary search the same"):
        add_vectors(index, ["a", "b"], unit_rows(2, 8), precision="ubinary")


@pytest.mark.slow
def test_bench_quantize_quick_writes_ratios(tmp_path: Path) -> None:
    import subprocess
    import sys

    bench = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_quantize.py"
    out = tmp_path / "quantize.json"
    proc = subprocess.run(
        [sys.executable, str(bench), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    rows = {r["path"]: r for r in data["results"]}
    assert rows["float32"]["recall@10"] == 1.0 and rows["float32"]["speedup_vs_float32"] == 1.0
    assert rows["int8 x4"]["search_copy_ratio_vs_float32"] == 4.0
    assert rows["binary x4"]["search_copy_ratio_vs_float32"] == 32.0
    assert rows["binary x10"]["recall@10"] >= rows["binary x1"]["recall@10"]
    assert all(0.0 <= r["recall@10"] <= 1.0 and r["query_ms_median"] > 0 for r in rows.values())


def test_builtin_model_ships_a_calibration_that_keeps_its_ranking() -> None:
    """The built-in model's int8 ranges (calibrated on training clips and captions) load with it; int8 codes of
    real captions, dequantised, rank the same nearest caption as the floats."""
    model = AudioTextEmbedder.from_pretrained("audiovec-sounds")
    assert model.calibration is not None and sorted(model.calibration.ranges) == [48, 96, 192, 384]
    texts = ["a dog barks", "a dog barking loudly", "rain falling on a roof", "heavy rain", "a car horn",
             "a truck honks", "church bells ring", "bells chiming"]  # fmt: skip
    floats = model.encode_text(texts)
    codes = model.encode_text(texts, precision="int8")
    np.testing.assert_array_equal(
        codes, quantize_embeddings(floats, "int8", ranges=model.calibration.ranges[384])
    )
    back = dequantize_int8(codes, model.calibration.ranges[384])
    sim_f, sim_q = floats @ floats.T, floats @ back.T
    np.fill_diagonal(sim_f, -2)
    np.fill_diagonal(sim_q, -2)
    assert (sim_f.argmax(1) == sim_q.argmax(1)).all()
    assert (sim_f.argmax(1) == [1, 0, 3, 2, 5, 4, 7, 6]).all()  # the pairs are real neighbours
