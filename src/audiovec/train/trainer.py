"""The training loop: AdamW + warm-up/cosine, bf16 autocast, GradCache steps, DDP under ``torchrun``,
periodic dev evaluation, atomic checkpoints with exact resume, metrics and plots. Setup lives in
:mod:`.setup`, the optimiser in :mod:`.optim`, the chunk encoder in :mod:`.encoder`."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from audiovec.errors import CheckpointError, ConfigError
from audiovec.evaluation.evaluate import evaluate
from audiovec.evaluation.retrieval_sets import from_manifest
from audiovec.train import resume as ckpt
from audiovec.train.batches import TrainBatch
from audiovec.train.config import Recipe, save_recipe
from audiovec.train.data import make_loader
from audiovec.train.encoder import PairEncoder
from audiovec.train.gradcache import full_batch_step, gradcache_step
from audiovec.train.loss import in_batch_accuracy
from audiovec.train.matryoshka import make_loss
from audiovec.train.monitor import MetricsLog, memory_mb, plot_curves
from audiovec.train.optim import (  # noqa: F401  (moved; re-exported one release)
    describe_groups,
    group_lrs,
    legacy_param_names,
    lr_lambda,
    make_optimizer,
    make_scheduler,
    module_lrs,
    module_of,
)
from audiovec.train.provenance import record_recipe_data
from audiovec.train.setup import (
    autocast_dtype,
    build_model,
    configure_trainable,
    merge_lora,
    set_train_mode,
    setup_distributed,
)

log = logging.getLogger(__name__)


class Trainer:
    """Owns one run: ``Trainer(recipe).fit(resume=...)`` → summary dict."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.rank, self.world, self.device = setup_distributed()
        self.out = recipe.resolve(recipe.output.dir)
        t = recipe.train
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        torch.manual_seed(t.seed)
        self.model = build_model(recipe.model, recipe)
        configure_trainable(self.model, t)
        self.model.to(self.device)
        set_train_mode(self.model, True)
        self.loss_fn, dims = make_loss(t, self.model.embedding_dim)
        self.loss_fn.to(self.device)
        if dims:  # saved with the model: the sizes encode_*(truncate_dim=), the service and the index know
            self.model.config.matryoshka_dims = dims
        self.amp = autocast_dtype(t.precision, self.device)
        self.encoder: nn.Module = PairEncoder(self.model, t.mode, self.amp)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.encoder = DistributedDataParallel(
                self.encoder, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.named += [("loss." + n, p) for n, p in self.loss_fn.named_parameters()]
        self.optimizer = make_optimizer(self.named, t)
        self.scheduler = make_scheduler(self.optimizer, t)
        n_mels = self.model.tower.n_mels
        self.loader = make_loader(
            recipe,
            self.model.tokenizer,
            n_mels,
            rank=self.rank,
            world=self.world,
            min_seconds=self._min_seconds(),
        )
        self.dev_loader = None
        if recipe.data.dev is not None and self.rank == 0:
            self.dev_loader = make_loader(
                recipe,
                self.model.tokenizer,
                n_mels,
                rank=0,
                world=1,
                dev=True,
                min_seconds=self._min_seconds(),
            )
        self.step = 0
        torch.manual_seed(t.seed + 1000 + self.rank)  # per-rank stream for dropout and friends

    # ------------------------------------------------------------------ checkpoints
    def _out_of_time(self, deadline: float) -> bool:
        """Whether the budget is spent; every rank takes rank 0's answer so all stop at the same step."""
        stop = torch.tensor([float(time.monotonic() >= deadline)], device=self.device)
        if self.world > 1:
            torch.distributed.broadcast(stop, src=0)
        return bool(stop.item())

    def _min_seconds(self) -> float:
        return float(getattr(getattr(self.model, "config", None), "min_seconds", 0.0))

    def save(self) -> Path | None:
        rng = [ckpt.rng_state()]
        if self.world > 1:
            rng = [None] * self.world
            dist.all_gather_object(rng, ckpt.rng_state())
        path = None
        if self.rank == 0:
            meta = {
                "world_size": self.world,
                "sampler": self._sampler_state,
                "recipe": self.recipe.to_dict(),
            }
            optim = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
            weights = {n: p for n, p in self.named}
            path = ckpt.save_checkpoint(
                self.out, self.step, weights, optim, rng, meta, self.recipe.output.keep_last
            )
        self._barrier()
        return path

    def restore(self, path: Path) -> None:
        state = ckpt.load_checkpoint(path)
        meta = state["meta"]
        if meta["world_size"] != self.world:
            raise ConfigError(
                f"{path}: saved with {meta['world_size']} processes, resuming with {self.world}; launch the same count"
            )
        params = dict(self.named)
        missing = set(params) - set(state["weights"])
        if missing:
            raise ConfigError(
                f"{path}: checkpoint lacks trainable weights {sorted(missing)[:5]} (recipe changed?)"
            )
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(state["weights"][name].to(param.device))
        self._restore_optimizer(state["optim"], path)
        self.loader.batch_sampler.load_state_dict(meta["sampler"])
        self._sampler_state = meta["sampler"]
        ckpt.set_rng_state(state["rng"][self.rank])
        self.step = int(meta["step"])

    def _restore_optimizer(self, saved: dict[str, Any], path: Path) -> None:
        """Load the checkpoint's optimizer state into this run's groups, matched by parameter name (so
        checkpoints from before per-module learning rates, or with other groups, resume too). The moments
        and step counts come from the checkpoint; the learning rates and other hyper-parameters from the
        recipe, at the checkpoint's point of the schedule."""
        optim = saved["optimizer"]
        names = None
        if any("param_names" not in g for g in optim["param_groups"]):
            names = legacy_param_names(self.named)
        try:
            remapped, old_lrs = ckpt.remap_optimizer_state(optim, self.optimizer.state_dict(), names)
        except CheckpointError as exc:
            raise ConfigError(f"{path}: {exc} (recipe changed?)") from None
        self.optimizer.load_state_dict(remapped)
        self.scheduler.load_state_dict(saved["scheduler"])
        peaks = [g["initial_lr"] for g in self.optimizer.param_groups]
        self.scheduler.base_lrs = list(peaks)  # the checkpoint's may have other groups or values
        done = self.scheduler.last_epoch
        for group, peak, factor in zip(self.optimizer.param_groups, peaks, self.scheduler.lr_lambdas):
            group["lr"] = peak * factor(done)  # what LambdaLR.get_lr computes
        self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            before = {old_lrs[n] for n in group["param_names"] if old_lrs.get(n) is not None}
            if before and before != {group["initial_lr"]}:
                log.warning(
                    "resume: the %s now trains at lr %.3g (the recipe's); the checkpoint used %s",
                    group["module"],
                    group["initial_lr"],
                    ", ".join(f"{v:.3g}" for v in sorted(before)),
                )

    def _barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    # ------------------------------------------------------------------ one step
    def train_step(self, batch: TrainBatch) -> float:
        keys, negative_keys, negative_valid = batch.keys, batch.negative_keys, batch.negative_valid

        def loss_of(*emb: torch.Tensor) -> torch.Tensor:
            hard = emb[2] if len(emb) > 2 else None
            return self.loss_fn(
                emb[0],
                emb[1],
                keys,
                hard_negatives=hard,
                negative_keys=negative_keys,
                negative_valid=negative_valid,
            )

        chunks = batch.split(self.recipe.train.chunk_size)
        if len(chunks) == 1:  # no chunking: one forward with autograd (GradCache would embed twice)
            loss = full_batch_step(self.encoder, chunks[0], loss_of)
        else:
            no_sync = getattr(self.encoder, "no_sync", None)
            loss = gradcache_step(self.encoder, chunks, loss_of, no_sync)
        if self.recipe.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for _, p in self.named], self.recipe.train.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float] | None:
        if self.dev_loader is None:
            return None
        self.model.eval()
        gather = self.loss_fn.gather
        self.loss_fn.gather = False
        encoder = PairEncoder(self.model, "audio", self.amp)
        losses, a2t, t2a, sizes = [], [], [], []
        try:
            for batch in self.dev_loader:
                audio, text = encoder(batch)
                losses.append(float(self.loss_fn(audio, text, batch.keys)))
                accuracy = in_batch_accuracy(audio, text, batch.keys)
                a2t.append(accuracy[0])
                t2a.append(accuracy[1])
                sizes.append(batch.size)
        finally:
            self.loss_fn.gather = gather
            set_train_mode(self.model, True)
        total = sum(sizes)
        out = {
            "loss": sum(v * n for v, n in zip(losses, sizes)) / total,
            "acc_a2t": sum(v * n for v, n in zip(a2t, sizes)) / total,
            "acc_t2a": sum(v * n for v, n in zip(t2a, sizes)) / total,
        }
        out.update(self._retrieval_metrics())
        return out

    def _retrieval_metrics(self) -> dict[str, float]:
        """hit_rate@5 / recall@5 from the library's evaluator when the dev set is a manifest file."""
        dev = self.recipe.data.dev
        if not isinstance(dev, str):
            return {}
        was_training = self.model.training
        self.model.eval()
        try:
            result = next(
                iter(
                    evaluate(self.model, [from_manifest(self.recipe.resolve(dev))], use_cache=False).values()
                )
            )
        finally:
            set_train_mode(self.model, was_training)
        return {f"t2a_{k}": float(v) for k, v in result["t2a"].items() if k.endswith("@5")}

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool = False) -> dict[str, Any]:
        r, t, o = self.recipe, self.recipe.train, self.recipe.output
        self._sampler_state = self.loader.batch_sampler.state_dict()
        if resume:
            latest = ckpt.latest_checkpoint(self.out)
            if latest is None:
                log.warning("--resume: no checkpoint in %s, starting from scratch", self.out)
            else:
                self.restore(latest)
                log.info("resumed from %s (step %d)", latest, self.step)
        metrics = None
        if self.rank == 0:
            log.info("learning rates (peak, before warm-up/decay): %s", describe_groups(self.optimizer))
            self.out.mkdir(parents=True, exist_ok=True)
            save_recipe(r, self.out / "recipe.yaml")
            metrics = MetricsLog(
                self.out / "metrics.jsonl", self.out / "tensorboard" if o.tensorboard else None
            )
            metrics.truncate_after(self.step)
        from tqdm.auto import tqdm

        bar = tqdm(total=t.steps, initial=self.step, disable=self.rank != 0 or not o.progress, desc="train")
        batches = iter(self.loader)
        losses: list[float] = []
        deadline = time.monotonic() + 60 * t.max_minutes if t.max_minutes > 0 else None
        target = t.steps
        while self.step < target:
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(self.loader)  # the sampler moved to the next epoch
                continue
            start = time.perf_counter()
            loss = self.train_step(batch)
            elapsed = time.perf_counter() - start
            self.step += 1
            self._sampler_state = self.loader.batch_sampler.state_dict(after_batch=batch)
            losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", T=f"{self.loss_fn.temperature:.3f}")
            if metrics is not None and (self.step % o.log_every == 0 or self.step == target):
                metrics.write(
                    {
                        "kind": "train",
                        "step": self.step,
                        "epoch": batch.epoch,
                        "loss": loss,
                        "lr": self.scheduler.get_last_lr()[0],
                        **{f"lr_{m}": v for m, v in group_lrs(self.optimizer).items()},
                        "temperature": self.loss_fn.temperature,
                        "samples_per_s": t.batch_size / max(elapsed, 1e-9),
                        "step_s": elapsed,
                        **memory_mb(),
                    }
                )
            if deadline is not None and self.step < target and self._out_of_time(deadline):
                log.info("time budget of %.1f min spent at step %d of %d", t.max_minutes, self.step, t.steps)
                target = self.step
            if (o.eval_every and self.step % o.eval_every == 0) or self.step == target:
                scores = self.evaluate()
                if scores is not None and metrics is not None:
                    metrics.write({"kind": "dev", "step": self.step, **scores})
                    log.info("step %d dev %s", self.step, {k: round(v, 4) for k, v in scores.items()})
                self._barrier()
            if o.checkpoint_every and (self.step % o.checkpoint_every == 0 or self.step == target):
                self.save()
        bar.close()
        summary = {"steps": self.step, "losses": losses, "out": str(self.out)}
        if self.rank == 0 and metrics is not None:
            metrics.close()
            if o.plot:
                plot = plot_curves(self.out / "metrics.jsonl", self.out / "curves.png")
                summary["plot"] = str(plot) if plot else None
            if o.save_final:
                record_recipe_data(self.model, r)  # training datasets → config.json, model card, mteb
                summary["model"] = str(merge_lora(self.model).save_pretrained(self.out / "final"))
        self._barrier()
        return summary


def train(recipe: Recipe, resume: bool = False) -> dict[str, Any]:
    """Run a recipe to its last step (single process, or one of several under torchrun)."""
    trainer = Trainer(recipe)
    try:
        return trainer.fit(resume=resume)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
