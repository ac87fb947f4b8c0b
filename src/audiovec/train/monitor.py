"""Observability: JSONL metrics log, optional TensorBoard, memory readings and a PNG of the curves."""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

import torch

from audiovec.errors import ConfigError


def memory_mb() -> dict[str, float]:
    """Resident memory of this process now and at its peak (MB), plus peak CUDA memory when used."""
    out = {"rss_mb": _rss_mb()}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["peak_rss_mb"] = peak / (1024 * 1024 if sys.platform == "darwin" else 1024)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux
        return float("nan")


class MetricsLog:
    """Append-only JSON Lines of per-step records; on resume it drops records past the checkpoint."""

    def __init__(self, path: str | os.PathLike, tensorboard_dir: str | os.PathLike | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError(
                    "output.tensorboard: the tensorboard package is not installed (pip install tensorboard)"
                ) from None
            self.writer = SummaryWriter(str(tensorboard_dir))

    def truncate_after(self, step: int) -> None:
        """Keep only records with ``step <= step`` (what a resumed run has really done)."""
        if not self.path.exists():
            return
        kept = [r for r in read_log(self.path) if r.get("step", 0) <= step]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, self.path)

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
        if self.writer is not None:
            step = int(record.get("step", 0))
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{record.get('kind', 'train')}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a metrics JSONL file (a torn last line from a killed run is ignored)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_curves(log_path: str | os.PathLike, out_path: str | os.PathLike) -> Path | None:
    """Loss (train and dev), learning rate and temperature against step, as one PNG."""
    records = read_log(log_path)
    train = [r for r in records if r.get("kind") == "train"]
    dev = [r for r in records if r.get("kind") == "dev"]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    steps = [r["step"] for r in train]
    axes[0].plot(steps, [r["loss"] for r in train], label="train", lw=1)
    if dev:
        axes[0].plot([r["step"] for r in dev], [r["loss"] for r in dev], "o-", label="dev")
    axes[0].set_title("loss")
    axes[0].legend()
    axes[1].plot(steps, [r["lr"] for r in train])
    axes[1].set_title("learning rate")
    axes[2].plot(steps, [r["temperature"] for r in train])
    axes[2].set_title("temperature")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out_path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
