"""Metrics against hand-computed cases and against pytrec_eval (trec_eval), ties included."""

from __future__ import annotations

from math import log2

import numpy as np
import pytest
import pytrec_eval
from hypothesis import given, settings
from hypothesis import strategies as st

from audiovec.errors import DataError
from audiovec.evaluation import metrics as M

KS = (1, 3, 5, 10)
TREC = {"success", "recall", "P", "map_cut", "ndcg_cut"}
OURS_TO_TREC = {
    "hit_rate": "success",
    "recall": "recall",
    "precision": "P",
    "map": "map_cut",
    "ndcg": "ndcg_cut",
}


def trec_scores(scores: np.ndarray, relevant: list[list[int]], ks=KS) -> dict[str, float]:
    """Average pytrec_eval measures, with doc ids named so its tie rule equals ours."""
    n_q, n_items = scores.shape
    ids = M.trec_doc_ids(n_items)
    qrels = {f"q{q}": {ids[i]: 1 for i in rel} for q, rel in enumerate(relevant)}
    run = {f"q{q}": {ids[i]: float(scores[q, i]) for i in range(n_items)} for q in range(n_q)}
    cut = ",".join(map(str, ks))
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {f"{m}.{cut}" for m in TREC} | {"recip_rank"})
    per_q = evaluator.evaluate(run)
    out = {}
    for ours, theirs in OURS_TO_TREC.items():
        for k in ks:
            out[f"{ours}@{k}"] = float(np.mean([v[f"{theirs}_{k}"] for v in per_q.values()]))
    out["recip_rank"] = float(np.mean([v["recip_rank"] for v in per_q.values()]))
    return out


def assert_matches_trec(scores: np.ndarray, relevant: list[list[int]]) -> None:
    ours = M.metrics_from_scores(scores, relevant, ks=(*KS, scores.shape[1]))
    theirs = trec_scores(scores, relevant)
    for name, value in theirs.items():
        mine = ours[f"mrr@{scores.shape[1]}"] if name == "recip_rank" else ours[name]
        assert mine == pytest.approx(value, abs=1e-9), name


def random_relevance(rng: np.random.Generator, n_q: int, n_items: int, max_rel: int) -> list[list[int]]:
    return [
        sorted(rng.choice(n_items, size=int(rng.integers(1, max_rel + 1)), replace=False).tolist())
        for _ in range(n_q)
    ]


