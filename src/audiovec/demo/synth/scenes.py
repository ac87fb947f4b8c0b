"""Scenes: one sound laid over a background texture ("speech over heavy rain") or two sounds in a row
("a bell followed by a man talking"), built from the other sources' renderers.
"""

from __future__ import annotations

import numpy as np

from audiovec.demo.synth import events, instruments, speech
from audiovec.demo.synth.captions import noun_phrase
from audiovec.demo.synth.common import Clip, fit_length, mix, normalize, pick, seconds

SPEAKERS = ("speech:man", "speech:woman")
FOREGROUND_EVENTS = [f"event:{k}:{v}" for k, v in events.FOREGROUNDS]
COMPONENTS = [*SPEAKERS, "instrument", *FOREGROUND_EVENTS]
BACKGROUND_KEYS = [f"{k}:{v}" for k, v in events.BACKGROUNDS]


def combos(kind: str) -> list[tuple[str, str]]:
    """Held-out rule pairs: (foreground, background) for overlays, (first, second) for sequences."""
    if kind == "overlay":
        return [(fg, bg) for fg in COMPONENTS for bg in BACKGROUND_KEYS if not fg.endswith(bg)]
    return [(a, b) for a in COMPONENTS for b in COMPONENTS if a != b and not {a, b} <= set(SPEAKERS)]


def _component_spec(key: str, rng: np.random.Generator) -> dict:
    if key.startswith("speech:"):
        person = key.split(":")[1]
        if rng.random() < 0.7:
            combo = (pick(rng, speech.SENTENCES_EN), person)
            return {"type": "speech", "spec": speech.make_spec("speech_en", combo, rng)}
        combo = (pick(rng, sorted(speech.FOREIGN)), person)
        return {"type": "speech", "spec": speech.make_spec("speech_foreign", combo, rng)}
    if key == "instrument":
        combo = (pick(rng, list(instruments.INSTRUMENTS)), pick(rng, instruments.REGISTERS))
        return {"type": "instrument", "spec": instruments.make_spec("instrument", combo, rng)}
    _, name, variant = key.split(":")
    return {"type": "event", "spec": events.make_spec("event", (name, variant), rng)}


def make_spec(kind: str, combo: tuple[str, str], rng: np.random.Generator) -> dict:
    """Component specs plus the mixing choices for one scene."""
    if kind == "overlay":
        name, variant = combo[1].split(":")
        bg = {"type": "event", "spec": events.make_spec("event", (name, variant), rng)}
        return {
            "kind": kind,
            "parts": [_component_spec(combo[0], rng), bg],
            "snr_db": float(rng.uniform(3, 10)),
        }
    parts = [_component_spec(key, rng) for key in combo]
    return {"kind": kind, "parts": parts, "gap": float(rng.uniform(0.2, 0.7))}


def _render_part(part: dict, engine: speech.ESpeak) -> Clip:
    if part["type"] == "speech":
        return speech.render(part["spec"], engine)
    if part["type"] == "instrument":
        return instruments.render(part["spec"])
    return events.render(part["spec"])


def render(spec: dict, engine: speech.ESpeak) -> Clip:
    """Mix or concatenate the component clips."""
    clips = [_render_part(part, engine) for part in spec["parts"]]
    labels = ["scene", spec["kind"]] + [label for c in clips for label in c.labels]
    phrases = [noun_phrase(c.family, c.attrs) for c in clips]
    if spec["kind"] == "overlay":
        fg, bg = clips[0].audio[: seconds(5.0)], clips[1].audio
        lead = np.zeros(seconds(0.5), np.float32)
        fg = np.concatenate([lead, fg, lead])
        wave = mix(fg, bg, spec["snr_db"])
        attrs: dict[str, object] = {"fg": phrases[0], "bg": phrases[1]}
    else:
        gap = np.zeros(seconds(spec["gap"]), np.float32)
        first, second = (c.audio[: seconds(4.0)] for c in clips)
        wave = np.concatenate([normalize(first), gap, normalize(second)])
        attrs = {"first": phrases[0], "second": phrases[1]}
    wave = fit_length(normalize(wave, -1.0))
    return Clip(wave, "scene", spec["kind"], attrs, list(dict.fromkeys(labels)))
