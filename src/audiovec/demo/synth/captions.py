"""Caption templates and the held-out rules that keep test wording out of training.

Every clip records plain facts (``Clip.attrs``); captions are written from them by template families.
Each family has *train* templates and disjoint *test* templates, so no test caption string can occur in
training. :func:`holdout` picks attribute combinations (instrument × register, voice × sentence, …) that
only the test split uses, while every single attribute value still occurs in training.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence

import numpy as np

Attrs = dict[str, object]
Template = Callable[[Attrs], str]


def with_article(word: str) -> str:
    """ "a dog", "an owl": the indefinite article by first letter (good enough for caption words)."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


# --- speech ------------------------------------------------------------------------------------------


def _subject(a: Attrs) -> str:
    person, style = a["person"], a["style"]
    if style == "old":
        return "an old man" if person == "man" else "an elderly woman"
    if style == "croaky":
        return f"a {person} with a hoarse voice"
    return f"a {person}"


def _voice(a: Attrs) -> str:
    gender = "male" if a["person"] == "man" else "female"
    adjective = {"old": "elderly ", "croaky": "hoarse ", "whisper": "whispering "}.get(str(a["style"]), "")
    return f"{with_article(adjective + gender)} voice"


def _saying(a: Attrs) -> str:
    return "whispering" if a["style"] == "whisper" else "saying"


def _says(a: Attrs) -> str:
    return "whispers" if a["style"] == "whisper" else "says"


def _adv(a: Attrs) -> str:
    return {"slow": " slowly", "fast": " quickly"}.get(str(a["rate"]), "")


def _rate_adj(a: Attrs) -> str:
    return {"slow": "slow ", "fast": "fast "}.get(str(a["rate"]), "")


def _spoken(a: Attrs) -> str:
    verb = "whispered" if a["style"] == "whisper" else "spoken"
    return verb + _adv(a)


SPEECH_EN_TRAIN: list[Template] = [
    lambda a: f"{_subject(a)} {_saying(a)} '{a['sentence']}'{_adv(a)}",
    lambda a: f"{_subject(a)} with {with_article(str(a['accent']))} accent {_saying(a)} '{a['sentence']}'",
    lambda a: f"{_subject(a)} {_says(a)} '{a['sentence']}'{_adv(a)}",
    lambda a: f"the words '{a['sentence']}' {_spoken(a)} by {_subject(a)}",
]
SPEECH_EN_TEST: list[Template] = [
    lambda a: f"'{a['sentence']}', {_spoken(a)} by {_subject(a)}",
    lambda a: f"{_voice(a)} saying '{a['sentence']}'{_adv(a)}",
    lambda a: f"{a['accent']} English speech: {_subject(a)} {_saying(a)} '{a['sentence']}'",
]
SPEECH_FOREIGN_TRAIN: list[Template] = [
    lambda a: f"{_subject(a)} speaking {a['language']}{_adv(a)}",
    lambda a: f"{_subject(a)} {'whispering' if a['style'] == 'whisper' else 'talking'} in {a['language']}",
    lambda a: f"{_rate_adj(a)}{a['language']} speech by {_subject(a)}",
    lambda a: f"{_subject(a)} reading a sentence in {a['language']}{_adv(a)}",
]
SPEECH_FOREIGN_TEST: list[Template] = [
    lambda a: f"{_voice(a)} talking in {a['language']}{_adv(a)}",
    lambda a: f"{_rate_adj(a)}{a['language']} {_spoken(a).split(' ')[0]} by {_subject(a)}",
    lambda a: f"a sentence in {a['language']}, {_spoken(a)} by {_subject(a)}",
]

# --- instruments -------------------------------------------------------------------------------------

