"""Retrieval metrics for text→audio and audio→text, with several relevant items per query.

Everything is computed from the exact 1-based rank of every relevant item, so one pass over the score
matrix gives every metric at every cut-off. Scores are computed in chunks of queries, so 100k × 100k
fits in memory.

Ranking rule (deterministic): items are sorted by score, highest first; equal scores are ordered by
item index, lowest first. ``pytrec_eval`` (and therefore MTEB) instead orders ties by document id
*descending*; naming item ``i`` of ``n`` with a zero-padded ``n - 1 - i`` makes the two rules agree
(see :func:`trec_doc_ids`).

Definitions (``R`` = number of relevant items of a query, binary relevance), averaged over queries:

- ``hit_rate@k``: 1 if any relevant item is in the top k. This is the seed's cvR@k and MTEB's
  ``hit_rate_at_k`` (called ``cv_recall_at_k`` before mteb 2.10), trec_eval's ``success_k``.
- ``recall@k``: relevant items in the top k / R (trec_eval ``recall_k``).
- ``precision@k``: relevant items in the top k / k (trec_eval ``P_k``).
- ``map@k``: sum over relevant items ranked ≤ k of precision at their rank, / R (trec_eval ``map_cut_k``).
- ``ndcg@k``: binary-gain DCG of the top k / ideal DCG of min(R, k) items (trec_eval ``ndcg_cut_k``).
- ``mrr@k``: 1 / rank of the first relevant item if ≤ k, else 0.
- ``median_rank`` / ``mean_rank``: of the first relevant item (lower is better).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

import numpy as np
import torch

from audiovec.errors import DataError

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)
METRIC_FAMILIES: tuple[str, ...] = ("hit_rate", "recall", "precision", "map", "ndcg", "mrr")

ArrayLike = np.ndarray | torch.Tensor


def _as_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim != 2:
        raise DataError(f"{name}: expected a 2-D array, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    return t


def _pad_relevant(relevant: Sequence[Sequence[int]], n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Relevant item indices as a (Q, Rmax) long tensor padded with -1, and R per query."""
    counts = []
    for q, rel in enumerate(relevant):
        rel = list(rel)
        if not rel:
            raise DataError(f"query {q} has no relevant item; drop it or give it one")
        if len(set(rel)) != len(rel):
            raise DataError(f"query {q} lists a relevant item twice: {rel}")
        bad = [r for r in rel if not 0 <= int(r) < n_items]
        if bad:
            raise DataError(f"query {q}: relevant item index {bad[0]} outside 0..{n_items - 1}")
        counts.append(len(rel))
    width = max(counts) if counts else 0
    padded = torch.full((len(counts), width), -1, dtype=torch.long)
    for q, rel in enumerate(relevant):
        padded[q, : len(rel)] = torch.as_tensor(list(rel), dtype=torch.long)
    return padded, torch.as_tensor(counts, dtype=torch.long)


def _ranks_in_chunk(scores: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
    """1-based ranks (deterministic rule above) of the relevant items of each row; 0 where padded."""
    if torch.isnan(scores).any():
        raise DataError("score matrix contains NaN; check the embeddings")
    n_items = scores.shape[1]
    positions = torch.arange(n_items, device=scores.device)
    ranks = torch.zeros(rel.shape, dtype=torch.long)
    for j in range(rel.shape[1]):
        col = rel[:, j]
        valid = col >= 0
        if not valid.any():
            continue
        idx = col.clamp(min=0)
        target = scores.gather(1, idx[:, None])  # (B, 1)
        higher = (scores > target).sum(1)
        tied_before = ((scores == target) & (positions[None, :] < idx[:, None])).sum(1)
        ranks[:, j] = torch.where(valid, higher + tied_before + 1, 0).cpu()
    return ranks


def _default_chunk(n_items: int, budget: int = 32_000_000) -> int:
    return max(1, min(4096, budget // max(1, n_items)))


def relevant_ranks(
    queries: ArrayLike,
    items: ArrayLike,
    relevant: Sequence[Sequence[int]],
    *,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Ranks of each query's relevant items when items are scored by dot product with the query.

    Returns ``(ranks, counts)``: ranks is (Q, Rmax) int64, 1-based, 0 in padding; counts is R per query.
    Pass L2-normalised embeddings for cosine similarity.
    """
    q = _as_tensor(queries, "queries")
    it = _as_tensor(items, "items")
    _check_shapes(q.shape[0], it.shape[0], len(relevant))
    if q.shape[1] != it.shape[1]:
        raise DataError(f"query dim {q.shape[1]} != item dim {it.shape[1]}")
    rel, counts = _pad_relevant(relevant, it.shape[0])
    it = it.to(q.dtype)
    step = chunk_size or _default_chunk(it.shape[0])
    out = []
    with torch.no_grad():
        for start in range(0, q.shape[0], step):
            scores = q[start : start + step] @ it.T
            out.append(_ranks_in_chunk(scores, rel[start : start + step].to(scores.device)))
    return torch.cat(out).numpy(), counts.numpy()


def relevant_ranks_from_scores(
    scores: ArrayLike, relevant: Sequence[Sequence[int]], *, chunk_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`relevant_ranks`, from a precomputed (Q, N) score matrix."""
    s = _as_tensor(scores, "scores")
    _check_shapes(s.shape[0], s.shape[1], len(relevant))
    rel, counts = _pad_relevant(relevant, s.shape[1])
    step = chunk_size or _default_chunk(s.shape[1])
    out = [_ranks_in_chunk(s[i : i + step], rel[i : i + step]) for i in range(0, s.shape[0], step)]
    return torch.cat(out).numpy(), counts.numpy()


def _check_shapes(n_queries: int, n_items: int, n_relevant: int) -> None:
    if n_queries == 0:
        raise DataError("no queries to evaluate")
    if n_items == 0:
        raise DataError("no items to retrieve from")
    if n_relevant != n_queries:
        raise DataError(f"{n_queries} queries but {n_relevant} relevance lists")


def per_query_metrics(
    ranks: np.ndarray, counts: np.ndarray, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, np.ndarray]:
    """Every metric for every query, from :func:`relevant_ranks` output."""
    ranks = np.asarray(ranks, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    valid = ranks > 0
    big = np.iinfo(np.int64).max
    first = np.where(valid, ranks, big).min(axis=1)
    # precision at each relevant item's own rank: (# relevant ranked at or above it) / rank
    sorted_ranks = np.sort(np.where(valid, ranks, big), axis=1)
    order = np.arange(1, ranks.shape[1] + 1)[None, :]
    sorted_valid = sorted_ranks < big
    prec_at_rel = np.where(sorted_valid, order / np.where(sorted_valid, sorted_ranks, 1), 0.0)
    gains = np.where(valid, 1.0 / np.log2(np.where(valid, ranks, 1) + 1.0), 0.0)
    ideal_table = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, max(ks, default=1) + 2)))])
    out: dict[str, np.ndarray] = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"cut-off k must be >= 1, got {k}")
        in_k = valid & (ranks <= k)
        found = in_k.sum(axis=1)
        ideal = ideal_table[np.minimum(counts, k)]
        out[f"hit_rate@{k}"] = (found > 0).astype(np.float64)
        out[f"recall@{k}"] = found / counts
        out[f"precision@{k}"] = found / k
        out[f"map@{k}"] = np.where(sorted_ranks <= k, prec_at_rel, 0.0).sum(axis=1) / counts
        out[f"ndcg@{k}"] = np.where(in_k, gains, 0.0).sum(axis=1) / ideal
        out[f"mrr@{k}"] = np.where(first <= k, 1.0 / first, 0.0)
    out["first_rank"] = first.astype(np.float64)
    return out


