"""Per-module learning rates: optimizer groups per module (tower / backbone / new parts), one schedule
factor for all of them, the ``--tower-lr`` / ``--backbone-lr`` flags, and resume across group layouts."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch

from audiovec.train import resume as ckpt
from audiovec.train.config import load_recipe
from audiovec.train.optim import lr_lambda, make_optimizer, make_scheduler
from audiovec.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny"


def make_recipe(out: Path, name: str = "m1", **train):
    overrides = {
        "output.dir": str(out),
        "data.train": [{"fsdd": {"n": 8}}],
        "data.dev": None,
        "train.batch_size": 4,
        "train.chunk_size": 0,
        "train.steps": 2,
        "train.warmup_steps": 0,
        "output.checkpoint_every": 0,
        "output.plot": False,
        "output.save_final": False,
        "output.progress": False,
    }
    overrides.update({f"train.{k}": v for k, v in train.items()})
    return load_recipe(TINY / f"{name}.yaml", overrides)


def trainable(trainer: Trainer) -> dict[int, str]:
    named = list(trainer.model.named_parameters()) + [
        ("loss." + n, p) for n, p in trainer.loss_fn.named_parameters()
    ]
    return {id(p): n for n, p in named if p.requires_grad}


def frozen(trainer: Trainer) -> set[int]:
    return {id(p) for p in trainer.model.parameters() if not p.requires_grad}


def groups_by_module(trainer: Trainer) -> dict[str, list[tuple[str, torch.Tensor, dict]]]:
    out: dict[str, list] = {}
    for group in trainer.optimizer.param_groups:
        for name, param in zip(group["param_names"], group["params"]):
            out.setdefault(group["module"], []).append((name, param, group))
    return out


# (recipe, trainable modules expected to have groups, whether they are LoRA adapters)
CASES = {
    "full": ("m1", {"tower", "backbone", "new"}, False),
    "lora_backbone_and_tower": ("m3", {"tower", "backbone", "new"}, True),
    "frozen_tower": ("m2", {"backbone", "new"}, False),
    "projector": ("m4", {"new"}, False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_groups_hold_every_trainable_parameter_once_at_its_module_lr(tmp_path, case):
    name, modules, lora = CASES[case]
    trainer = Trainer(make_recipe(tmp_path, name, lr=1e-4, tower_lr=2e-3, backbone_lr=3e-5, new_lr=5e-3))
    seen = [id(p) for g in trainer.optimizer.param_groups for p in g["params"]]
    assert len(seen) == len(set(seen))  # no parameter in two groups
    assert set(seen) == set(trainable(trainer))  # every trainable one in some group
    assert not set(seen) & frozen(trainer)  # no frozen one
    by_module = groups_by_module(trainer)
    assert set(by_module) == modules  # a frozen tower keeps no group
    expected = {"tower": 2e-3, "backbone": 3e-5, "new": 5e-3}
    for module, members in by_module.items():
        for pname, param, group in members:
            assert group["initial_lr"] == expected[module], (module, pname)
            assert pname == trainable(trainer)[id(param)]  # names kept for resume are the real ones
            if module in ("tower", "backbone"):
                assert pname.startswith(module + ".")
                assert ("lora_" in pname) == lora  # LoRA adapters go with the module they adapt
            else:
                assert "projector." in pname or "logit_scale" in pname
            decays = param.ndim >= 2 and "logit_scale" not in pname
            assert group["weight_decay"] == (trainer.recipe.train.weight_decay if decays else 0.0)


def test_unset_module_lrs_fall_back_to_lr(tmp_path):
    trainer = Trainer(make_recipe(tmp_path, "m1", lr=7e-4))
    assert {g["module"]: g["initial_lr"] for g in trainer.optimizer.param_groups} == {
        "tower": 7e-4,
        "backbone": 7e-4,
        "new": 7e-4,
    }


@pytest.mark.parametrize("name", ["m1", "m3"], ids=["full", "lora"])
def test_one_step_with_tower_lr_zero_moves_the_backbone_only(tmp_path, name):
    trainer = Trainer(make_recipe(tmp_path, name, lr=1e-2, tower_lr=0, grad_clip=0))
    by_module = groups_by_module(trainer)
    before = {m: [(n, p.detach().clone()) for n, p, _ in members] for m, members in by_module.items()}
    trainer.train_step(next(iter(trainer.loader)))
    for (n, old), (_, param, _) in zip(before["tower"], by_module["tower"]):
        assert torch.equal(old, param), n
        # the tower did get a gradient (Adam's moment is non-zero): only its lr held it still
    assert any(bool(trainer.optimizer.state[p]["exp_avg"].abs().sum() > 0) for _, p, _ in by_module["tower"])
    moved = [
        n
        for (n, old), (_, param, _) in zip(before["backbone"], by_module["backbone"])
        if not torch.equal(old, param)
    ]
    assert len(moved) > len(by_module["backbone"]) // 2, moved


def test_scheduler_scales_every_group_by_the_same_factor(tmp_path):
    recipe = make_recipe(
        tmp_path, "m1", lr=1e-3, tower_lr=4e-3, backbone_lr=2e-5, new_lr=1e-2, steps=12, warmup_steps=4
    )
    recipe.train.min_lr_ratio = 0.1
    trainer = Trainer(recipe)
    optimizer, scheduler = trainer.optimizer, trainer.scheduler
    factor = lr_lambda(recipe.train)
    peaks = [g["initial_lr"] for g in optimizer.param_groups]
    assert len(set(peaks)) == 3
    for done in range(recipe.train.steps + 1):
        for group, peak in zip(optimizer.param_groups, peaks):
            assert group["lr"] == pytest.approx(peak * factor(done), rel=1e-12, abs=0)
        ratios = {g["lr"] / g["initial_lr"] for g in optimizer.param_groups}
        assert max(ratios) - min(ratios) < 1e-12
        optimizer.step()  # no gradients: a no-op, keeps the scheduler's call order
        scheduler.step()
    assert factor(4) == 1.0 and factor(recipe.train.steps) == pytest.approx(0.1)

    # make_scheduler is what the trainer uses; it does the same on a fresh optimizer
    fresh = make_optimizer(trainer.named, recipe.train)
    sched = make_scheduler(fresh, recipe.train)
    assert [g["lr"] for g in fresh.param_groups] == pytest.approx([p * factor(0) for p in peaks])
    assert sched.get_last_lr() == pytest.approx([p * factor(0) for p in peaks])


def test_lrs_are_logged_saved_and_resumed(tmp_path, caplog):
    out = tmp_path / "run"
    lrs = {"lr": 1e-3, "tower_lr": 4e-3, "backbone_lr": 2e-4}
    recipe = make_recipe(out, "m1", steps=3, warmup_steps=2, **lrs)
    recipe.output.checkpoint_every = 2
    with caplog.at_level(logging.INFO, logger="audiovec.train.trainer"):
        first = Trainer(recipe)
        first.fit()
    assert "learning rates (peak, before warm-up/decay): backbone 0.0002" in caplog.text
    assert "tower 0.004" in caplog.text and "new 0.001" in caplog.text
    saved = (out / "recipe.yaml").read_text()
    assert "tower_lr: 0.004" in saved and "backbone_lr: 0.0002" in saved
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"lr_tower", "lr_backbone", "lr_new"} <= set(records[0])
    checkpoint = ckpt.latest_checkpoint(out)
    assert checkpoint.name == "checkpoint-00000003"
    meta = json.loads((checkpoint / ckpt.META).read_text())
    assert meta["recipe"]["train"]["tower_lr"] == 4e-3

    # same recipe: state and learning rates come back exactly
    resumed = Trainer(make_recipe(out, "m1", steps=3, warmup_steps=2, **lrs))
    resumed.restore(checkpoint)
    assert resumed.step == 3
    expect = first.optimizer.state_dict()
    got = resumed.optimizer.state_dict()
    assert [(g["module"], g["param_names"], g["lr"], g["initial_lr"]) for g in got["param_groups"]] == [
        (g["module"], g["param_names"], g["lr"], g["initial_lr"]) for g in expect["param_groups"]
    ]
    for idx, state in expect["state"].items():
        for key, value in state.items():
            assert torch.equal(got["state"][idx][key], value), (idx, key)
    assert resumed.scheduler.get_last_lr() == first.scheduler.get_last_lr()

    # a changed tower_lr on resume: the recipe's value wins (it is what recipe.yaml records), with a warning
    caplog.clear()
    changed = Trainer(make_recipe(out, "m1", steps=3, warmup_steps=2, **{**lrs, "tower_lr": 1e-4}))
    with caplog.at_level(logging.WARNING, logger="audiovec.train.trainer"):
        changed.restore(checkpoint)
    assert "the tower now trains at lr 0.0001" in caplog.text and "used 0.004" in caplog.text
    factor = lr_lambda(changed.recipe.train)(3)
    tower = [g for g in changed.optimizer.param_groups if g["module"] == "tower"]
    assert tower and all(g["lr"] == pytest.approx(1e-4 * factor) for g in tower)
    assert changed.scheduler.base_lrs == [g["initial_lr"] for g in changed.optimizer.param_groups]


def _old_make_optimizer(named, spec) -> torch.optim.Optimizer:
    """The optimizer layout before per-module learning rates (4 unnamed groups), as old checkpoints hold it."""
    fresh_lr = spec.new_lr or spec.lr

    def is_fresh(name: str) -> bool:
        return "projector." in name or "logit_scale" in name

    groups = []
    for fresh in (False, True):
        lr = fresh_lr if fresh else spec.lr
        members = [(n, p) for n, p in named if is_fresh(n) == fresh]
        decay = [p for n, p in members if p.ndim >= 2 and "logit_scale" not in n]
        plain = [p for n, p in members if not (p.ndim >= 2 and "logit_scale" not in n)]
        groups += [
            {"params": decay, "weight_decay": spec.weight_decay, "lr": lr},
            {"params": plain, "weight_decay": 0.0, "lr": lr},
        ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=spec.lr, betas=tuple(spec.betas), eps=spec.eps)


def test_checkpoint_from_before_module_groups_resumes(tmp_path):
    out = tmp_path / "run"
    old = Trainer(make_recipe(out, "m1", steps=3, warmup_steps=2))
    old.optimizer = _old_make_optimizer(old.named, old.recipe.train)
    old.scheduler = torch.optim.lr_scheduler.LambdaLR(old.optimizer, lr_lambda(old.recipe.train))
    old._sampler_state = old.loader.batch_sampler.state_dict()
    batch = next(iter(old.loader))
    old.train_step(batch)
    old.step = 1
    path = old.save()
    assert len(torch.load(path / ckpt.STATE, weights_only=True)["optimizer"]["param_groups"]) == 4

    new = Trainer(make_recipe(out, "m1", steps=3, warmup_steps=2, tower_lr=5e-3))
    assert len(new.optimizer.param_groups) == 6
    new.restore(path)
    old_state = {p: s for p, s in old.optimizer.state.items()}
    names = {id(p): n for n, p in old.named}
    by_name = {n: p for g in new.optimizer.param_groups for n, p in zip(g["param_names"], g["params"])}
    assert len(old_state) == len(by_name)
    for param, state in old_state.items():
        restored = new.optimizer.state[by_name[names[id(param)]]]
        assert torch.equal(restored["exp_avg"], state["exp_avg"])
        assert torch.equal(restored["exp_avg_sq"], state["exp_avg_sq"])
        assert float(restored["step"]) == float(state["step"]) == 1.0
    factor = lr_lambda(new.recipe.train)(1)
    for group in new.optimizer.param_groups:
        peak = 5e-3 if group["module"] == "tower" else new.recipe.train.lr
        assert group["lr"] == pytest.approx(peak * factor)
    new.train_step(batch)  # and it trains on from there


def test_resume_refuses_a_checkpoint_of_other_parameters(tmp_path):
    saved = {"state": {}, "param_groups": [{"params": [0, 1], "param_names": ["a", "b"], "lr": 1.0}]}
    current = {"state": {}, "param_groups": [{"params": [0], "param_names": ["a"], "lr": 1.0}]}
    with pytest.raises(ckpt.CheckpointError, match="unexpected"):
        ckpt.remap_optimizer_state(saved, current)
    unnamed = {"state": {}, "param_groups": [{"params": [0, 1], "lr": 1.0}]}
    with pytest.raises(ckpt.CheckpointError, match="cannot be matched"):
        ckpt.remap_optimizer_state(unnamed, current)


@pytest.mark.parametrize(
    "flag,value",
    [("--tower-lr", "-1e-4"), ("--backbone-lr", "abc"), ("--tower-lr", "nan"), ("--backbone-lr", "true")],
)
def test_cli_rejects_bad_module_lrs(capsys, flag, value):
    from audiovec.cli import main

    assert main(["train", str(TINY / "m1.yaml"), flag, value, "--dry-run"]) == 1
    err = capsys.readouterr().err
    key = flag[2:].replace("-", "_")
    assert f"audiovec train: error: train.{key} ({flag}): expected a learning rate >= 0" in err
    assert "or null to use train.lr; got " in err


def test_cli_flags_set_the_recipe(capsys):
    from audiovec.cli import main

    args = ["train", str(TINY / "m1.yaml"), "--tower-lr", "1e-3", "--train.backbone_lr=2e-5", "--dry-run"]
    assert main(args) == 0
    train = json.loads(capsys.readouterr().out)["train"]
    assert train["tower_lr"] == 1e-3 and train["backbone_lr"] == 2e-5
    assert isinstance(train["tower_lr"], float)
    assert main(["train", str(TINY / "m1.yaml"), "--tower-lr", "null", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["train"]["tower_lr"] is None
    assert math.isclose(load_recipe(TINY / "m1.yaml", {"train.tower_lr": 3}).train.tower_lr, 3.0)
