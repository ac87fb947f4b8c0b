"""Write the built-in model's int8 calibration (``builtin/audiovec-sounds/quantization.json``): per-dimension
ranges of its vectors of training clips and captions of a built corpus (never the held-out split), for the
full size and the 1/2, 1/4, 1/8 prefixes, so ``encode_*(precision="int8")`` works out of the box.

    python benchmarks/calibrate_builtin.py --corpus /work/corpus_full --max-train 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from audiovec.build.pretrained import builtin_dir
    from audiovec.data.manifest import read_manifest
    from audiovec.evaluation.evaluate import EmbeddingCache, default_cache_dir, embed_set, model_fingerprint
    from audiovec.evaluation.retrieval_sets import from_manifest
    from audiovec.model import AudioTextEmbedder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--max-train", type=int, default=1000, help="training clips, every n-th row")
    args = parser.parse_args(argv)
    model = AudioTextEmbedder.from_pretrained("audiovec-sounds")
    rows = read_manifest(args.corpus / "train.jsonl")
    rows = rows[:: max(1, len(rows) // args.max_train)][: args.max_train]
    path = Path(tempfile.mkdtemp(prefix="calibrate-")) / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cache = EmbeddingCache(default_cache_dir(), model_fingerprint(model))
    try:
        audio, text, _ = embed_set(model, from_manifest(path, name="train"), cache=cache)
    finally:
        cache.close()
    full = model.embedding_dim
    calibration = model.calibrate(np.concatenate([audio, text]), dims=[full // 2, full // 4, full // 8])
    out = calibration.save(builtin_dir("audiovec-sounds"))
    print(
        f"{out}: ranges for sizes {sorted(calibration.ranges, reverse=True)} from {calibration.count} vectors"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
