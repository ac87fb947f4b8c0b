"""The HNSW sidecar behind AudioIndex: the right rows on planted and clustered vectors, sync on add/delete."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("usearch")
pa = pytest.importorskip("pyarrow")

from audiovec import ann  # noqa: E402
from audiovec.apps.index import AudioIndex, IndexStoreError  # noqa: E402
from audiovec.errors import ConfigError  # noqa: E402
from audiovec.model import AudioTextEmbedder  # noqa: E402

DIM = 64


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered(rng: np.random.Generator, n: int, clusters: int = 40, noise: float = 0.6) -> np.ndarray:
    centres = unit(rng.standard_normal((clusters, DIM)))
    x = centres[rng.integers(0, clusters, n)] + noise / np.sqrt(DIM) * rng.standard_normal((n, DIM))
    return unit(x)


def put(index: AudioIndex, vectors: np.ndarray, first: int = 0) -> None:
    """Rows ``clip{i}.wav`` window 0 (i from ``first``) with these vectors, written as ``add`` writes them."""
    n = len(vectors)
    ids = range(first, first + n)
    rows = pa.table(
        {
            "path": [f"clip{i}.wav" for i in ids],
            "start": np.zeros(n),
            "end": np.ones(n),
            "window": np.zeros(n, np.int32),
            "n_windows": np.ones(n, np.int32),
            "window_s": np.ones(n),
            "hash": ["0" * 64] * n,
            "model": ["planted"] * n,
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIM),
        },
        schema=index.schema(DIM),
    )
    index.table(DIM).add(rows)
    index.write_meta({"format": 1, "table": "windows", "dim": DIM, "window_seconds": 1.0})


def ids(hits) -> list[int]:
    return [int(h.path[4:-4]) for h in hits]


def exact(x: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    return np.argsort(-(x @ q), kind="stable")[:k].tolist()


@pytest.fixture
def planted(tmp_path: Path) -> tuple[AudioIndex, np.ndarray]:
    rng = np.random.default_rng(0)
    x = clustered(rng, 2000)
    index = AudioIndex(tmp_path / "db")
    put(index, x)
    # one build thread: a multi-threaded HNSW build inserts in a core-count-dependent order, so the graph
    # (and which near-tie neighbour an approximate search misses) would differ from machine to machine
    index.build_index("hnsw", dtype="i8", threads=1)
    return index, x


def test_planted_neighbours_come_back_with_exact_scores(planted) -> None:
    index, x = planted
    assert ann.exists(index.dir) and index.has_ann()
    rng = np.random.default_rng(1)
    for row in (3, 777, 1999):
        query = unit(x[row] + 0.02 * rng.standard_normal(DIM))
        hits = index.search(query, k=5)
        assert ids(hits) == exact(x, query, 5)
        assert hits[0].path == f"clip{row}.wav"
        # scores are the exact cosines of the stored float32 vectors, not int8 approximations
        np.testing.assert_allclose([h.score for h in hits], np.sort(x @ query)[::-1][:5], atol=1e-5)


def test_recall_floor_on_clustered_data(planted) -> None:
    index, x = planted
    queries = clustered(np.random.default_rng(2), 50)
    recall = np.mean([len(set(ids(index.search(q, k=10))) & set(exact(x, q, 10))) / 10 for q in queries])
    assert recall >= 0.95


def test_rescore_multiplier_widens_the_exactly_rescored_candidates(planted, monkeypatch) -> None:
    """``rescore_multiplier`` m re-scores k * m graph candidates (default 2 * k): more candidates never lose
    recall at ef 16, and the rows read from LanceDB grow accordingly. (The graph's search width is at least the
    candidates asked for, so a larger multiplier also widens the graph search: both are what it buys.)"""
    index, x = planted
    queries = clustered(np.random.default_rng(3), 40)
    read: list[int] = []
    real = ann.HnswSidecar.candidates

    def counting(self, query, count, ef=None):
        read.append(count)
        return real(self, query, count, ef)

    monkeypatch.setattr(ann.HnswSidecar, "candidates", counting)

    def recall(**kw) -> float:
        found = [set(ids(index.search(q, k=10, ef=16, **kw))) & set(exact(x, q, 10)) for q in queries]
        return float(np.mean([len(f) / 10 for f in found]))

    narrow, wide = recall(), recall(rescore_multiplier=8)
    assert read[: len(queries)] == [20] * len(queries) and read[len(queries) :] == [80] * len(queries)
    assert wide >= narrow and wide >= 0.97, (narrow, wide)
    with pytest.raises(ValueError, match="rescore_multiplier must be >= 1"):
        index.search(queries[0], k=10, rescore_multiplier=0)


def test_stays_in_sync_after_add_and_delete(planted) -> None:
    index, x = planted
    rng = np.random.default_rng(3)
    new = unit(rng.standard_normal((5, DIM)))  # far from every cluster: only findable if indexed
    put(index, new, first=len(x))
    for i, v in enumerate(new):  # a search syncs first when the table moved on
        assert ids(index.search(v, k=1)) == [len(x) + i]
    assert len(ann.sidecar(index).graph) == len(x) + 5
    index.table().delete("path = 'clip2001.wav'")
    assert index.ensure_ann() is True  # what AudioIndex.add runs after writing: removes the deleted row
    assert len(ann.sidecar(index).graph) == len(x) + 4
    assert ids(index.search(new[1], k=1)) != [2001]
    assert ids(index.search(new[2], k=1)) == [2002]
    reopened = AudioIndex.open(index.dir)  # the graph on disk is the synced one
    assert ids(reopened.search(new[3], k=1)) == [2003]
    assert ann.HnswSidecar(index.dir).settings["rows"] == len(x) + 4


@pytest.mark.slow
def test_add_with_a_model_keeps_the_graph_in_sync(
    tmp_path: Path, pretrained_model_dir: Path, fsdd_clips
) -> None:
    model = AudioTextEmbedder.from_pretrained(pretrained_model_dir)
    index = AudioIndex(tmp_path / "db")
    index.add(model, fsdd_clips[:2], model_dir=pretrained_model_dir)
    index.build_index("hnsw", dtype="f32")
    report = index.add(model, fsdd_clips[:4], model_dir=pretrained_model_dir)
    assert report.ann_built and len(report.added) == 2
    stored = index.table().search().select(["path", "window", "vector"]).limit(None).to_arrow().to_pylist()
    assert len(ann.sidecar(index).graph) == len(stored) == index.count()
    for row in stored:  # each stored vector finds its own row (cosine 1.0) through the graph; the pretrained
        # model keeps the clips apart (the tiny random one puts them all within cosine 1e-4: ties)
        (hit,) = index.search(np.asarray(row["vector"], np.float32), k=1)
        assert (hit.path, hit.window) == (row["path"], row["window"])


def test_back_to_lancedb_and_errors(planted, tmp_path: Path) -> None:
    index, x = planted
    index.build_index("lancedb")
    assert not ann.exists(index.dir) and index.has_ann()
    assert ids(index.search(x[5], k=1)) == [5]
    with pytest.raises(ConfigError, match="dtype"):
        index.build_index("hnsw", dtype="i4")
    with pytest.raises(ConfigError, match="kind"):
        index.build_index("annoy")
    with pytest.raises(IndexStoreError, match="empty"):
        AudioIndex(tmp_path / "empty").build_index("hnsw")
