"""Search: LanceDB with an ANN index vs exact numpy search, on random unit vectors.

The table holds ``--rows`` random unit vectors of dim 896 (Qwen2.5-0.5B's width, M1's embedding size).
Exact: one query at a time, ``X @ q`` then a partial sort (the float32 matrix lives in RAM). LanceDB: the
index ``audiovec.apps.index`` builds (IVF + HNSW with scalar quantisation, cosine, ``rows // 4096`` partitions,
at most 256) searched as audiovec searches (``nprobes`` = an eighth of the partitions, at least 20;
``refine_factor 10``), or ``--index ivf_pq``. ``--nprobes`` takes a comma list (``auto`` = audiovec's default)
and ``--ef`` (HNSW candidates per partition; ``auto`` = LanceDB's default) sweep the recall/latency trade-off
on one built index (every combination).
Queries: random unit vectors (the hard case: random data has no cluster structure) and near-duplicates of
stored vectors (a query that has real neighbours). Recall@10 is against the exact top 10. ``--data clustered``
stores and queries a mixture instead (``--clusters`` centres, each vector a centre plus noise, cosine ~0.86 to
its centre), closer to real embeddings, which group by sound and meaning.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import base_parser, machine, peak_mb, reset_peak, rss_mb, set_threads, table, write_json

DIM = 896
K = 10


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def clustered(rng: np.random.Generator, centres: np.ndarray, n: int, noise: float = 0.6) -> np.ndarray:
    """Unit vectors drawn around random ``centres``: centre + ``noise`` x a random unit direction."""
    picks = rng.integers(0, len(centres), n)
    x = centres[picks] + noise * unit(rng, n, centres.shape[1])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def exact_topk(x: np.ndarray, q: np.ndarray, k: int = K) -> np.ndarray:
    scores = x @ q
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def build_table(folder: Path, x: np.ndarray, index: str) -> tuple[Any, dict[str, float]]:
    import lancedb
    import pyarrow as pa
    from lancedb.index import IvfHnswSq, IvfPq

    db = lancedb.connect(str(folder))
    start = time.perf_counter()
    tbl = None
    step = 100_000
    for lo in range(0, len(x), step):
        part = x[lo : lo + step]
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(part.reshape(-1)), DIM)
        batch = pa.table({"id": pa.array(np.arange(lo, lo + len(part), dtype=np.int64)), "vector": vectors})
        tbl = db.create_table("vectors", data=batch) if tbl is None else tbl
        if lo:
            tbl.add(batch)
    write_s = time.perf_counter() - start
    from audiovec.apps.index import ann_partitions

    partitions = ann_partitions(len(x))
    if index == "ivf_pq":
        config = IvfPq(distance_type="cosine", num_partitions=partitions, num_sub_vectors=DIM // 16)
    else:
        config = IvfHnswSq(distance_type="cosine", num_partitions=partitions)
    start = time.perf_counter()
    tbl.create_index("vector", config=config)
    return tbl, {"write_s": write_s, "index_build_s": time.perf_counter() - start, "partitions": partitions}


def lance_topk(tbl: Any, q: np.ndarray, nprobes: int, refine: int, ef: int | None = None) -> np.ndarray:
    res = tbl.search(q).distance_type("cosine").limit(K).nprobes(nprobes).refine_factor(refine)
    if ef is not None:
        res = res.ef(ef)
    return np.asarray(res.select(["id", "_distance"]).to_arrow()["id"].to_numpy())


def latencies(fn: Any, queries: np.ndarray, warmup: int = 3) -> tuple[list[float], list[np.ndarray]]:
    for q in queries[:warmup]:
        fn(q)
    times, results = [], []
    for q in queries:
        start = time.perf_counter()
        results.append(fn(q))
        times.append(time.perf_counter() - start)
    return times, results


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, p))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="vectors (default 1,000,000; quick 20,000)")
    parser.add_argument("--queries", type=int, default=None, help="queries per kind (default 100; quick 20)")
    parser.add_argument("--index", choices=("ivf_hnsw_sq", "ivf_pq"), default="ivf_hnsw_sq")
    parser.add_argument(
        "--nprobes",
        default="auto,64,128",
        help="comma list of partitions to probe; auto = audiovec's default",
    )
    parser.add_argument("--data", choices=("random", "clustered"), default="random")
    parser.add_argument("--clusters", type=int, default=1000, help="centres for --data clustered")
    parser.add_argument("--ef", default="auto", help="comma list of HNSW ef values; auto = LanceDB's default")
    parser.add_argument("--refine", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=None, help="where the LanceDB table is written")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    rows = args.rows or (10_000 if args.quick else 1_000_000)
    n_queries = args.queries or (20 if args.quick else 100)
    rng = np.random.default_rng(0)
    reset_peak()
    base_rss = rss_mb()
    centres = unit(rng, args.clusters) if args.data == "clustered" else None

    def draw(n: int) -> np.ndarray:
        return unit(rng, n) if centres is None else clustered(rng, centres, n)

    x = np.empty((rows, DIM), dtype=np.float32)
    for lo in range(0, rows, 100_000):  # chunked, so generation never holds two copies
        x[lo : lo + 100_000] = draw(min(100_000, rows - lo))
    vectors_mb = x.nbytes / 2**20
    random_q = draw(n_queries)
    picks = rng.choice(rows, n_queries, replace=False)
    near_q = x[picks] + 0.05 * unit(rng, n_queries)
    near_q /= np.linalg.norm(near_q, axis=1, keepdims=True)

    folder = Path(tempfile.mkdtemp(prefix="bench_search_", dir=args.workdir))
    try:
        tbl, build = build_table(folder, x, args.index)
        disk_mb = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
        from audiovec.apps.index import default_nprobes

        probes = [default_nprobes(build["partitions"]) if v.strip() == "auto" else int(v)
                  for v in args.nprobes.split(",")]  # fmt: skip
        efs = [None if v.strip() == "auto" else int(v) for v in args.ef.split(",")]
        sweep = [(n, ef) for n in probes for ef in efs]
        out_rows, per_kind = [], {}
        fresh = "random" if centres is None else "clustered"
        for kind, queries in ((fresh, random_q), ("near-duplicate", near_q)):
            ex_t, ex_r = latencies(lambda q: exact_topk(x, q), queries)
            per_kind[kind] = {"exact_numpy": {"p50_ms": pct(ex_t, 50), "p99_ms": pct(ex_t, 99)}, "sweep": []}
            out_rows.append({"queries": kind, "path": "exact numpy", **per_kind[kind]["exact_numpy"],
                             "recall_at_10": 1.0, "top1_agreement": 1.0})  # fmt: skip
            for nprobes, ef in sweep:
                an_t, an_r = latencies(
                    lambda q, n=nprobes, e=ef: lance_topk(tbl, q, n, args.refine, e), queries
                )
                recall = statistics.mean(
                    len(set(a.tolist()) & set(e.tolist())) / K for a, e in zip(an_r, ex_r)
                )
                hit1 = statistics.mean(float(a[0] == e[0]) for a, e in zip(an_r, ex_r))
                ann = {"nprobes": nprobes, "ef": ef, "p50_ms": pct(an_t, 50), "p99_ms": pct(an_t, 99),
                       "recall_at_10": recall, "top1_agreement": hit1,
                       "p50_speedup": pct(ex_t, 50) / pct(an_t, 50)}  # fmt: skip
                per_kind[kind]["sweep"].append(ann)
                label = f"lancedb {args.index} nprobes {nprobes} ef {ef or 'auto'}"
                out_rows.append({"queries": kind, "path": label, **ann})
            first = per_kind[kind]["sweep"][0]  # the first value (auto by default) is the headline
            per_kind[kind]["lancedb_ann"] = first
            per_kind[kind]["p50_speedup"] = first["p50_speedup"]
        peak = peak_mb() - base_rss
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"search, {rows:,} {args.data} unit vectors x {DIM}, {n_queries} queries per kind, one at a time")
    print(f"table write {build['write_s']:.1f} s, index build {build['index_build_s']:.1f} s, "
          f"{build['partitions']} partitions, {disk_mb:.0f} MB on disk, vectors {vectors_mb:.0f} MB in RAM")  # fmt: skip
    print(table(out_rows, ["queries", "path", "p50_ms", "p99_ms", "recall_at_10", "top1_agreement"]))
    result = {
        "machine": machine(),
        "config": {"rows": rows, "data": args.data, "clusters": args.clusters if centres is not None else None,
                   "dim": DIM, "queries": n_queries, "index": args.index, "sweep": sweep,
                   "refine_factor": args.refine, "k": K, "threads": args.threads},
        "build": {**build, "disk_mb": disk_mb, "vectors_ram_mb": vectors_mb, "peak_rss_mb": peak},
        "results": per_kind,
    }  # fmt: skip
    name = "search" if args.data == "random" else "search_clustered"
    path = write_json(name, result, args.out, args.quick)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
