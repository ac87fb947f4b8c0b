"""Does a model hear the instrument or the soundfont? The same notes rendered by two General MIDI soundfonts.

The training corpus renders its instrument supplement with one soundfont (TimGM6mb); a user's music comes
from real instruments and other synthesisers. This renders the same clip specifications (instrument,
register, texture, tempo, seed) with TimGM6mb and with the OPL-3 FM soundfont (Debian's ``opl3-soundfont``,
on the allow-list, never in training) and scores a model on both: zero-shot instrument classification
(top-1 over the instruments, the classifier's default prompts) and text→audio hit_rate@5 with the
supplement's test-split captions. A large gap means the model learnt TimGM6mb's timbres, not the instruments.

    python benchmarks/soundfont_transfer.py                      # the built-in model, 20 instruments x 6
    python benchmarks/soundfont_transfer.py --model runs/demo/model
    python benchmarks/soundfont_transfer.py --quick              # CI: 4 instruments x 2

Writes ``benchmarks/results/soundfont_transfer.json`` and a Markdown table on stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from _common import SAMPLE_RATE, base_parser, machine, set_threads, write_result

OPL3_PACKAGE = "opl3-soundfont"
OPL3_SF2 = "usr/share/sounds/sf2/OPL-3_FM_128M.sf2"


def parse_args(argv: list[str] | None = None) -> Any:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", default="audiovec-sounds", help="model folder or built-in name")
    parser.add_argument("--per-instrument", type=int, default=6, help="clips per instrument")
    parser.add_argument(
        "--cache", type=Path, default=None, help="Debian download cache (default: audiovec's)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.instruments = None
    if args.quick:
        args.per_instrument, args.instruments = 2, ["piano", "violin", "trumpet", "acoustic guitar"]
    return args


def opl3_soundfont(cache: Path | None) -> bytes:
    """The OPL-3 FM soundfont, from the Debian package (downloaded once into the corpus's cache)."""
    from audiovec.demo.corpus.build import default_cache_dir
    from audiovec.demo.corpus.debian import download, member_bytes

    cache = cache or default_cache_dir()
    debs = download([OPL3_PACKAGE], cache)
    if OPL3_PACKAGE not in debs:
        raise SystemExit(f"could not download {OPL3_PACKAGE} (apt-get download); see the log above")
    return member_bytes(debs[OPL3_PACKAGE], OPL3_SF2)


def specs(names: list[str], per_instrument: int, seed: int) -> list[dict]:
    """``per_instrument`` clip specs per instrument, registers cycled, fixed by ``seed``."""
    from audiovec.demo.synth import instruments

    rng = np.random.default_rng(seed)
    out = []
    for name in names:
        for i in range(per_instrument):
            register = instruments.REGISTERS[i % len(instruments.REGISTERS)]
            out.append(instruments.make_spec("instrument", (name, register), rng))
    return out


def score(model: Any, waves: list[np.ndarray], clip_specs: list[dict], names: list[str], seed: int) -> dict:
    """Zero-shot instrument accuracy and T2A hit_rate@5 (one test-split caption per clip, its own clip the
    relevant one) on one rendering."""
    from audiovec.apps.classify import ZeroShotClassifier
    from audiovec.demo.synth.captions import make_captions, with_article
    from audiovec.evaluation.metrics import retrieval_metrics

    audio = model.encode_audio(waves, sample_rate=SAMPLE_RATE)
    labels = {
        with_article(n): n for n in names
    }  # "a piano": the classifier's default prompts read as English
    classifier = ZeroShotClassifier(model, list(labels))
    predicted = [labels[p.label] for p in classifier.classify_vectors(audio)]
    truth = [s["instrument"] for s in clip_specs]
    rng = np.random.default_rng(seed + 1)
    captions, owner = [], []
    for i, spec in enumerate(clip_specs):
        attrs = {k: v for k, v in spec.items() if k not in ("kind", "seed")}
        for caption in make_captions("instrument", attrs, "test", rng, k=1):
            captions.append(caption)
            owner.append(i)
    t2a = retrieval_metrics(model.encode_text(captions), audio, [[o] for o in owner], ks=(5,))  # its own clip
    return {
        "instrument_accuracy": round(float(np.mean([p == t for p, t in zip(predicted, truth)])), 4),
        "t2a_hit_rate@5": round(t2a["hit_rate@5"], 4),
        "chance_t2a": round(5 / len(clip_specs), 4),
        "chance_accuracy": round(1 / len(names), 4),
        "per_instrument": {n: round(float(np.mean([p == n for p, t in zip(predicted, truth) if t == n])), 2) for n in names},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from audiovec.demo.synth import instruments
    from audiovec.model import AudioTextEmbedder

    args = parse_args(argv)
    set_threads(args.threads)
    if instruments.renderer() != "tinysoundfont":
        raise SystemExit("tinysoundfont is not installed: pip install --no-deps tinysoundfont")
    names = args.instruments or list(instruments.INSTRUMENTS)
    clip_specs = specs(names, args.per_instrument, args.seed)
    fonts = {
        "TimGM6mb (training's)": instruments.soundfont_path().read_bytes(),
        "OPL-3 FM (unseen)": opl3_soundfont(args.cache),
    }
    model = AudioTextEmbedder.from_pretrained(args.model)
    results = {}
    for font, data in fonts.items():
        waves = [instruments.render(spec, soundfont=data).audio for spec in clip_specs]
        results[font] = score(model, waves, clip_specs, names, args.seed)
        print(f"{font}: {results[font]['instrument_accuracy']:.3f} accuracy, "
              f"{results[font]['t2a_hit_rate@5']:.3f} T2A hit@5", flush=True)  # fmt: skip
    print("| soundfont | instrument accuracy (zero-shot) | T2A hit_rate@5 |\n|---|---|---|")
    for font, r in results.items():
        print(f"| {font} | {r['instrument_accuracy']:.3f} | {r['t2a_hit_rate@5']:.3f} |")
    write_result(
        "soundfont_transfer",
        {"machine": machine(), "model": str(args.model), "instruments": names, "clips": len(clip_specs), "results": results},
        args,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
