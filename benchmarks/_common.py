"""Shared helpers for the benchmark scripts: clips, timing, memory, machine facts, tables and JSON.

Every script measures "ours" against a baseline in the same process, interleaving the two and repeating,
and reports medians and the median of the per-repeat ratios, so load from other processes on a shared
machine affects both sides alike.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SAMPLE_RATE = 16_000


# ---------------------------------------------------------------------------------------------- set-up
def base_parser(description: str) -> argparse.ArgumentParser:
    """Arguments every benchmark takes: ``--quick``, ``--threads``, ``--repeats``, ``--out``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="reduced size for CI (well under a minute)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per path")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/)")
    return parser


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


def repeats_for(args: argparse.Namespace, full: int) -> int:
    """``--repeats`` if given, else 1 with ``--quick`` and ``full`` without."""
    return args.repeats or (1 if args.quick else full)


def machine() -> dict[str, Any]:
    """CPU model, core count, load average, library versions: what the numbers came from."""
    import torch

    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = ""
    with contextlib.suppress(OSError):
        flags = Path("/proc/cpuinfo").read_text()
    info: dict[str, Any] = {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# ---------------------------------------------------------------------------------------------- clips
def _fsdd_pool(n: int = 200) -> list[np.ndarray]:
    from audiovec.audio import load_audio
    from audiovec.data.fsdd import bundled_files as fsdd_files

    files = fsdd_files()
    step = max(1, len(files) // n)
    return [load_audio(p) for p in files[::step][:n]]


def make_clips(durations: Sequence[float], seed: int = 0) -> list[np.ndarray]:
    """Real speech clips of the given durations (s): FSDD recordings concatenated, plus light noise."""
    rng = np.random.default_rng(seed)
    pool = _fsdd_pool()
    clips = []
    for seconds in durations:
        target = int(round(seconds * SAMPLE_RATE))
        parts, total = [], 0
        while total < target:
            part = pool[int(rng.integers(len(pool)))]
            parts.append(part)
            total += part.shape[0]
        wave = np.concatenate(parts)[:target].astype(np.float32)
        wave += rng.normal(0.0, 0.003, size=target).astype(np.float32)
        clips.append(wave)
    return clips


def uniform_durations(n: int, low: float = 1.0, high: float = 30.0, seed: int = 0) -> list[float]:
    """``n`` durations spread evenly over [low, high] s, in a shuffled (file) order."""
    values = np.linspace(low, high, n)
    return [float(v) for v in np.random.default_rng(seed).permutation(values)]


def realistic_durations(n: int, seed: int = 0) -> list[float]:
    """A retrieval-corpus mix, in shuffled order: half 10 s clips (AudioSet/AudioCaps), a quarter 15–30 s
    (Clotho), a quarter 1–5 s short events (ESC-50, FSD50K)."""
    rng = np.random.default_rng(seed)
    tens = n // 2
    long = n // 4
    short = n - tens - long
    values = [10.0] * tens + list(rng.uniform(15.0, 30.0, long)) + list(rng.uniform(1.0, 5.0, short))
    return [float(values[i]) for i in rng.permutation(len(values))]


def realistic_clips(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` speech clips of the retrieval mix of durations (``realistic_durations``), both drawn with ``seed``."""
    return make_clips(realistic_durations(n, seed=seed), seed=seed)


def audio_seconds(clips: Sequence[np.ndarray]) -> float:
    """Total duration (s) of 16 kHz ``clips``."""
    return sum(c.shape[0] for c in clips) / SAMPLE_RATE


# ---------------------------------------------------------------------------------------------- timing
def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def interleaved(paths: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run every path once per round (order rotating each round), ``repeats`` timed rounds after warm-up."""
    names = list(paths)
    for _ in range(warmup):
        for name in names:
            paths[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            gc.collect()
            seconds, _ = timed(paths[name])
            times[name].append(seconds)
    return times


def summarise(times: dict[str, list[float]], baseline: str, items: int) -> dict[str, dict[str, float]]:
    """Median seconds, items/s, and the median over rounds of (baseline time / this time)."""
    out = {}
    for name, values in times.items():
        ratios = [b / t for b, t in zip(times[baseline], values, strict=True)]
        out[name] = {
            "median_s": statistics.median(values),
            "min_s": min(values),
            "items_per_s": items / statistics.median(values),
            "speedup_vs_baseline": statistics.median(ratios),
            "repeats": len(values),
        }
    return out


# ---------------------------------------------------------------------------------------------- memory
def rss_mb() -> float:
    return _status_kb("VmRSS") / 1024


def reset_peak() -> None:
    """Release freed heap to the OS and reset the kernel's peak-RSS mark (VmHWM) to the current RSS."""
    gc.collect()
    with contextlib.suppress(OSError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with contextlib.suppress(OSError):  # not Linux
        Path("/proc/self/clear_refs").write_text("5")


def peak_mb() -> float:
    return _status_kb("VmHWM") / 1024


def _status_kb(key: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:  # pragma: no cover
        pass
    return float("nan")


def measure_peak(fn: Callable[[], Any]) -> dict[str, float]:
    """Peak RSS growth (MB) while ``fn`` runs, above the RSS just before it (torch CPU allocations included)."""
    reset_peak()
    before = rss_mb()
    fn()
    return {"rss_before_mb": before, "peak_delta_mb": peak_mb() - before}


def run_probe(script: Path, args: Sequence[str], timeout: float = 1800) -> dict[str, Any]:
    """Run ``script args`` in a fresh interpreter; its last stdout line is a JSON object."""
    proc = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- output
def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain fixed-width table of ``rows`` restricted to ``columns``."""

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
        return str(value)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def paths_table(paths: dict[str, dict[str, Any]], columns: Sequence[str]) -> str:
    """``table`` of per-path results (``summarise`` output), one row a path, ``path`` first, then ``columns``."""
    return table([{"path": k, **v} for k, v in paths.items()], ["path", *columns])


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out, write as PNG (folders made) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_json(name: str, data: dict[str, Any], out: Path | None = None, quick: bool = False) -> Path:
    """Write ``data`` (plus a timestamp) to ``out`` or ``benchmarks/results/<name>[_quick].json``."""
    path = out or RESULTS / (f"{name}_quick.json" if quick else f"{name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "quick": quick, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **data}
    path.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    return path


def write_result(name: str, data: dict[str, Any], args: argparse.Namespace) -> Path:
    """``write_json`` to ``--out`` (quick-mode name with ``--quick``) and print where it went."""
    path = write_json(name, data, args.out, args.quick)
    print(f"wrote {path}")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")
