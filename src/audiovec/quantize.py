"""Quantised vectors with sentence-transformers' names and semantics: ``precision`` is ``"float32"``,
``"int8"`` / ``"uint8"`` (each dimension's calibration range [min, max] cut into 256 steps) or ``"binary"``
/ ``"ubinary"`` (one bit per dimension, ``> 0``, packed 8 to a byte; ``binary`` is the packed byte - 128 as
int8, ``ubinary`` the byte). The calibration ranges come from a set of embeddings (``model.calibrate``) and
are saved with the model (``quantization.json``), one range per vector size the model knows, so a truncated
vector (``truncate_dim``) is quantised with ranges of vectors of its own size."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audiovec.dims import truncate_embeddings
from audiovec.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)
PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
CALIBRATION_NAME = "quantization.json"


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: use one of {', '.join(PRECISIONS)}")
    return precision


def ranges_of(embeddings: np.ndarray) -> np.ndarray:
    """Per-dimension ``[min; max]`` (shape ``(2, D)``) of a set of float embeddings."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) < 2:
        raise ConfigError(
            f"calibration needs a (N, D) set of at least 2 float embeddings, got shape {x.shape}; "
            "pass the vectors of a representative sample (hundreds of clips or texts)"
        )
    x = x[np.isfinite(x).all(axis=1)]
    if len(x) < 2:
        raise ConfigError("calibration: fewer than 2 finite embeddings (failed inputs are NaN rows)")
    return np.vstack((x.min(axis=0), x.max(axis=0)))


def quantize_embeddings(
    embeddings: np.ndarray,
    precision: str,
    ranges: np.ndarray | None = None,
    calibration_embeddings: np.ndarray | None = None,
) -> np.ndarray:
    """``sentence_transformers.quantization.quantize_embeddings`` for numpy arrays, value for value: int8 /
    uint8 use ``ranges`` ((2, D) min and max), else the ranges of ``calibration_embeddings``, else of
    ``embeddings`` themselves (not recommended: a query batch has other ranges than the corpus)."""
    check_precision(precision)
    x = np.asarray(embeddings)
    if x.dtype in (np.int8, np.uint8):
        raise ConfigError(f"quantize_embeddings: the embeddings are already {x.dtype}; pass float vectors")
    if precision == "float32":
        return x.astype(np.float32)
    if precision in ("binary", "ubinary"):
        packed = np.packbits(x > 0, axis=-1)
        return packed if precision == "ubinary" else (packed - 128).astype(np.int8)
    if ranges is None:
        ranges = ranges_of(x if calibration_embeddings is None else calibration_embeddings)
    ranges = np.asarray(ranges, dtype=np.float32)
    if ranges.shape != (2, x.shape[-1]):
        raise ConfigError(
            f"quantize_embeddings: ranges of shape {ranges.shape} for {x.shape[-1]}-dimensional vectors; "
            f"expected (2, {x.shape[-1]}) (calibrate at this size)"
        )
    starts = ranges[0, :]
    steps = (ranges[1, :] - starts) / 255
    steps = np.where(steps == 0, 1, steps)
    q = np.clip(np.floor((x - starts) / steps), 0, 255)
    return q.astype(np.uint8) if precision == "uint8" else (q - 128).astype(np.int8)


def dequantize_int8(q: np.ndarray, ranges: np.ndarray, precision: str = "int8") -> np.ndarray:
    """Approximate floats of int8 / uint8 codes (the centre of each code's step)."""
    ranges = np.asarray(ranges, dtype=np.float32)
    starts = ranges[0, :]
    steps = (ranges[1, :] - starts) / 255
    codes = q.astype(np.float32) + (128.0 if precision == "int8" else 0.0)
    return starts + (codes + 0.5) * steps


