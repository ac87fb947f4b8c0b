"""Tables and charts from ``audiovec eval --json`` result files.

A result file is ``{"model": name, "fingerprint": ..., "results": {set: {"t2a": {...}, "a2t": {...},
"chance": {...}, "sizes": {...}}}}``. Tables put models in rows and set × direction × metric in columns,
in percent like the seed (cvR@5 = hit_rate@5 × 100).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiovec.errors import DataError

DIRECTION_LABELS = {"t2a": "T2A", "a2t": "A2T"}
# the seed's reference point: CLAP (Elizalde et al., 2023), AudioCaps text→audio cvR@5
SEED_BASELINES: dict[str, dict[str, float]] = {"CLAP": {"audiocaps": 42.0}}


@dataclass(frozen=True)
class Baseline:
    """A reference value (percent) drawn as a dashed line over one benchmark's bars."""

    label: str
    benchmark: str
    value: float

    @classmethod
    def parse(cls, spec: str) -> Baseline:
        """``LABEL:BENCHMARK=VALUE``, e.g. ``CLAP:audiocaps=42.0``."""
        try:
            head, value = spec.rsplit("=", 1)
            label, benchmark = head.split(":", 1)
            return cls(label.strip(), benchmark.strip(), float(value))
        except ValueError:
            raise DataError(
                f"baseline {spec!r}: expected LABEL:BENCHMARK=VALUE, e.g. CLAP:audiocaps=42.0"
            ) from None


def seed_baselines() -> list[Baseline]:
    return [Baseline(label, bench, v) for label, by in SEED_BASELINES.items() for bench, v in by.items()]


def load_run(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check one result file."""
    path = Path(path)
    try:
        run = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: result file not found") from None
    except ValueError as exc:
        raise DataError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(run, dict) or not isinstance(run.get("results"), dict) or not run["results"]:
        raise DataError(f"{path}: not an 'audiovec eval --json' file (no 'results' object)")
    for name, res in run["results"].items():
        for direction in DIRECTION_LABELS:
            if not isinstance(res.get(direction), dict):
                raise DataError(f"{path}: set {name!r} has no {direction!r} metrics")
    run.setdefault("model", path.stem)
    return run


def _label(run: dict[str, Any], seen: dict[str, int]) -> str:
    name = str(run.get("label") or run["model"])
    seen[name] = seen.get(name, 0) + 1
    return name if seen[name] == 1 else f"{name} ({seen[name]})"


def benchmarks_of(runs: Sequence[dict[str, Any]]) -> list[str]:
    """Set names in first-seen order across runs."""
    names: list[str] = []
    for run in runs:
        for name in run["results"]:
            if name not in names:
                names.append(name)
    return names


def results_table(
    runs: Sequence[dict[str, Any]],
    metrics: Sequence[str] = ("hit_rate@5",),
    directions: Sequence[str] = ("t2a", "a2t"),
    *,
    markdown: bool = True,
    chance: bool = False,
) -> str:
    """Models × (set, direction, metric), values in percent with one decimal; '–' where missing."""
    sets = benchmarks_of(runs)
    columns = [(s, d, m) for s in sets for d in directions for m in metrics]
    header = ["model"] + [f"{s} {DIRECTION_LABELS[d]} {m}" for s, d, m in columns]
    rows = []
    seen: dict[str, int] = {}
    for run in runs:
        cells = [_label(run, seen)]
        for s, d, m in columns:
            value = run["results"].get(s, {}).get(d, {}).get(m)
            cells.append("–" if value is None else f"{100 * value:.1f}")
        rows.append(cells)
    if chance and runs:
        cells = ["chance"]
        for s, d, m in columns:
            value = next(
                (r["results"][s].get("chance", {}).get(d, {}).get(m) for r in runs if s in r["results"]), None
            )
            cells.append("–" if value is None else f"{100 * value:.1f}")
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    if markdown:
        lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
        lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    else:
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def bar_chart(
    runs: Sequence[dict[str, Any]],
    out: str | os.PathLike,
    *,
    metric: str = "hit_rate@5",
    direction: str = "t2a",
    baselines: Sequence[Baseline] = (),
) -> Path:
    """Grouped bars (one group per set, one bar per model) with dashed baseline lines; writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sets = benchmarks_of(runs)
    seen: dict[str, int] = {}
    labels = [_label(r, seen) for r in runs]
    width = 0.8 / max(1, len(runs))
    x = np.arange(len(sets))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(sets) + 0.4 * len(runs)), 4.0), dpi=110)
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        values = [100 * run["results"].get(s, {}).get(direction, {}).get(metric, np.nan) for s in sets]
        bars = ax.bar(x - 0.4 + width * (i + 0.5), values, width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    for b in (bl for bl in baselines if bl.benchmark in sets):
        k = sets.index(b.benchmark)
        ax.hlines(b.value, k - 0.45, k + 0.45, colors="red", linestyles="dashed", linewidth=1.5)
        ax.annotate(
            f"{b.label} {b.value:.1f}", (k + 0.45, b.value), fontsize=7, color="red", ha="right", va="bottom"
        )
    ax.set_xticks(x, sets)
    ax.set_ylabel(f"{DIRECTION_LABELS[direction]} {metric} (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{DIRECTION_LABELS[direction]} retrieval, {metric}")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def write_report(
    runs: Sequence[dict[str, Any]],
    out: str | os.PathLike,
    *,
    metrics: Sequence[str] = ("hit_rate@1", "hit_rate@5", "hit_rate@10", "ndcg@10"),
    chart_metric: str = "hit_rate@5",
    chart_direction: str = "t2a",
    baselines: Sequence[Baseline] = (),
) -> Path:
    """A markdown report (per-direction tables, chance levels, set sizes) and its bar chart PNG beside it."""
    if not runs:
        raise DataError("no result files given")
    out = Path(out)
    png = out.with_suffix(".png")
    bar_chart(runs, png, metric=chart_metric, direction=chart_direction, baselines=baselines)
    parts = ["# Retrieval report", ""]
    parts.append(
        "Values are percent. `hit_rate@k` is the seed's cvR@k (MTEB `hit_rate_at_k`, formerly "
        "`cv_recall_at_k`): a query scores 1 when any relevant item is in its top k."
    )
    for direction in DIRECTION_LABELS:
        parts += [
            "",
            f"## {DIRECTION_LABELS[direction]}",
            "",
            results_table(runs, metrics, [direction], chance=True),
        ]
    if baselines:
        parts += ["", "Baselines: " + ", ".join(f"{b.label} {b.benchmark} {b.value:.1f}" for b in baselines)]
    parts += ["", f"![{chart_direction} {chart_metric}]({png.name})", "", "## Sets", ""]
    for name in benchmarks_of(runs):
        sizes = next(r["results"][name].get("sizes", {}) for r in runs if name in r["results"])
        parts.append(f"- **{name}**: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts) + "\n")
    return out
