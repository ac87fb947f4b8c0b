"""Every tiny recipe trains end to end on CPU and its loss falls; recipe loading and overrides."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audiovec.errors import ConfigError
from audiovec.train.config import load_recipe, parse_overrides

REPO = Path(__file__).resolve().parents[2]
TINY = sorted((REPO / "configs" / "tiny").glob("*.yaml"))
FULL = sorted((REPO / "configs").glob("*.yaml"))


def test_every_seed_approach_has_a_recipe_and_a_tiny_variant():
    names = {p.stem for p in TINY}
    assert names >= {"full", "pruned", "m1", "m2", "m3", "m4", "text_transfer"}
    assert {p.stem for p in FULL} == names


@pytest.mark.parametrize("path", FULL + TINY, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipes_load_and_validate(path):
    recipe = load_recipe(path)
    assert recipe.train.mode in ("audio", "text")
    if path.parent.name == "configs":  # real recipes point at model folders built by compose / prune
        assert recipe.model.path and recipe.model.tiny is None


def test_overrides_dotted_bare_and_errors(tmp_path):
    args = ["--train.lr", "3e-4", "--steps=7", "--output.tensorboard", "true", "--data.train", "[a.jsonl]"]
    recipe = load_recipe(REPO / "configs" / "tiny" / "m1.yaml", parse_overrides(args))
    assert recipe.train.lr == 3e-4 and recipe.train.steps == 7 and recipe.output.tensorboard is True
    assert recipe.data.train == ["a.jsonl"]
    with pytest.raises(ConfigError, match="unknown key"):
        load_recipe(REPO / "configs" / "tiny" / "m1.yaml", {"train.lrr": 1})
    with pytest.raises(ConfigError, match="ambiguous or unknown"):
        load_recipe(REPO / "configs" / "tiny" / "m1.yaml", parse_overrides(["--nonsense", "1"]))
    with pytest.raises(ConfigError, match="trainable"):
        load_recipe(REPO / "configs" / "tiny" / "m1.yaml", {"train.trainable": "half"})
    with pytest.raises(ConfigError, match="missing a value"):
        parse_overrides(["--lr"])
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")


def run_recipe(path: Path, out: Path, steps: int | None = None) -> list[float]:
    from audiovec.train.trainer import train

    overrides = {"output.dir": str(out), "output.plot": True}
    if steps:
        overrides["train.steps"] = steps
    summary = train(load_recipe(path, overrides))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert losses == pytest.approx(summary["losses"])
    assert all(np.isfinite(losses))
    first = records[0]
    for key in ("lr", "temperature", "samples_per_s", "rss_mb"):
        assert key in first
    assert any(r["kind"] == "dev" and 0 <= r["acc_a2t"] <= 1 for r in records)
    assert (out / "curves.png").stat().st_size > 1000
    return losses


def falls(losses: list[float]) -> bool:
    k = max(3, len(losses) // 6)
    return float(np.mean(losses[-k:])) < float(np.mean(losses[:k])) - 0.05


def test_tiny_m1_trains_loss_falls_and_saves_a_loadable_model(tmp_path):
    from audiovec.data.fsdd import bundled_files as fsdd_files
    from audiovec.model import AudioTextEmbedder

    losses = run_recipe(REPO / "configs" / "tiny" / "m1.yaml", tmp_path)
    assert falls(losses), losses
    model = AudioTextEmbedder.from_pretrained(tmp_path / "final")
    vectors = model.encode_audio([str(p) for p in fsdd_files(2)])
    assert vectors.shape == (2, model.embedding_dim)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["full", "pruned", "m2", "m3", "m4", "text_transfer"])
def test_tiny_recipe_trains_and_loss_falls(name, tmp_path):
    losses = run_recipe(REPO / "configs" / "tiny" / f"{name}.yaml", tmp_path)
    assert falls(losses), losses
    from audiovec.model import AudioTextEmbedder

    model = AudioTextEmbedder.from_pretrained(tmp_path / "final")  # LoRA merged, pruning kept
    if name == "pruned":
        assert model.backbone.config.num_hidden_layers == 1
    assert not any("lora" in k for k in model.state_dict())
