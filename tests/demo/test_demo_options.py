"""`audiovec demo` options reach the training recipe (fast: no corpus, no training)."""

from __future__ import annotations

import argparse
from pathlib import Path

from audiovec.cli import demo_cmd
from audiovec.demo.options import DemoOptions
from audiovec.demo.run import train_recipe


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    demo_cmd.register(parser.add_subparsers())
    return parser.parse_args(["demo", *argv])


def test_augment_variants_reach_the_recipe(tmp_path: Path) -> None:
    options = demo_cmd.options_from_args(_parse(["--augment-variants", "3"]))
    assert options.augment_variants == 3
    recipe = train_recipe(options, tmp_path, tmp_path / "train.jsonl", tmp_path / "run")
    assert recipe.data.augment.variants == 3 and recipe.data.augment.active
    assert recipe.train.cache_tower_gb == 6.0  # room for the tokens of all three versions


def test_the_demo_trains_on_clips_as_recorded_by_default(tmp_path: Path) -> None:
    assert demo_cmd.options_from_args(_parse([])) == DemoOptions()
    recipe = train_recipe(DemoOptions(), tmp_path, tmp_path / "train.jsonl", tmp_path / "run")
    assert not recipe.data.augment.active and recipe.train.cache_tower_gb == 2.0
