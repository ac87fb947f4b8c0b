"""The training loop: model setup (what trains), AdamW + warm-up/cosine, bf16 autocast, GradCache steps,
DDP under ``torchrun``, periodic dev evaluation, atomic checkpoints with exact resume, metrics and plots."""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from audiovec.errors import CheckpointError, ConfigError
from audiovec.train import checkpoint as ckpt
from audiovec.train.config import ModelSpec, Recipe, TrainSpec, save_recipe
from audiovec.train.data import make_loader
from audiovec.train.gradcache import full_batch_step, gradcache_step, split_batch
from audiovec.train.loss import in_batch_accuracy
from audiovec.train.matryoshka import make_loss
from audiovec.train.monitor import MetricsLog, memory_mb, plot_curves

log = logging.getLogger(__name__)
UNUSED_PARAMS = ("audio_bos_eos_token",)  # Qwen2.5-Omni's encoder holds it but no forward uses it


# ---------------------------------------------------------------------------------------------- setup
def setup_distributed() -> tuple[int, int, torch.device]:
    """Join the process group when launched by torchrun / accelerate (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), device
    return 0, 1, device


def build_model(spec: ModelSpec, recipe: Recipe) -> nn.Module:
    """The starting model: a saved folder, or a tiny test model (optionally with backbone layers dropped)."""
    if spec.path is not None:
        from audiovec.model import AudioTextEmbedder

        return AudioTextEmbedder.from_pretrained(recipe.resolve(spec.path))
    from audiovec.testing import tiny_embedder

    tiny = dict(spec.tiny or {})
    keep = tiny.pop("keep_layers", None)
    unknown = set(tiny) - {"tower", "backbone", "seed"}
    if unknown:
        raise ConfigError(
            f"model.tiny: unknown keys {sorted(unknown)} (known: tower, backbone, seed, keep_layers)"
        )
    model = tiny_embedder(**tiny)
    if keep is not None:
        _keep_layers(model, keep)
    return model


def _keep_layers(model: nn.Module, keep: int | list[int]) -> None:
    """Drop backbone layers in memory, choosing them like ``audiovec prune`` does."""
    from audiovec.prune import select_layers

    layers = model.backbone.layers
    chosen = select_layers(len(layers), keep)
    model.backbone.layers = nn.ModuleList([layers[i] for i in chosen])
    model.backbone.config.num_hidden_layers = len(chosen)
    if getattr(model.backbone.config, "layer_types", None):
        model.backbone.config.layer_types = [model.backbone.config.layer_types[i] for i in chosen]
    for new, layer in enumerate(model.backbone.layers):
        if hasattr(getattr(layer, "self_attn", None), "layer_idx"):
            layer.self_attn.layer_idx = new
    model.config.backbone_config = model.backbone.config.to_dict()


def configure_trainable(model: nn.Module, spec: TrainSpec) -> None:
    """Set ``requires_grad`` by ``spec.trainable``; wrap LoRA targets with peft adapters."""
    model.requires_grad_(False)
    audio = spec.mode == "audio"
    if spec.gradient_checkpointing:
        _enable_checkpointing(model.backbone)
        if audio and (spec.trainable == "full" or "tower" in spec.lora.targets):
            _enable_checkpointing(model.tower.encoder)
    if spec.trainable == "full":
        (model if audio else model.backbone).requires_grad_(True)
    elif spec.trainable == "frozen_tower":
        model.backbone.requires_grad_(True)
        model.projector.requires_grad_(audio)
    elif spec.trainable == "projector":
        model.projector.requires_grad_(True)
    elif spec.trainable == "audio_adapter":  # text keeps the pretrained backbone; audio learns to use it
        adapter = model.audio_adapter
        if adapter is None:
            a = spec.audio_adapter
            adapter = model.add_audio_adapter(a.r, a.alpha, a.targets)
        adapter.requires_grad_(True)
        model.projector.requires_grad_(True)
    elif spec.trainable == "lora":
        from peft import LoraConfig, get_peft_model

        lora = spec.lora
        for target in lora.targets:
            cfg = LoraConfig(
                r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules
            )
            if target == "backbone":
                model.backbone = get_peft_model(model.backbone, cfg)
            else:
                model.tower.encoder = get_peft_model(model.tower.encoder, cfg)
        model.projector.requires_grad_(audio)
    for name, param in model.named_parameters():
        if any(u in name for u in UNUSED_PARAMS):
            param.requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"train.trainable {spec.trainable!r}: nothing to train")
    if audio and spec.cache_tower and not any(p.requires_grad for p in model.tower.parameters()):
        from audiovec.towers import TokenCache

        model.tower.token_cache = TokenCache(max_bytes=int(spec.cache_tower_gb * (1 << 30)))


def set_train_mode(model: nn.Module, training: bool) -> None:
    """``model.train(training)``, except that a frozen tower always stays in eval mode (deterministic,
    so its tokens can be cached)."""
    model.train(training)
    tower = getattr(model, "tower", None)
    if tower is not None and not any(p.requires_grad for p in tower.parameters()):
        tower.eval()


def _enable_checkpointing(module: nn.Module) -> None:
    if getattr(module, "supports_gradient_checkpointing", False):
        module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold peft adapters into the base weights so the model saves as a plain audiovec model."""
    from_peft = type(model.backbone).__module__.startswith("peft")
    if from_peft:
        model.backbone = model.backbone.merge_and_unload()
    if type(model.tower.encoder).__module__.startswith("peft"):
        model.tower.encoder = model.tower.encoder.merge_and_unload()
    return model


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 where the device supports it (``auto``), else full precision."""
    if precision == "fp32":
        return None
    ok = torch.cuda.is_bf16_supported() if device.type == "cuda" else _cpu_has_bf16()
    if precision == "bf16" and not ok:
        log.warning("bf16 requested but %s lacks native bf16; autocast will emulate it (slow)", device)
        return torch.bfloat16
    return torch.bfloat16 if ok else None


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def lr_lambda(spec: TrainSpec):
    """Linear warm-up to ``lr`` then cosine decay to ``min_lr_ratio * lr`` at ``steps``."""

    def factor(done: int) -> float:
        if done < spec.warmup_steps:
            return (done + 1) / spec.warmup_steps
        progress = min(1.0, (done - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps))
        return spec.min_lr_ratio + (1 - spec.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


MODULES = ("backbone", "tower", "new", "other")  # optimizer groups, in this order


def module_of(name: str) -> str:
    """Which learning rate a trainable parameter takes: ``new`` (the projector, new in a composed model,
    and the temperature), ``tower`` or ``backbone`` (LoRA adapters included: peft keeps them under the
    module they wrap), ``other`` for anything else (plain ``lr``)."""
    if "projector." in name or "logit_scale" in name:
        return "new"
    if name.startswith("audio_adapter."):  # backbone LoRA used by audio only
        return "backbone"
    if name.startswith("tower."):
        return "tower"
    if name.startswith("backbone."):
        return "backbone"
    return "other"


def module_lrs(spec: TrainSpec) -> dict[str, float]:
    """Each module's peak learning rate: ``tower_lr`` / ``backbone_lr`` / ``new_lr``, falling back to ``lr``."""
    return {
        "backbone": spec.lr if spec.backbone_lr is None else spec.backbone_lr,
        "tower": spec.lr if spec.tower_lr is None else spec.tower_lr,
        "new": spec.new_lr or spec.lr,
        "other": spec.lr,
    }


