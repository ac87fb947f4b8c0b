"""``audiovec encode --engine ray`` (W Ray actors) against the torchrun path (W ranks) and one process, on
the same clips, built-in model, 1 thread per worker; each run a fresh command, as a user starts it.

Each path runs twice, on all ``--clips`` files and on ``--startup-clips`` of them, interleaved, so the
report separates the fixed cost (start-up: Ray instance / process group, model loading per worker) from the
marginal throughput ((N - n) / (t_N - t_n) files/s). Vectors of both parallel paths are checked against
the single process. ``--quick`` (CI): 6 files, one run per path, no start-up run.

    python benchmarks/bench_ray_encode.py [--clips 48] [--seconds 8] [--workers 2] [--repeats 1]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import base_parser, machine, make_clips, write_json


def _command(path: str, folder: Path, out: Path, workers: int) -> list[str]:
    encode = ["-m", "audiovec", "encode", str(folder), "--out", str(out), "--no-progress"]
    if path == "one process":
        return [sys.executable, *encode]
    if path == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(workers), *encode]
    return [sys.executable, *encode, "--engine", "ray", "--workers", str(workers), "--cpus-per-worker", "1"]


def _vectors(path: str, out: Path, folder: Path) -> dict[str, np.ndarray]:
    if path == "ray":
        from audiovec.ray_engine import read_vectors

        paths, vectors = read_vectors(out)
        return {Path(p).name: v for p, v in zip(paths, vectors)}
    import json

    ids = [json.loads(line)["path"] for line in out.with_suffix(".ids.jsonl").read_text().splitlines()]
    return {Path(p).name: v for p, v in zip(ids, np.load(out))}


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=None, help="files in the full run (default 48; quick 6)")
    parser.add_argument(
        "--startup-clips", type=int, default=None, help="files in the start-up run (default 2; quick 0: none)"
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each clip (default 8 s)")
    parser.add_argument("--workers", type=int, default=2, help="torchrun ranks = Ray actors (default 2)")
    args = parser.parse_args(argv)
    import soundfile as sf

    n = args.clips or (6 if args.quick else 48)
    small = min(args.startup_clips if args.startup_clips is not None else (0 if args.quick else 2), n - 1)
    repeats = args.repeats or 1
    root = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    folders = {n: root / "all", **({small: root / "startup"} if small else {})}
    for count, folder in folders.items():
        folder.mkdir()
        for i, wave in enumerate(make_clips([args.seconds] * count, seed=1)):
            sf.write(folder / f"clip_{i:04d}.wav", wave, 16000)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    paths = ["one process", "torchrun", "ray"]
    seconds: dict[str, dict[int, list[float]]] = {p: {c: [] for c in folders} for p in paths}
    vectors: dict[str, dict[str, np.ndarray]] = {}
    for repeat in range(repeats):
        for count in folders:
            for path in paths:
                out = root / f"{path.replace(' ', '_')}-{count}-{repeat}" / ("v.npy" if path != "ray" else "")
                out.parent.mkdir(parents=True, exist_ok=True)
                start = time.perf_counter()
                proc = subprocess.run(
                    _command(path, folders[count], out, args.workers), env=env, capture_output=True, text=True
                )
                seconds[path][count].append(time.perf_counter() - start)
                if proc.returncode != 0:
                    print(proc.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"{path} failed (exit {proc.returncode})")
                if count == n and repeat == 0:
                    vectors[path] = _vectors(path, out, folders[n])
    report: dict[str, dict[str, float]] = {}
    for path in paths:
        full = statistics.median(seconds[path][n])
        startup = statistics.median(seconds[path][small]) if small else 0.0
        marginal = (n - small) / max(full - startup, 1e-9)  # without a start-up run: = files/s
        report[path] = {"wall_s": full, "files_per_s": n / full, "startup_run_s": startup,
                        "marginal_files_per_s": marginal}  # fmt: skip
        print(f"{path:12s} {n} files {full:7.1f} s ({n / full:5.2f} files/s); {small} files {startup:6.1f} s; "
              f"marginal {marginal:5.2f} files/s")  # fmt: skip
    ref = vectors["one process"]
    diffs = {
        path: float(max(np.abs(vectors[path][k] - ref[k]).max() for k in ref)) for path in ("torchrun", "ray")
    }
    assert all(sorted(vectors[p]) == sorted(ref) for p in vectors), "a path lost files"
    ratios = {
        "ray_over_torchrun_files_per_s": report["ray"]["files_per_s"] / report["torchrun"]["files_per_s"],
        "ray_over_torchrun_marginal": report["ray"]["marginal_files_per_s"]
        / report["torchrun"]["marginal_files_per_s"],
        "torchrun_over_one_process_marginal": report["torchrun"]["marginal_files_per_s"]
        / report["one process"]["marginal_files_per_s"],
    }
    print(f"max |diff| vs one process: {diffs}; ratios: {ratios}")
    write_json("ray_encode", {"machine": machine(), "clips": n, "startup_clips": small,
                              "clip_seconds": args.seconds, "workers": args.workers, "threads": args.threads,
                              "repeats": repeats, "seconds": {p: {str(k): v for k, v in s.items()}
                                                              for p, s in seconds.items()},
                              "paths": report, "ratios": ratios, "max_abs_diff_vs_one_process": diffs},
               args.out, args.quick)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