def test_hand_computed_with_ties_and_two_relevant():
    scores = np.array([[0.1, 0.9, 0.5, 0.9, 0.3]], dtype=np.float32)
    # ranking: item1 (0.9, lower index wins the tie), item3, item2, item4, item0
    out = M.metrics_from_scores(scores, [[3, 4]], ks=(1, 2, 5))
    assert out["hit_rate@1"] == 0.0 and out["hit_rate@2"] == 1.0
    assert out["recall@2"] == 0.5 and out["recall@5"] == 1.0
    assert out["precision@2"] == 0.5
    assert out["mrr@1"] == 0.0 and out["mrr@5"] == 0.5
    assert out["map@5"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert out["ndcg@5"] == pytest.approx((1 / log2(3) + 1 / log2(5)) / (1 + 1 / log2(3)))
    assert out["median_rank"] == 2.0


def test_tie_goes_to_lower_index():
    scores = np.zeros((2, 4), dtype=np.float32)
    ranks, _ = M.relevant_ranks_from_scores(scores, [[0], [3]])
    assert ranks[:, 0].tolist() == [1, 4]


def test_random_matrix_matches_pytrec_eval():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((60, 40)).astype(np.float32)
    assert_matches_trec(scores, random_relevance(rng, 60, 40, 5))


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_heavily_tied_matrix_matches_pytrec_eval(levels):
    rng = np.random.default_rng(levels)
    scores = rng.integers(0, levels, size=(50, 30)).astype(np.float32)
    assert_matches_trec(scores, random_relevance(rng, 50, 30, 6))


@settings(max_examples=40, deadline=None)
@given(
    n_items=st.integers(1, 15),
    n_q=st.integers(1, 6),
    levels=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_matches_pytrec_eval(n_items, n_q, levels, seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, size=(n_q, n_items)).astype(np.float32) / levels
    assert_matches_trec(scores, random_relevance(rng, n_q, n_items, min(4, n_items)))


def test_embeddings_path_equals_score_path_and_chunking_is_invariant():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((37, 8)).astype(np.float32)
    items = rng.standard_normal((23, 8)).astype(np.float32)
    items[5] = items[2]  # exact duplicate item: a real tie
    rel = random_relevance(rng, 37, 23, 3)
    ranks_a, counts = M.relevant_ranks(q, items, rel, chunk_size=4)
    ranks_b, _ = M.relevant_ranks(q, items, rel)
    ranks_c, _ = M.relevant_ranks_from_scores(q @ items.T, rel, chunk_size=5)
    np.testing.assert_array_equal(ranks_a, ranks_b)
    np.testing.assert_array_equal(ranks_a, ranks_c)
    assert counts.tolist() == [len(r) for r in rel]


def test_ranks_agree_with_a_full_stable_sort():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 3, size=(20, 12)).astype(np.float32)
    rel = random_relevance(rng, 20, 12, 4)
    ranks, _ = M.relevant_ranks_from_scores(scores, rel)
    for q in range(20):
        order = np.lexsort((np.arange(12), -scores[q]))  # score desc, index asc
        position = {int(item): pos + 1 for pos, item in enumerate(order)}
        assert sorted(ranks[q][ranks[q] > 0].tolist()) == sorted(position[i] for i in rel[q])


@pytest.mark.parametrize("chunk", [None, 3])
def test_top_k_is_deterministic_with_ties(chunk):
    rng = np.random.default_rng(3)
    q = rng.integers(-1, 2, size=(15, 3)).astype(np.float32)
    items = rng.integers(-1, 2, size=(40, 3)).astype(np.float32)
    idx, val = M.top_k(q, items, 7, chunk_size=chunk)
    scores = q @ items.T
    for row in range(15):
        expected = np.lexsort((np.arange(40), -scores[row]))[:7]
        assert idx[row].tolist() == expected.tolist()
        np.testing.assert_allclose(val[row], scores[row, expected])


def test_top_k_caps_k_at_item_count():
    idx, _ = M.top_k(np.ones((2, 2)), np.eye(2), 10)
    assert idx.shape == (2, 2)


def test_chance_levels():
    out = M.chance_metrics(5, [2], ks=(2,))
    assert out["hit_rate@2"] == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert out["recall@2"] == pytest.approx(2 / 5)
    # random scores average out to the chance level
    rng = np.random.default_rng(4)
    rel = [[0, 1]] * 4000
    sim = M.metrics_from_scores(rng.random((4000, 5)), rel, ks=(2,))
    assert sim["hit_rate@2"] == pytest.approx(0.7, abs=0.03)


@pytest.mark.parametrize(
    ("relevant", "message"),
    [
        ([[0], []], "no relevant"),
        ([[0], [9]], "outside"),
        ([[1, 1], [0]], "twice"),
        ([[0]], "relevance lists"),
    ],
)
def test_bad_relevance_is_an_error(relevant, message):
    with pytest.raises(DataError, match=message):
        M.metrics_from_scores(np.zeros((2, 3)), relevant)


def test_empty_and_nan_inputs_are_errors():
    with pytest.raises(DataError, match="no items"):
        M.relevant_ranks(np.zeros((1, 4)), np.zeros((0, 4)), [[0]])
    with pytest.raises(DataError, match="no queries"):
        M.relevant_ranks(np.zeros((0, 4)), np.zeros((3, 4)), [])
    with pytest.raises(DataError, match="NaN"):
        M.metrics_from_scores(np.array([[np.nan, 1.0]]), [[0]])
    with pytest.raises(DataError, match="dim"):
        M.relevant_ranks(np.zeros((1, 4)), np.zeros((3, 5)), [[0]])


def test_large_corpus_in_bounded_chunks():
    rng = np.random.default_rng(5)
    items = rng.standard_normal((20_000, 16)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    q = items[:300] + 0.01 * rng.standard_normal((300, 16)).astype(np.float32)
    out = M.retrieval_metrics(q, items, [[i] for i in range(300)], chunk_size=64)
    assert out["hit_rate@1"] > 0.95  # each query sits next to its own item


@pytest.mark.slow
def test_hundred_thousand_items():
    rng = np.random.default_rng(6)
    items = rng.standard_normal((100_000, 32)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    q = items[:2000] + 0.01 * rng.standard_normal((2000, 32)).astype(np.float32)
    out = M.retrieval_metrics(q, items, [[i] for i in range(2000)])
    assert out["hit_rate@5"] > 0.99