def summarize(per_query: dict[str, np.ndarray]) -> dict[str, float]:
    """Average the per-query metrics; rank statistics become median/mean of the first relevant rank."""
    out = {name: float(v.mean()) for name, v in per_query.items() if name != "first_rank"}
    first = per_query["first_rank"]
    out["median_rank"] = float(np.median(first))
    out["mean_rank"] = float(first.mean())
    return out


def retrieval_metrics(
    queries: ArrayLike,
    items: ArrayLike,
    relevant: Sequence[Sequence[int]],
    *,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int | None = None,
) -> dict[str, float]:
    """All metrics (see module doc) for dot-product retrieval of ``items`` by ``queries``."""
    ranks, counts = relevant_ranks(queries, items, relevant, chunk_size=chunk_size)
    return summarize(per_query_metrics(ranks, counts, ks))


def metrics_from_scores(
    scores: ArrayLike, relevant: Sequence[Sequence[int]], *, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """All metrics from a precomputed (Q, N) score matrix."""
    ranks, counts = relevant_ranks_from_scores(scores, relevant)
    return summarize(per_query_metrics(ranks, counts, ks))


def chance_metrics(n_items: int, counts: Sequence[int], ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Expected hit_rate@k and recall@k of a uniformly random ranking (the floor a model must beat)."""
    counts = [int(c) for c in counts]
    if n_items < 1 or not counts:
        raise DataError("chance levels need at least one item and one query")
    out: dict[str, float] = {}
    for k in ks:
        kk = min(k, n_items)
        total = comb(n_items, kk)
        miss = [comb(n_items - r, kk) / total if n_items - r >= kk else 0.0 for r in counts]
        out[f"hit_rate@{k}"] = float(1.0 - np.mean(miss))
        out[f"recall@{k}"] = kk / n_items
    return out


def top_k(
    queries: ArrayLike, items: ArrayLike, k: int, *, chunk_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The k best items per query by dot product, ordered by the same rule as the metrics.

    Returns ``(indices, scores)``, each (Q, min(k, N)). Memory stays bounded by the chunk size.
    """
    q = _as_tensor(queries, "queries")
    it = _as_tensor(items, "items").to(q.dtype)
    _check_shapes(q.shape[0], it.shape[0], q.shape[0])
    k = min(int(k), it.shape[0])
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    step = chunk_size or _default_chunk(it.shape[0])
    all_idx, all_val = [], []
    with torch.no_grad():
        for start in range(0, q.shape[0], step):
            idx, val = _top_k_chunk(q[start : start + step] @ it.T, k)
            all_idx.append(idx)
            all_val.append(val)
    return torch.cat(all_idx).numpy(), torch.cat(all_val).numpy()


def _top_k_chunk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    if torch.isnan(scores).any():
        raise DataError("score matrix contains NaN; check the embeddings")
    kth = torch.topk(scores, k, dim=1).values[:, -1:]
    above = scores > kth
    need = k - above.sum(1, keepdim=True)
    tied = scores == kth
    keep = above | (tied & (tied.cumsum(1) <= need))  # exactly k per row, lowest-index ties first
    idx = keep.nonzero()[:, 1].view(scores.shape[0], k)  # ascending item index within each row
    val = scores.gather(1, idx)
    val, order = torch.sort(val, dim=1, descending=True, stable=True)
    return idx.gather(1, order), val


def trec_doc_ids(n_items: int) -> list[str]:
    """Item ids whose descending string order is ascending index, so trec_eval's tie rule matches ours."""
    width = len(str(max(n_items - 1, 0)))
    return [f"{n_items - 1 - i:0{width}d}" for i in range(n_items)]
