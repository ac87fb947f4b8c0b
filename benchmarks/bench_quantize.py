"""Quantised index search (int8, binary + float re-scoring) vs float32 search, in one run on the same data.

Two data sets: the real built-in model's vectors of a built corpus's clips (``--corpus``; queries: the
captions of its held-out clips, encoded as text, searched against every clip) and clustered synthetic unit
vectors (``--n`` x ``--dim`` around ``--clusters`` centres; queries: fresh draws from the same clusters).
For each, one ``AudioIndex`` per precision holds the same rows; recall@10 is against the exact float top 10
(numpy), latency is per query through ``AudioIndex.search`` (interleaved rounds: the float32 and the
quantised paths share the machine's load), size is the quantised search copy vs the float vectors, and the
whole index folder on disk. Ratios are against float32 in the same run.

    python benchmarks/bench_quantize.py --corpus /work/corpus_full
    python benchmarks/bench_quantize.py --quick          # CI: synthetic only, small

Writes ``benchmarks/results/quantize.json`` and a Markdown table on stdout.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import RESULTS, base_parser, interleaved, machine, set_threads, table, write_json

K = 10
PRECISIONS = ("float32", "int8", "binary")


def parse_args(argv: list[str] | None = None) -> Any:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=None, help="a built corpus folder (real vectors)")
    parser.add_argument("--max-train", type=int, default=1000, help="training clips of --corpus (0: all)")
    parser.add_argument("--n", type=int, default=100_000, help="synthetic rows")
    parser.add_argument("--dim", type=int, default=384, help="synthetic dimension")
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--multipliers", type=int, nargs="+", default=[1, 4, 10])
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.dim, args.clusters, args.queries, args.corpus = 4000, 64, 50, 30, None
    args.repeats = args.repeats or (2 if args.quick else 3)
    args.out = args.out or RESULTS / ("quantize_quick.json" if args.quick else "quantize.json")
    return args


def clustered(rng: np.random.Generator, centres: np.ndarray, n: int, noise: float = 0.6) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)]
    x = x + noise * _unit(rng.standard_normal((n, centres.shape[1])).astype(np.float32))
    return _unit(x)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def real_vectors(corpus: Path, max_train: int | None) -> tuple[np.ndarray, np.ndarray, str]:
    """The built-in model's vectors of the corpus's clips (held-out + synthetic test + the first ``max_train``
    training clips, spread over the manifest) and of the held-out captions (the queries), through the evaluation cache
    (``AUDIOVEC_CACHE``)."""
    from audiovec.data.manifest import read_manifest
    from audiovec.evaluation.evaluate import EmbeddingCache, default_cache_dir, embed_set, model_fingerprint
    from audiovec.evaluation.retrieval_sets import from_manifest
    from audiovec.model import AudioTextEmbedder

    model = AudioTextEmbedder.from_pretrained("audiovec-sounds")
    cache = EmbeddingCache(default_cache_dir(), model_fingerprint(model))
    clips, queries = [], None
    try:
        for name in ("heldout", "synthetic_test", "train"):
            path = corpus / f"{name}.jsonl"
            if not path.is_file():
                continue
            if name == "train" and max_train is not None:  # every n-th row (encoding is the slow part)
                rows = read_manifest(path)
                rows = rows[:: max(1, len(rows) // max_train)][:max_train]
                path = Path(tempfile.mkdtemp(prefix="bench-quantize-")) / "train.jsonl"
                path.write_text("".join(json.dumps(r) + "\n" for r in rows))
            audio, text, _ = embed_set(model, from_manifest(path, name=name), cache=cache)
            clips.append(audio)
            if name == "heldout":
                queries = text
    finally:
        cache.close()
    if queries is None:
        raise SystemExit(f"{corpus}: no heldout.jsonl")
    return np.concatenate(clips).astype(np.float32), queries.astype(np.float32), "audiovec-sounds"


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def measure(name: str, x: np.ndarray, queries: np.ndarray, args: Any, work: Path) -> list[dict[str, Any]]:
    """Every precision (and re-score multiplier) on one data set: recall@10, latency, sizes."""
    from audiovec.apps.index import AudioIndex
    from audiovec.index_quantized import add_vectors, folder_of

    exact = np.argsort(-(queries @ x.T), axis=1)[:, :K]
    keys = [f"{i}" for i in range(len(x))]
    indexes: dict[str, Any] = {}
    build_s: dict[str, float] = {}
    for precision in PRECISIONS:
        index = AudioIndex(work / precision)
        add_vectors(index, keys, x, precision=precision)
        start = time.perf_counter()
        index.search(queries[0], k=K)  # builds (and saves) the quantised copy
        build_s[precision] = time.perf_counter() - start
        indexes[precision] = index
    paths = {"float32": (indexes["float32"], None)}
    for precision in PRECISIONS[1:]:
        for m in args.multipliers:
            paths[f"{precision} x{m}"] = (indexes[precision], m)

    found: dict[str, list[set[int]]] = {}
    for label, (index, m) in paths.items():
        found[label] = [{int(h.path) for h in index.search(q, k=K, rescore_multiplier=m)} for q in queries]

    def run_all(index: Any, m: int | None) -> Any:
        return lambda: [index.search(q, k=K, rescore_multiplier=m) for q in queries]

    times = interleaved({label: run_all(*spec) for label, spec in paths.items()}, args.repeats)
    float_bytes = x.nbytes
    rows = []
    for label, (index, _) in paths.items():
        precision = label.split()[0]
        recall = float(np.mean([len(f & set(e.tolist())) / K for f, e in zip(found[label], exact)]))
        copy = folder_of(index.dir) / f"{precision}.codes.npy"
        search_bytes = np.load(copy, mmap_mode="r").nbytes if copy.is_file() else float_bytes
        per_query = [t / len(queries) for t in times[label]]
        ratios = [f / t for f, t in zip(times["float32"], times[label], strict=True)]
        rows.append(
            {
                "data": name, "rows": len(x), "dim": x.shape[1], "queries": len(queries), "path": label,
                "recall@10": round(recall, 4),
                "query_ms_median": round(1000 * statistics.median(per_query), 3),
                "speedup_vs_float32": round(statistics.median(ratios), 3),
                "search_copy_bytes": int(search_bytes),
                "search_copy_ratio_vs_float32": round(float_bytes / search_bytes, 2),
                "index_folder_bytes": folder_bytes(index.dir),
                "quantise_s": round(build_s[precision], 3),
            }
        )  # fmt: skip
    for row in rows:
        row["index_folder_ratio_vs_float32"] = round(
            row["index_folder_bytes"] / rows[0]["index_folder_bytes"], 3
        )
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    set_threads(args.threads)
    rng = np.random.default_rng(0)
    centres = _unit(rng.standard_normal((args.clusters, args.dim)).astype(np.float32))
    sets = {
        f"clustered {args.n}x{args.dim}": (
            clustered(rng, centres, args.n),
            clustered(rng, centres, args.queries),
        )
    }
    if args.corpus is not None:
        x, q, _ = real_vectors(args.corpus, args.max_train or None)
        sets[f"audiovec-sounds corpus clips {len(x)}x{x.shape[1]}"] = (x, q)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-quantize-") as tmp:
        for number, (name, (x, q)) in enumerate(sets.items()):
            rows += measure(name, x, q, args, Path(tmp) / f"set{number}")
    columns = ["data", "path", "recall@10", "query_ms_median", "speedup_vs_float32",
               "search_copy_ratio_vs_float32", "index_folder_ratio_vs_float32"]  # fmt: skip
    print(table(rows, columns))
    data = {"machine": machine(), "k": K, "threads": args.threads, "repeats": args.repeats, "results": rows}
    write_json("quantize", data, args.out, args.quick)
    return data


if __name__ == "__main__":
    main()
    sys.exit(0)