def unpack_bits(packed: np.ndarray, dim: int, precision: str = "ubinary") -> np.ndarray:
    """``binary`` / ``ubinary`` bytes back to ``(N, dim)`` 0/1 bits."""
    raw = packed.view(np.uint8) ^ 0x80 if precision == "binary" else packed.view(np.uint8)
    return np.unpackbits(raw, axis=-1)[..., :dim]


@dataclass
class Calibration:
    """int8 / uint8 ranges per vector size: ``{dim: (2, dim) array}`` and how many vectors made them."""

    ranges: dict[int, np.ndarray] = field(default_factory=dict)
    count: int = 0

    @classmethod
    def from_embeddings(cls, embeddings: np.ndarray, dims: Iterable[int] = ()) -> Calibration:
        """Ranges of ``embeddings`` (full-size unit vectors) and of their prefixes of each size in ``dims``
        (truncated and re-normalised, as ``truncate_dim`` makes them)."""
        x = np.asarray(embeddings, dtype=np.float32)
        full = x.shape[-1]
        out = {full: ranges_of(x)}
        for dim in sorted(set(int(d) for d in dims) - {full}, reverse=True):
            out[dim] = ranges_of(truncate_embeddings(x, dim))
        return cls(out, int(np.isfinite(x).all(axis=1).sum()))

    def ranges_for(self, dim: int) -> np.ndarray:
        if dim not in self.ranges:
            known = ", ".join(str(d) for d in sorted(self.ranges, reverse=True))
            raise ConfigError(
                f"no int8 calibration for {dim}-dimensional vectors (calibrated sizes: {known}); "
                f"call model.calibrate(vectors, dims=[{dim}]) and save the model, or use one of those sizes"
            )
        return self.ranges[dim]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "audiovec-quantization/1",
            "count": self.count,
            "ranges": {str(d): r.tolist() for d, r in sorted(self.ranges.items(), reverse=True)},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = CALIBRATION_NAME) -> Calibration:
        try:
            ranges = {int(d): np.asarray(r, dtype=np.float32) for d, r in data["ranges"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"{source}: not an audiovec quantization file ({exc})") from None
        for dim, r in ranges.items():
            if r.shape != (2, dim):
                raise CheckpointError(f"{source}: ranges for size {dim} have shape {r.shape}, not (2, {dim})")
        return cls(ranges, int(data.get("count", 0)))

    def save(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / CALIBRATION_NAME
        path.write_text(json.dumps(self.to_json()) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Calibration | None:
        """The calibration saved in a model folder, or None when it has none."""
        path = Path(folder) / CALIBRATION_NAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise CheckpointError(f"{path}: invalid JSON ({exc})") from None
        return cls.from_json(data, str(path))


def finish(
    vectors: np.ndarray,
    truncate_dim: int | None,
    precision: str = "float32",
    calibration: Calibration | None = None,
    ok: np.ndarray | None = None,
) -> np.ndarray:
    """What ``encode_*`` return: ``vectors`` truncated (``truncate_dim``) then quantised (``precision``).
    int8 / uint8 need the model's calibration at the vector's size. Rows not ``ok`` (failed inputs,
    NaN) quantise to zeros."""
    check_precision(precision)
    out = truncate_embeddings(vectors, truncate_dim)
    if precision == "float32":
        return out
    ranges = None
    if precision in ("int8", "uint8"):
        if calibration is None:
            raise ConfigError(
                f"precision={precision!r} needs calibration ranges saved with the model: call "
                "model.calibrate(model.encode_audio(sample)) (a few hundred clips or texts) and "
                "model.save_pretrained(folder); or use 'binary' / 'ubinary', which need none"
            )
        ranges = calibration.ranges_for(out.shape[-1])
    single = out.ndim == 1
    rows = np.atleast_2d(out)
    good = np.isfinite(rows).all(axis=1) if ok is None else np.asarray(ok, dtype=bool)
    q = quantize_embeddings(np.where(good[:, None], rows, 0.0), precision, ranges=ranges)
    q[~good] = 0
    return q[0] if single else q
