"""A larger instrument supplement: does it teach instruments across soundfonts, and what does it cost on real sounds?

Trains the demo's recipe on the same real-sound corpus, same steps and seed: as built, and with
``--per-instrument`` extra clips per General MIDI instrument (train-split captions) rendered by TimGM6mb,
by the OPL-3 FM soundfont, or by both in turn (``--fonts``). Scores each on the held-out real sources and
with ``soundfont_transfer.py``'s two renderings (TimGM6mb and OPL-3 FM; a soundfont the extra clips use is
no longer unseen).

    python benchmarks/instrument_supplement.py --corpus runs/demo/corpus --steps 600 --threads 2
    python benchmarks/instrument_supplement.py --corpus runs/demo/corpus --fonts opl3 --per-instrument 10 \
        --variants extra          # skip the as-built run; results merge into the JSON by variant name

Writes ``benchmarks/results/instrument_supplement.json``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from _common import base_parser, machine, set_threads, write_result
from _recipe_runs import corpus_training_rows, heldout_scores, train_recipe_run, write_training_manifest
from soundfont_transfer import opl3_soundfont, score, specs


def parse_args(argv: list[str] | None = None) -> Any:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a built corpus (audiovec data sounds)")
    parser.add_argument("--per-instrument", type=int, default=40, help="extra training clips per instrument")
    parser.add_argument(
        "--fonts", choices=sorted(FONTS), default="timgm6mb", help="which soundfont renders the extra clips"
    )
    parser.add_argument("--variants", nargs="+", choices=["as_built", "extra"], default=["as_built", "extra"])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("runs/instrument-supplement"))
    return parser.parse_args(argv)


FONTS = {"timgm6mb": ("TimGM6mb",), "opl3": ("OPL-3 FM",), "both": ("TimGM6mb", "OPL-3 FM")}


def variant_name(per_instrument: int, fonts: str) -> str:
    return f"+ {per_instrument} per instrument ({fonts})" if fonts != "timgm6mb" else "+ instruments"


def manifests(
    corpus: Path, work: Path, per_instrument: int, fonts: str, soundfonts: dict[str, bytes]
) -> dict[str, Path]:
    """The corpus's training rows with absolute paths, and the same plus the extra instrument clips (the
    ``fonts`` soundfonts take turns: clip i of an instrument uses font i mod len)."""
    import soundfile as sf

    from audiovec.demo.synth import instruments
    from audiovec.demo.synth.captions import make_captions

    rows = corpus_training_rows(corpus)
    audio = work / f"audio-{fonts}"
    audio.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)  # apart from soundfont_transfer's test specs (seed 0)
    extra = []
    for name in instruments.INSTRUMENTS:
        for i in range(per_instrument):
            spec = instruments.make_spec("instrument", (name, instruments.REGISTERS[i % 3]), rng)
            font = FONTS[fonts][i % len(FONTS[fonts])]
            clip = instruments.render(spec, soundfont=soundfonts[font])
            path = audio / f"{name.replace(' ', '_')}-{i:03d}.wav"
            sf.write(path, np.clip(clip.audio, -1, 1), 16_000, subtype="PCM_16")
            captions = make_captions(
                "instrument", clip.attrs, "train", np.random.default_rng(i + 7 * per_instrument), 4
            )
            extra.append({
                "id": f"instr:{path.stem}", "audio": str(path), "captions": captions, "labels": clip.labels,
                "source": "instrument-extra", "duration": round(len(clip.audio) / 16_000, 3), "kind": "synthetic",
                "category": "synthetic instrument", "group": f"instrument-extra#{name}", "soundfont": font,
            })  # fmt: skip
    extra_name = variant_name(per_instrument, fonts)
    out = {"as built": work / "as_built.jsonl", extra_name: work / f"plus_{fonts}_{per_instrument}.jsonl"}
    write_training_manifest(rows, out["as built"])
    write_training_manifest(rows + extra, out[extra_name])
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    from audiovec.demo.run import DemoOptions, compose_base_model
    from audiovec.demo.synth import instruments

    args = parse_args(argv)
    set_threads(args.threads)
    names = list(instruments.INSTRUMENTS)
    test_specs = specs(names, 6, 0)
    fonts = {"TimGM6mb": instruments.soundfont_path().read_bytes(), "OPL-3 FM": opl3_soundfont(None)}
    renders = {
        font: [instruments.render(s, soundfont=data).audio for s in test_specs]
        for font, data in fonts.items()
    }
    options = DemoOptions(steps=args.steps, minutes=0, progress=False, seed=args.seed)
    base = compose_base_model(options, args.work / "base")
    caches: dict[str, Any] = {}
    results = _previous_results()
    built = manifests(args.corpus, args.work, args.per_instrument, args.fonts, fonts)
    wanted = {"as built"} if "as_built" in args.variants else set()
    wanted |= {variant_name(args.per_instrument, args.fonts)} if "extra" in args.variants else set()
    for variant, manifest in built.items():
        if variant not in wanted:
            continue
        run_dir = args.work / ("run-" + re.sub(r"[^a-z0-9]+", "-", variant.replace("+", "plus")).strip("-"))
        # frozen tower: the clips both variants share keep their tokens
        model, _ = train_recipe_run(options, base, manifest, run_dir, args.threads, token_caches=caches)
        held = heldout_scores(model, args.corpus / "heldout.jsonl")
        with torch.no_grad():
            fonts_scored = {
                font: score(model, waves, test_specs, names, 0) for font, waves in renders.items()
            }
        results[variant] = {
            "per_instrument": 0 if variant == "as built" else args.per_instrument,
            "fonts": None if variant == "as built" else list(FONTS[args.fonts]),
            "heldout_t2a_hit_rate@5": round(held["t2a"]["hit_rate@5"], 4),
            "heldout_a2t_hit_rate@5": round(held["a2t"]["hit_rate@5"], 4),
            "heldout_instruments_t2a": round(held["by_category"]["groups"]["instruments"]["t2a"]["hit_rate@5"], 4),
            "soundfonts": {f: {k: r[k] for k in ("instrument_accuracy", "t2a_hit_rate@5")} for f, r in fonts_scored.items()},
        }  # fmt: skip
        print(variant, json.dumps(results[variant]), flush=True)
    write_result(
        "instrument_supplement",
        {"machine": machine(), "steps": args.steps, "seed": args.seed,
         "chance_accuracy": round(1 / len(names), 4), "results": results},
        args,
    )  # fmt: skip
    return 0


def _previous_results() -> dict[str, Any]:
    """Variants recorded by earlier runs (same steps and seed assumed; the JSON says which ran)."""
    path = Path(__file__).with_name("results") / "instrument_supplement.json"
    try:
        old = json.loads(path.read_text())
        results = dict(old["results"])
    except (OSError, ValueError, KeyError):
        return {}
    for name, record in results.items():  # records written before per-variant fields existed
        record.setdefault("per_instrument", 0 if name == "as built" else old.get("per_instrument"))
        record.setdefault("fonts", None if name == "as built" else ["TimGM6mb"])
    return results


if __name__ == "__main__":
    sys.exit(main())
