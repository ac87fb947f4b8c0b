"""``audiovec report``: a markdown table and a grouped bar chart from ``audiovec eval --json`` files."""

from __future__ import annotations

import argparse

from audiovec.errors import ConfigError
from audiovec.evaluation.report import Baseline, load_run, seed_baselines, write_report


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="markdown report + bar chart from eval results",
        description="Compare models: one row per result file, one column per benchmark × direction × metric.",
    )
    parser.add_argument(
        "results", nargs="+", metavar="RESULTS.json", help="files written by 'audiovec eval --json'"
    )
    parser.add_argument(
        "--out", required=True, metavar="FILE.md", help="report to write (the PNG goes beside it)"
    )
    parser.add_argument(
        "--metrics",
        default="hit_rate@1,hit_rate@5,hit_rate@10,ndcg@10",
        help="table columns, comma-separated",
    )
    parser.add_argument(
        "--chart-metric", default="hit_rate@5", help="metric of the bar chart (default hit_rate@5)"
    )
    parser.add_argument("--chart-direction", choices=("t2a", "a2t"), default="t2a")
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="LABEL:BENCHMARK=VALUE",
        help="dashed reference line in percent, e.g. CLAP:audiocaps=42.0 (repeatable)",
    )
    parser.add_argument(
        "--seed-baselines", action="store_true", help="add the seed's CLAP 42.0 AudioCaps T2A cvR@5 line"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    runs = [load_run(p) for p in args.results]
    baselines = [Baseline.parse(s) for s in args.baseline]
    if args.seed_baselines:
        if (args.chart_metric, args.chart_direction) != ("hit_rate@5", "t2a"):
            raise ConfigError(
                "--seed-baselines are T2A hit_rate@5 (cvR@5) values; chart that metric to use them"
            )
        baselines += seed_baselines()
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    out = write_report(
        runs,
        args.out,
        metrics=metrics,
        chart_metric=args.chart_metric,
        chart_direction=args.chart_direction,
        baselines=baselines,
    )
    print(out)
    print(out.with_suffix(".png"))
    return 0
