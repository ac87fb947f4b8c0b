"""Training recipes: nested dataclasses loaded from YAML, with ``--key value`` / ``--a.b value`` overrides."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from audiovec.data.augment import AugmentSpec
from audiovec.errors import ConfigError
from audiovec.train.matryoshka import parse_dims, resolve_weights

TRAINABLE = ("full", "lora", "projector", "frozen_tower", "audio_adapter")
MODES = ("audio", "text")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class ModelSpec:
    """Where the starting model comes from: a saved model folder or a tiny test model."""

    path: str | None = None  # a folder written by save_pretrained (`audiovec compose` / `prune`)
    tiny: dict[str, Any] | None = None  # {tower, backbone, seed, keep_layers?} → audiovec.tiny


@dataclass
class DataSpec:
    train: list[Any] = field(default_factory=list)  # manifest paths or {path, weight}
    dev: Any = None  # dev manifest (path or {fsdd: {...}}) for periodic evaluation
    text_pairs: list[Any] = field(
        default_factory=list
    )  # JSONL {"anchor","positive","negative"?} (mode: text)
    max_seconds: float = 10.0  # training crop length (deterministic per sample and epoch)
    # "sqrt": every group of rows (the manifest field `balance_by`, e.g. a corpus's package#rule) is drawn
    # in proportion to the square root of its size, so a big source (1,800 spoken letters) cannot drown a
    # small one (20 dog barks); "none": every row equally often
    balance: str = "none"
    balance_by: str = "group"
    num_workers: int = 0  # DataLoader workers decoding audio
    bucket_size: int = 16  # batches per length bucket window (length-bucketed sampling)
    dev_max_items: int = 256
    # waveform augmentation of training clips (level, noise, reverb, band limit); off unless variants > 1
    augment: AugmentSpec = field(default_factory=AugmentSpec)


@dataclass
class LoraSpec:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: ["backbone"])  # backbone and/or tower
    target_modules: Any = "all-linear"


@dataclass
class AudioAdapterSpec:
    """Backbone LoRA used only by audio (``trainable: audio_adapter``): text keeps the pretrained weights."""

    r: int = 8
    alpha: float = 16.0
    targets: Any = "all-linear"


@dataclass
class TrainSpec:
    mode: str = "audio"  # audio: audio–caption pairs; text: text pairs (modality transfer)
    trainable: str = "full"
    lora: LoraSpec = field(default_factory=LoraSpec)
    audio_adapter: AudioAdapterSpec = field(default_factory=AudioAdapterSpec)
    steps: int = 1000
    max_minutes: float = 0.0  # wall-clock budget; stop early (and save) once spent; 0 = none
    batch_size: int = 64  # global batch (all processes together)
    chunk_size: int = 0  # GradCache chunk per process; 0 = whole local batch at once
    lr: float = 1e-4
    tower_lr: float | None = None  # learning rate of the audio tower (and its LoRA); None = lr
    backbone_lr: float | None = None  # learning rate of the LLM backbone (and its LoRA); None = lr
    new_lr: float = 0.0  # learning rate of the projector and temperature; 0 = same as lr
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    grad_clip: float = 1.0  # 0 = off
    temperature: float = 0.07
    learnable_temperature: bool = True
    min_temperature: float = 0.01
    max_temperature: float = 1.0
    mask_false_negatives: bool = True
    # manifest fields that captions may name (language, words said, accent): a pair is masked only when
    # the caption is also true of the other clip (loss.facet_label_keys); [] = mask by label set alone
    false_negative_facets: list[str] = field(default_factory=list)
    # Matryoshka: also train prefixes of the vectors ([384, 192, 96, 48], "auto" = full, 1/2, 1/4, 1/8;
    # [] = off), each re-normalised, losses averaged with matryoshka_weights ([] = equal); see train/matryoshka.py
    matryoshka_dims: Any = field(default_factory=list)
    matryoshka_weights: list[float] = field(default_factory=list)
    precision: str = "auto"  # auto: bf16 where the device supports it
    gradient_checkpointing: bool = False
    cache_tower: bool = True  # frozen tower: compute each clip's tokens once, reuse them every epoch
    cache_tower_gb: float = 2.0
    seed: int = 0
    num_threads: int = 0  # torch CPU threads per process; 0 = torch's default (1 is best on a busy CPU)


@dataclass
class OutputSpec:
    dir: str = "runs/train"
    log_every: int = 1
    eval_every: int = 0  # 0 = only at the end (when a dev manifest is given)
    checkpoint_every: int = 500
    keep_last: int = 3
    tensorboard: bool = False
    plot: bool = True
    progress: bool = True
    save_final: bool = True


@dataclass
class Recipe:
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    name: str = "run"
    base_dir: str = "."  # relative paths resolve against this folder (default: where you launch)
    recipe_dir: str = "."  # what ${RECIPE_DIR} in a path expands to: the recipe file's folder

    def validate(self) -> Recipe:
        t = self.train
        _choice("train.mode", t.mode, MODES)
        _choice("train.trainable", t.trainable, TRAINABLE)
        _choice("train.precision", t.precision, PRECISIONS)
        _choice("data.balance", self.data.balance, ("none", "sqrt"))
        self.data.augment.validate()
        if (self.model.path is None) == (self.model.tiny is None):
            raise ConfigError(
                "model: give exactly one of `path` (a model folder) or `tiny` (a test model spec)"
            )
        if t.batch_size < 1 or t.steps < 1:
            raise ConfigError(f"train.batch_size ({t.batch_size}) and train.steps ({t.steps}) must be >= 1")
        if t.chunk_size < 0:
            raise ConfigError(f"train.chunk_size must be >= 0, got {t.chunk_size}")
        if t.mode == "audio" and not self.data.train:
            raise ConfigError("data.train: list at least one manifest for mode 'audio'")
        if t.mode == "text" and not self.data.text_pairs:
            raise ConfigError("data.text_pairs: list at least one text-pair JSONL for mode 'text'")
        if t.mode == "text" and t.trainable in ("audio_adapter", "projector"):
            raise ConfigError(
                f"train.trainable {t.trainable!r} trains only the audio path: text pairs teach it nothing"
            )
        if t.mode == "text" and t.trainable == "lora" and "tower" in t.lora.targets:
            raise ConfigError(
                "train.lora.targets: the audio tower cannot learn from text pairs; target the backbone"
            )
        for target in t.lora.targets:
            _choice("train.lora.targets", target, ("backbone", "tower"))
        _check_matryoshka(t)
        for key in MODULE_LRS:
            setattr(t, key, _module_lr(key, getattr(t, key)))
        if self.output.keep_last < 1:
            raise ConfigError(f"output.keep_last must be >= 1, got {self.output.keep_last}")
        return self

    def resolve(self, path: str | os.PathLike) -> Path:
        """A path from the recipe, relative to ``base_dir`` unless absolute."""
        text = str(path).replace("${RECIPE_DIR}", self.recipe_dir)
        p = Path(os.path.expanduser(text))
        return p if p.is_absolute() else Path(self.base_dir) / p

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


MODULE_LRS = ("tower_lr", "backbone_lr")


def _module_lr(key: str, value: Any) -> float | None:
    """A per-module learning rate: None (use ``train.lr``) or a finite number >= 0 (0 holds the module
    still), as a float."""
    if value is None:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0:
        raise ConfigError(
            f"train.{key} (--{key.replace('_', '-')}): expected a learning rate >= 0 such as 3e-4, "
            f"or null to use train.lr; got {value!r}"
        )
    return float(value)


def _check_matryoshka(t: TrainSpec) -> None:
    t.matryoshka_dims = parse_dims(t.matryoshka_dims)
    if isinstance(t.matryoshka_dims, list) and (t.matryoshka_dims or t.matryoshka_weights):
        resolve_weights(t.matryoshka_weights, t.matryoshka_dims or [])


def _choice(name: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(options)}")


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys by name."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'recipe'}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(
                f"{where + '.' if where else ''}{key}: unknown key (known: {', '.join(fields)})"
            )
        sub = _nested_type(cls, key)
        kwargs[key] = from_dict(sub, value, f"{where}.{key}" if where else key) if sub else value
    return cls(**kwargs)


def _nested_type(cls: type, key: str) -> type | None:
    default = next(f for f in dataclasses.fields(cls) if f.name == key).default_factory
    if default is not dataclasses.MISSING:
        made = default()
        if dataclasses.is_dataclass(made):
            return type(made)
    return None


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``["--train.lr", "3e-4", "--steps=5"]`` → ``{"train.lr": 3e-4, "steps": 5}`` (values as YAML)."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) < 3:
            raise ConfigError(f"override {arg!r}: expected --key value or --a.b=value")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args):
                raise ConfigError(f"override --{key}: missing a value")
            value = args[i + 1]
            i += 1
        out[key.replace("-", "_")] = _parse_value(value)
        i += 1
    return out


def _parse_value(text: str) -> Any:
    """YAML scalars, plus numbers YAML 1.1 reads as strings (``3e-4``)."""
    value = yaml.safe_load(text) if text != "" else ""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys in a nested dict. A bare key that is not top-level is looked up among the
    sections (``--lr`` → ``train.lr``) and must name exactly one field."""
    for key, value in overrides.items():
        parts = key.split(".")
        if len(parts) == 1 and key not in _fields(Recipe):
            owners = [s for s, sub in _sections().items() if key in _fields(sub)]
            if len(owners) != 1:
                where = f"it is in {', '.join(owners)}" if owners else "no section has it"
                raise ConfigError(
                    f"override --{key}: ambiguous or unknown key ({where}); use --section.{key}"
                )
            parts = [owners[0], key]
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override --{key}: {part} is not a section")
        node[parts[-1]] = value
    return data


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _sections() -> dict[str, type]:
    return {"model": ModelSpec, "data": DataSpec, "train": TrainSpec, "output": OutputSpec}


def load_recipe(path: str | os.PathLike | None, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read a YAML recipe (relative paths in it resolve against its folder), apply overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{p}: recipe file not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: a recipe must be a mapping of sections")
        data.setdefault("name", p.stem)
        data.setdefault("recipe_dir", str(p.resolve().parent))
    data.setdefault("base_dir", str(Path.cwd()))
    apply_overrides(data, overrides or {})
    return from_dict(Recipe, data).validate()


def save_recipe(recipe: Recipe, path: str | os.PathLike) -> None:
    Path(path).write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