def _decays(name: str, param: nn.Parameter) -> bool:
    return param.ndim >= 2 and "logit_scale" not in name


def make_optimizer(named: list[tuple[str, nn.Parameter]], spec: TrainSpec) -> torch.optim.Optimizer:
    """AdamW with one pair of groups per module (see ``module_of``), each at its own learning rate
    (``module_lrs``); in each pair biases, norms and the temperature get no weight decay. Groups are named
    (``group["module"]``) and hold their parameters' names, which a checkpoint keeps so that resume can
    match its state by name. Only ``named`` (the trainable parameters) gets groups; empty groups are dropped."""
    lrs = module_lrs(spec)
    groups = []
    for module in MODULES:
        members = [(n, p) for n, p in named if module_of(n) == module]
        for decay in (True, False):
            params = [(n, p) for n, p in members if _decays(n, p) == decay]
            if params:
                groups.append(
                    {
                        "params": params,
                        "lr": lrs[module],
                        "weight_decay": spec.weight_decay if decay else 0.0,
                        "module": module,
                    }
                )
    present = {g["module"] for g in groups}
    for key, module in (("tower_lr", "tower"), ("backbone_lr", "backbone")):
        if getattr(spec, key) is not None and module not in present:
            log.warning(
                "train.%s is set but the %s does not train (trainable: %s, mode: %s); ignored",
                key,
                module,
                spec.trainable,
                spec.mode,
            )
        elif getattr(spec, key) == 0:
            log.warning(
                "train.%s is 0: the %s keeps its weights but its gradients are still computed "
                "(trainable: frozen_tower / projector skip them)",
                key,
                module,
            )
    return torch.optim.AdamW(groups, lr=spec.lr, betas=tuple(spec.betas), eps=spec.eps)


def make_scheduler(optimizer: torch.optim.Optimizer, spec: TrainSpec) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up + cosine (``lr_lambda``) as one factor that multiplies every group's own peak lr alike."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(spec))


def group_lrs(optimizer: torch.optim.Optimizer, key: str = "lr") -> dict[str, float]:
    """``{module: lr}`` of the optimizer's groups (``key="initial_lr"``: the peak, before the schedule)."""
    return {g["module"]: g[key] for g in optimizer.param_groups}


