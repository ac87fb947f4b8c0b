"""How long the built-in model takes to load by name (compose the two PyPI halves in memory + apply the
shipped delta) against loading the same model from its ``save_pretrained`` folder, in one process,
interleaved and repeated.

    python benchmarks/bench_builtin_load.py [--repeats 5]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import base_parser, machine, set_threads, write_json


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    set_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 5)
    from audiovec.build.pretrained import DEFAULT_MODEL
    from audiovec.model import AudioTextEmbedder

    folder = Path(tempfile.mkdtemp()) / "saved"
    AudioTextEmbedder.from_pretrained(DEFAULT_MODEL).save_pretrained(folder)
    times: dict[str, list[float]] = {"built-in by name": [], "saved folder": []}
    for _ in range(repeats):
        for name, source in (("built-in by name", DEFAULT_MODEL), ("saved folder", folder)):
            start = time.perf_counter()
            AudioTextEmbedder.from_pretrained(source)
            times[name].append(time.perf_counter() - start)
    medians = {k: statistics.median(v) for k, v in times.items()}
    ratio = statistics.median(b / f for b, f in zip(times["built-in by name"], times["saved folder"]))
    for name, values in times.items():
        print(f"{name:18s} median {medians[name]:.2f} s  (min {min(values):.2f}, max {max(values):.2f})")
    print(f"built-in / folder: {ratio:.2f}x")
    write_json("builtin_load", {"machine": machine(), "repeats": repeats, "seconds": times,
                                "median_s": medians, "ratio_builtin_over_folder": ratio}, args.out, args.quick)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