_TEXTURE = {
    "melody": "melody",
    "chords": "chord progression",
    "arpeggio": "arpeggio",
    "note": "sustained note",
    "scale": "rising scale",
}
_PITCHED = {"low": "low-pitched", "mid-range": "medium-pitched", "high": "high-pitched"}
_RANGE = {"low": "low", "mid-range": "middle", "high": "high"}
_DYN_ADV = {"soft": "softly", "loud": "loudly"}


def _tex(a: Attrs) -> str:
    return _TEXTURE[str(a["texture"])]


def _a_inst(a: Attrs) -> str:
    return with_article(str(a["instrument"]))


INSTRUMENT_TRAIN: list[Template] = [
    lambda a: f"{_a_inst(a)} playing a {a['tempo']} {a['register']} {_tex(a)}",
    lambda a: f"{a['dynamics']} {a['articulation']} {_tex(a)} on {_a_inst(a)}",
    lambda a: f"{a['register']} {a['instrument']} {_tex(a)}, played {_DYN_ADV[str(a['dynamics'])]}",
    lambda a: f"{_a_inst(a)} playing {a['articulation']} {a['register']} notes at a {a['tempo']} tempo",
]
INSTRUMENT_TEST: list[Template] = [
    lambda a: f"{with_article(_tex(a))} performed on {_a_inst(a)} in its {_RANGE[str(a['register'])]} range",
    lambda a: (
        f"{_a_inst(a)} heard playing a {_PITCHED[str(a['register'])]} {_tex(a)}, {a['tempo']} and {a['dynamics']}"
    ),
    lambda a: (
        f"music: {with_article(str(a['tempo']))} {a['articulation']} {_tex(a)} from {_a_inst(a)}, {a['register']} register"
    ),
]
DRUMS_TRAIN: list[Template] = [
    lambda a: f"a drum kit playing a {a['tempo']} {a['style']}",
    lambda a: f"{a['tempo']} {a['style']} on drums, played {_DYN_ADV[str(a['dynamics'])]}",
    lambda a: f"drums keeping a {a['tempo']} {a['style']}",
]
DRUMS_TEST: list[Template] = [
    lambda a: f"percussion: a {a['style']} at a {a['tempo']} tempo",
    lambda a: f"{with_article(str(a['tempo']))} {a['style']} performed by a drummer",
]

# --- events, FSDD, scenes ---------------------------------------------------------------------------


def _far(a: Attrs, words: str) -> str:
    return f" {words}" if a.get("far") else ""


EVENT_TRAIN: list[Template] = [
    lambda a: f"{a['np']}{_far(a, 'in the distance')}",
    lambda a: f"the sound of {a['np']}{_far(a, 'in the distance')}",
    lambda a: f"{a['alt']}{_far(a, 'in the distance')}",
]
EVENT_TEST: list[Template] = [
    lambda a: f"{a['np']} can be heard{_far(a, 'far away')}",
    lambda a: f"you can hear {a['alt']}{_far(a, 'far away')}",
    lambda a: f"an audio clip of {a['np']}{_far(a, 'far away')}",
]


def _digits(a: Attrs) -> str:
    words = list(a["digits"])  # type: ignore[call-overload]
    if len(words) == 1:
        return str(words[0])
    return ", ".join(words[:-1]) + " and " + words[-1]


def _number(a: Attrs) -> str:
    return "the number" if len(a["digits"]) == 1 else "the numbers"  # type: ignore[arg-type]