def describe_groups(optimizer: torch.optim.Optimizer) -> str:
    """One line: each module's peak learning rate and how many weights it trains."""
    sizes: dict[str, int] = {}
    for group in optimizer.param_groups:
        sizes[group["module"]] = sizes.get(group["module"], 0) + sum(p.numel() for p in group["params"])
    peaks = group_lrs(optimizer, "initial_lr")
    return ", ".join(f"{m} {peaks[m]:.3g} ({n:,} weights)" for m, n in sizes.items())


def legacy_param_names(named: list[tuple[str, nn.Parameter]]) -> list[list[str]]:
    """Parameter names per group as optimizers before per-module learning rates laid them out (old
    checkpoints carry no names): [old decay, old plain, new decay, new plain], empty groups dropped."""
    groups = []
    for fresh in (False, True):
        members = [(n, p) for n, p in named if (module_of(n) == "new") == fresh]
        for decay in (True, False):
            groups.append([n for n, p in members if _decays(n, p) == decay])
    return [g for g in groups if g]


class PairEncoder(nn.Module):
    """What DDP wraps: one chunk of a batch in, its embeddings out (audio + caption, or text pairs).

    When nothing on the text path trains (``trainable: audio_adapter`` or ``projector``), captions are
    embedded once, by the backbone in eval mode (the pretrained text vectors, no dropout), and reused."""

    def __init__(self, model: nn.Module, mode: str, amp: torch.dtype | None) -> None:
        super().__init__()
        self.model = model
        self.mode = mode
        self.amp = amp
        frozen_text = not any(p.requires_grad for p in model.backbone.parameters())
        self.text_cache: dict[bytes, torch.Tensor] | None = {} if frozen_text else None

    def forward(self, chunk: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        device = self.model.device
        with torch.autocast(device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            if self.mode == "audio":
                lengths = chunk["lengths"].to(device)
                features = chunk["features"][..., : int(lengths.max())].to(device)
                content = chunk.get("content_lengths")
                content = content.to(device) if content is not None else None
                return self.model.forward_audio(features, lengths, content), self._text(chunk)
            out = [self._text(chunk["anchor"]), self._text(chunk["positive"])]
            if "negative" in chunk:
                out.append(self._text(chunk["negative"]))
            return tuple(out)

    def _text(self, part: dict[str, Any]) -> torch.Tensor:
        mask = part["attention_mask"]
        keep = mask.bool().any(0)  # drop columns that are padding in every row of this chunk
        device = self.model.device
        ids, mask = part["input_ids"][:, keep], mask[:, keep]
        if self.text_cache is None:
            return self.model.forward_text(ids.to(device), mask.to(device))
        keys = [row[m.bool()].numpy().tobytes() for row, m in zip(ids, mask)]
        first: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self.text_cache:
                first.setdefault(key, i)
        missing = list(first.values())
        if missing:
            backbone = self.model.backbone
            was_training = backbone.training
            backbone.eval()
            try:
                with torch.no_grad():
                    vectors = self.model.forward_text(ids[missing].to(device), mask[missing].to(device))
            finally:
                backbone.train(was_training)
            for i, vector in zip(missing, vectors):
                self.text_cache[keys[i]] = vector.float()
        return torch.stack([self.text_cache[key] for key in keys])


def _chunks(batch: dict[str, Any], chunk_size: int) -> list[dict[str, Any]]:
    if chunk_size <= 0 or chunk_size >= batch["size"]:
        return [batch]
    if "anchor" in batch:  # nested text-pair batch: split every part alike
        parts = {
            k: list(split_batch(batch[k], chunk_size))
            for k in ("anchor", "positive", "negative")
            if k in batch
        }
        return [{k: v[i] for k, v in parts.items()} for i in range(len(parts["anchor"]))]
    return list(
        split_batch(
            {
                k: batch[k]
                for k in ("features", "lengths", "content_lengths", "input_ids", "attention_mask")
                if k in batch
            },
            chunk_size,
        )
    )


# ---------------------------------------------------------------------------------------------- trainer
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
    def train_step(self, batch: dict[str, Any]) -> float:
        keys = batch["keys"]
        negative_keys = batch.get("negative_keys", [])
        negative_valid = batch.get("negative_valid")

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

        chunks = _chunks(batch, self.recipe.train.chunk_size)
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
                losses.append(float(self.loss_fn(audio, text, batch["keys"])))
                accuracy = in_batch_accuracy(audio, text, batch["keys"])
                a2t.append(accuracy[0])
                t2a.append(accuracy[1])
                sizes.append(batch["size"])
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
        try:
            from audiovec.benchmarks_data import from_manifest
            from audiovec.evaluate import evaluate
        except ImportError:
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
                        "epoch": int(batch["epoch"]),
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
