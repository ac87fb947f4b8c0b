"""Held-out real T2A/A2T against training steps: does the demo's recipe gain from training longer?

The ablation (``ablation_real.py``) compares recipes at one budget (600 steps). This runs its ``default``
variant at several budgets on the same corpus and the same held-out real sources, one
``ablation_real.py`` results file per budget (``--results-dir``/``ablation_real[_stepsN].json``), resuming:
a (budget, seed) already in its file is not trained again. Then it plots mean ± sd over seeds per budget.

    python benchmarks/steps_curve.py --corpus runs/demo/corpus --steps 600 1200 2400 --threads 2 \
        --plot docs/steps-curve.png

Writes ``benchmarks/results/steps_curve.json`` (one row per budget: seeds, T2A, A2T, macro, per category).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from _common import RESULTS, base_parser, save_figure, write_json
from ablation_real import METRICS, previous_runs, summarise
from ablation_real import main as ablation_main


def parse_args(argv: list[str] | None = None) -> Any:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a built corpus folder")
    parser.add_argument("--corpus-size", default="default", choices=("small", "default", "large"))
    parser.add_argument("--steps", type=int, nargs="+", default=[600, 1200, 2400])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="train these at every budget")
    parser.add_argument("--work", type=Path, default=Path("runs/ablation-real"))
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where the per-budget files live")
    parser.add_argument("--plot", type=Path, default=None, help="write the curve here (PNG)")
    return parser.parse_args(argv)


def budget_file(results_dir: Path, steps: int) -> Path:
    """The ablation's own file when it holds this budget (600 steps), else one file per budget."""
    main_file = results_dir / "ablation_real.json"
    if main_file.is_file() and json.loads(main_file.read_text())["steps"] == steps:
        return main_file
    return results_dir / f"ablation_real_steps{steps}.json"


def default_runs(path: Path, steps: int) -> list[dict[str, Any]]:
    return [r for r in previous_runs(path, steps) if r["variant"] == "default"]


def curve_row(steps: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    (row,) = summarise(runs)
    return {"steps": steps, **{k: v for k, v in row.items() if k not in ("variant", "steps")}}


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Mean over seeds per budget; whiskers one standard deviation where a budget has several seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [r["steps"] for r in rows]
    for metric, label in (("t2a_hit_rate@5", "T2A hit_rate@5"), ("a2t_hit_rate@5", "A2T hit_rate@5")):
        errors = [r[metric + "_sd"] or 0.0 for r in rows]
        ax.errorbar(steps, [r[metric] for r in rows], yerr=errors, marker="o", capsize=3, label=label)
    for r in rows:
        ax.annotate(f"{len(r['seeds'])} seed(s)", (r["steps"], r["t2a_hit_rate@5"]), textcoords="offset points",
                    xytext=(0, -14), ha="center", fontsize=7)  # fmt: skip
    ax.axhline(rows[0]["chance_t2a"], color="grey", ls="--", lw=1, label="chance (T2A)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(steps, [str(s) for s in steps])
    ax.set_xlabel("training steps (batch 64)")
    ax.set_ylabel("held-out real sources")
    ax.set_title("Demo recipe: held-out real retrieval vs training steps")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = []
    for steps in sorted(set(args.steps)):
        path = budget_file(args.results_dir, steps)
        if not {r["seed"] for r in default_runs(path, steps)} >= set(args.seeds):
            ablation_main([
                "--corpus", str(args.corpus), "--corpus-size", args.corpus_size, "--steps", str(steps),
                "--threads", str(args.threads), "--variants", "default", "--seeds", *map(str, args.seeds),
                "--work", str(args.work), "--out", str(path), "--resume",
            ])  # fmt: skip
        # every seed the budget has, earlier ones too
        rows.append(curve_row(steps, default_runs(path, steps)))
        print(f"{steps} steps: " + ", ".join(f"{m} {rows[-1][m]:.3f}" for m in METRICS), flush=True)
    write_json("steps_curve", {"corpus": args.corpus.name, "seeds": args.seeds, "budgets": rows}, args.out)
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