FSDD_TRAIN: list[Template] = [
    lambda a: f"a man with {with_article(str(a['accent']))} accent saying {_digits(a)}",
    lambda a: f"a man saying {_number(a)} {_digits(a)} with {with_article(str(a['accent']))} accent",
    lambda a: f"{with_article(str(a['accent']))}-accented man reading digits: {_digits(a)}",
]
FSDD_TEST: list[Template] = [
    lambda a: f"{_digits(a)}, spoken by a man with {with_article(str(a['accent']))} accent",
    lambda a: (
        f"a male voice with {with_article(str(a['accent']))} accent reading out {_number(a)} {_digits(a)}"
    ),
    lambda a: f"{a['accent']}-accented English: {_digits(a)}",
]
OVERLAY_TRAIN: list[Template] = [
    lambda a: f"{a['fg']} over {a['bg']}",
    lambda a: f"{a['fg']} with {a['bg']} in the background",
    lambda a: f"{a['fg']} and {a['bg']} at the same time",
]
OVERLAY_TEST: list[Template] = [
    lambda a: f"{a['fg']}, accompanied by {a['bg']}",
    lambda a: f"{a['fg']} against a background of {a['bg']}",
]
SEQUENCE_TRAIN: list[Template] = [
    lambda a: f"{a['first']} followed by {a['second']}",
    lambda a: f"{a['first']}, then {a['second']}",
]
SEQUENCE_TEST: list[Template] = [
    lambda a: f"{a['second']} right after {a['first']}",
    lambda a: f"first {a['first']} and afterwards {a['second']}",
]
TEMPLATES: dict[str, tuple[list[Template], list[Template]]] = {
    "speech_en": (SPEECH_EN_TRAIN, SPEECH_EN_TEST),
    "speech_foreign": (SPEECH_FOREIGN_TRAIN, SPEECH_FOREIGN_TEST),
    "instrument": (INSTRUMENT_TRAIN, INSTRUMENT_TEST),
    "drums": (DRUMS_TRAIN, DRUMS_TEST),
    "event": (EVENT_TRAIN, EVENT_TEST),
    "fsdd": (FSDD_TRAIN, FSDD_TEST),
    "overlay": (OVERLAY_TRAIN, OVERLAY_TEST),
    "sequence": (SEQUENCE_TRAIN, SEQUENCE_TEST),
}


def _tidy(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip(" ,")


def make_captions(family: str, attrs: Attrs, split: str, rng: np.random.Generator, k: int = 3) -> list[str]:
    """Up to ``k`` distinct captions for one clip, from the templates of ``split`` ("train" or "test")."""
    train, test = TEMPLATES[family]
    templates = test if split == "test" else train
    order = rng.permutation(len(templates))
    out: list[str] = []
    for i in order:
        text = _tidy(templates[int(i)](attrs))
        if text and text not in out:
            out.append(text)
        if len(out) == k:
            break
    return out


def noun_phrase(family: str, attrs: Attrs) -> str:
    """A short description of a clip, used inside scene captions ("a man talking", "heavy rain")."""
    if family in ("speech_en", "speech_foreign"):
        verb = "whispering" if attrs["style"] == "whisper" else "talking"
        if family == "speech_foreign":
            return f"{_subject(attrs)} {verb} in {attrs['language']}"
        return f"{_subject(attrs)} {verb}"
    if family == "instrument":
        return f"{_a_inst(attrs)} playing {with_article(_tex(attrs))}"
    if family == "drums":
        return f"drums playing a {attrs['style']}"
    return str(attrs["np"])


def holdout(combos: Sequence[tuple[Hashable, ...]], frac: float, rng: np.random.Generator) -> set[tuple]:
    """Choose about ``frac`` of ``combos`` for the test split only.

    A combination is held out only if each of its values still occurs in some training combination, so the
    test split asks for new *pairings* of known attributes, never for an attribute training never saw.
    """
    combos = sorted(set(combos), key=repr)
    target = int(round(frac * len(combos)))
    train_left: list[dict[Hashable, int]] = [{} for _ in range(len(combos[0]))] if combos else []
    for combo in combos:
        for pos, value in enumerate(combo):
            train_left[pos][value] = train_left[pos].get(value, 0) + 1
    held: set[tuple] = set()
    for i in rng.permutation(len(combos)):
        if len(held) >= target:
            break
        combo = combos[int(i)]
        if all(train_left[pos][value] > 1 for pos, value in enumerate(combo)):
            held.add(combo)
            for pos, value in enumerate(combo):
                train_left[pos][value] -= 1
    return held
