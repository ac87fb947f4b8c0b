"""The steps curve: one ablation results file per budget (the ablation's own file where it holds that budget),
every seed of a budget averaged, nothing trained twice, and a plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

from steps_curve import budget_file, curve_row, default_runs, main, plot  # noqa: E402


def _run(variant: str, seed: int, steps: int, t2a: float) -> dict:
    return {
        "variant": variant, "seed": seed, "steps": steps, "chance_t2a": 0.03, "t2a_hit_rate@5": t2a,
        "a2t_hit_rate@5": t2a + 0.1, "t2a_macro_hit_rate@5": t2a, "by_category": {"speech": t2a},
    }  # fmt: skip


def _write(path: Path, steps: int, runs: list[dict]) -> None:
    path.write_text(json.dumps({"steps": steps, "variants": runs}))


def test_budgets_read_the_ablation_file_or_their_own_and_average_every_default_seed(tmp_path: Path) -> None:
    _write(tmp_path / "ablation_real.json", 600, [
        _run("default", 0, 600, 0.30), _run("random_audio", 0, 600, 0.03), _run("default", 1, 600, 0.20),
    ])  # fmt: skip
    _write(tmp_path / "ablation_real_steps1200.json", 1200, [_run("default", 0, 1200, 0.40)])
    assert budget_file(tmp_path, 600) == tmp_path / "ablation_real.json"
    assert budget_file(tmp_path, 1200) == tmp_path / "ablation_real_steps1200.json"
    assert budget_file(tmp_path, 2400) == tmp_path / "ablation_real_steps2400.json"  # not run yet
    assert default_runs(tmp_path / "ablation_real_steps2400.json", 2400) == []

    rows = [curve_row(s, default_runs(budget_file(tmp_path, s), s)) for s in (600, 1200)]
    assert rows[0]["steps"] == 600 and rows[0]["seeds"] == [0, 1]  # random_audio is not the recipe
    assert rows[0]["t2a_hit_rate@5"] == pytest.approx(0.25) and rows[0]["t2a_hit_rate@5_sd"] > 0
    assert rows[1]["t2a_hit_rate@5"] == pytest.approx(0.40) and rows[1]["t2a_hit_rate@5_sd"] is None
    assert plot(rows, tmp_path / "curve.png").stat().st_size > 1000


@pytest.mark.slow
def test_steps_curve_trains_each_budget_once(tmp_path: Path, small_real_corpus: Path) -> None:
    argv = [
        "--corpus", str(small_real_corpus), "--corpus-size", "small", "--steps", "2", "1",
        "--results-dir", str(tmp_path), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "curve.json"),
        "--plot", str(tmp_path / "curve.png"),
    ]  # fmt: skip
    assert main(argv) == 0
    data = json.loads((tmp_path / "curve.json").read_text())
    assert [b["steps"] for b in data["budgets"]] == [1, 2] and all(b["seeds"] == [0] for b in data["budgets"])
    first = {s: budget_file(tmp_path, s).read_text() for s in (1, 2)}
    assert all(json.loads(text)["variants"][0]["steps"] == s for s, text in first.items())
    assert main(argv) == 0  # resumed: every (budget, seed) is in its file, so nothing trains or rewrites
    assert {s: budget_file(tmp_path, s).read_text() for s in (1, 2)} == first
    assert (tmp_path / "curve.png").stat().st_size > 1000
