"""Captions for the real-audio corpus, written from what a label table says about a clip.

Training clips get several captions mixing the curators' own captions for the clip's rule, the
vocabulary's phrases for its labels and, for speech, what is said, by whom and in which language. Wording
varies the way people's captions do (AudioCaps: "A dog barks repeatedly", Clotho: "a dog barking in the
distance"); nothing in a caption comes from a file name or names the package.

Held-out clips are described by :func:`heldout_captions`: the curators' captions plus speech captions from a
separate set of sentence frames that training never uses, so the benchmark measures transfer to new wording
as well as to new sources.
"""

from __future__ import annotations

import numpy as np

from audiovec.demo.corpus.labels import Labelled, vocabulary

NOUN = {
    "man": ("a man", "a male voice", "a man's voice"),
    "woman": ("a woman", "a female voice", "a woman's voice"),
    "child": ("a child", "a young child", "a kid"),
    "person": ("a person", "someone", "a voice"),
    "robot": ("a robotic voice", "a computer voice", "a synthetic voice"),
    "men": ("men", "several men", "a group of men"),
    "women": ("women", "several women", "a group of women"),
    "people": ("people", "several people", "a group of people"),
}
# frames for speech with known words ({who} {words} {lang}); lang is "" or " in <Language>"
SAYS_TRAIN = (
    "{who} saying '{words}'{lang}",
    "{who} says '{words}'{lang}",
    "{who} pronouncing '{words}'{lang}",
    "'{words}' spoken by {who}{lang}",
    "{who} speaks the words '{words}'{lang}",
)
SAYS_HELDOUT = (
    "{who} clearly saying '{words}'{lang}",
    "'{words}' pronounced by {who}{lang}",
    "{who} utters '{words}'{lang}",
)
SPEAKING_TRAIN = ("{who} speaking {language}", "{who} talking in {language}", "{language} speech by {who}")
HELDOUT_CAPTIONS = 3
SPEAKING_HELDOUT = ("a short utterance in {language} by {who}", "{who} says something in {language}")


def _cased(text: str, rng: np.random.Generator) -> str:
    """People's captions differ in capitals and final stops; the model should not care."""
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.3:
        text += "."
    return text


def _who(labelled: Labelled, rng: np.random.Generator) -> str:
    nouns = NOUN.get(labelled.speaker or "person", NOUN["person"])
    return nouns[int(rng.integers(len(nouns)))]


def _speech_captions(labelled: Labelled, rng: np.random.Generator, heldout: bool) -> list[str]:
    language = labelled.language
    out: list[str] = []
    if labelled.says:
        frames = SAYS_HELDOUT if heldout else SAYS_TRAIN
        for frame in rng.permutation(len(frames))[:2]:
            lang = f" in {language}" if language and (heldout or rng.random() < 0.8) else ""
            out.append(frames[int(frame)].format(who=_who(labelled, rng), words=labelled.says, lang=lang))
    if language:
        frames = SPEAKING_HELDOUT if heldout else SPEAKING_TRAIN
        out.append(frames[int(rng.integers(len(frames)))].format(who=_who(labelled, rng), language=language))
    return out


def train_captions(labelled: Labelled, rng: np.random.Generator, n: int = 4) -> list[str]:
    """``n`` distinct captions for a training clip."""
    vocab = vocabulary()
    pool: list[str] = list(labelled.captions)
    if vocab.category(labelled.labels[0]) == "speech" or labelled.says:
        pool += _speech_captions(labelled, rng, heldout=False)
    for label in labelled.labels[:2]:
        phrases = vocab.phrases(label)
        pool.append(phrases[int(rng.integers(len(phrases)))])
    seen: set[str] = set()
    unique = [c for c in pool if not (c.lower() in seen or seen.add(c.lower()))]  # type: ignore[func-returns-value]
    order = rng.permutation(len(unique))
    # curated and speech captions first (they are the specific ones), then the label phrases
    chosen = [unique[int(i)] for i in order][: max(n, 1)]
    return [_cased(c, rng) for c in chosen]


def heldout_captions(labelled: Labelled, rng: np.random.Generator, n: int = HELDOUT_CAPTIONS) -> list[str]:
    """At most ``n`` captions for a held-out clip: the curators' captions and held-out speech frames, never
    the vocabulary phrases or training frames that training captions are made of. Speech clips get one
    caption with the words said (when known) and the rest from the curators. Every clip gets about the same
    number of queries, so no source dominates the benchmark by caption count."""
    curated = [labelled.captions[int(i)] for i in rng.permutation(len(labelled.captions))]
    spoken = []
    if vocabulary().category(labelled.labels[0]) == "speech" or labelled.says:
        spoken = _speech_captions(labelled, rng, heldout=True)[:1]
    out = spoken + curated
    seen: set[str] = set()
    unique = [c for c in out if not (c.lower() in seen or seen.add(c.lower()))]  # type: ignore[func-returns-value]
    return unique[:n]
