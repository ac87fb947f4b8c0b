"""report.py and ``audiovec report``: tables, chart and baselines from result files."""

from __future__ import annotations

import json

import pytest

from audiovec.cli import main
from audiovec.errors import DataError
from audiovec.evaluation.report import Baseline, load_run, results_table, write_report


def fake_run(model: str, value: float, sets=("audiocaps", "clotho")) -> dict:
    metrics = {"hit_rate@5": value, "ndcg@10": value / 2}
    return {
        "model": model,
        "results": {
            s: {
                "t2a": metrics,
                "a2t": {k: v / 2 for k, v in metrics.items()},
                "chance": {"t2a": {"hit_rate@5": 0.01}, "a2t": {"hit_rate@5": 0.02}},
                "sizes": {"clips": 10},
            }
            for s in sets
        },
    }


def write(tmp_path, run) -> str:
    path = tmp_path / f"{run['model']}.json"
    path.write_text(json.dumps(run))
    return str(path)


def test_table_rows_are_models_and_columns_are_set_direction_metric():
    runs = [fake_run("m1", 0.497), fake_run("m2", 0.632, sets=("audiocaps",))]
    table = results_table(runs, ["hit_rate@5"], ["t2a"], chance=True)
    lines = table.splitlines()
    assert lines[0].split("|")[1:-1] == [" model  ", " audiocaps T2A hit_rate@5 ", " clotho T2A hit_rate@5 "]
    assert "49.7" in lines[2] and "63.2" in lines[3]
    assert "–" in lines[3]  # m2 has no clotho result
    assert "1.0" in lines[4] and lines[4].startswith("| chance")


def test_duplicate_model_names_are_disambiguated():
    table = results_table([fake_run("m", 0.1), fake_run("m", 0.2)], markdown=False)
    assert "m (2)" in table


def test_write_report_with_chart_and_baselines(tmp_path):
    out = write_report(
        [fake_run("m1", 0.45), fake_run("m2", 0.5)],
        tmp_path / "r" / "report.md",
        baselines=[Baseline.parse("CLAP:audiocaps=42.0")],
    )
    text = out.read_text()
    assert "## T2A" in text and "## A2T" in text and "CLAP audiocaps 42.0" in text and "report.png" in text
    png = out.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_cli_report(tmp_path, capsys):
    files = [write(tmp_path, fake_run("m1", 0.3)), write(tmp_path, fake_run("m2", 0.6))]
    assert main(["report", *files, "--out", str(tmp_path / "rep.md"), "--seed-baselines"]) == 0
    assert "| m2" in (tmp_path / "rep.md").read_text()
    assert (tmp_path / "rep.png").is_file()
    capsys.readouterr()
    code = main(
        ["report", files[0], "--out", str(tmp_path / "x.md"), "--seed-baselines", "--chart-metric", "ndcg@10"]
    )
    assert code == 1 and "cvR@5" in capsys.readouterr().err


def test_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="LABEL:BENCHMARK=VALUE"):
        Baseline.parse("CLAP=42")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": "x"}))
    with pytest.raises(DataError, match="no 'results'"):
        load_run(bad)
    with pytest.raises(DataError, match="not found"):
        load_run(tmp_path / "missing.json")
    with pytest.raises(DataError, match="no result files"):
        write_report([], tmp_path / "r.md")
