"""Instrument clips: General MIDI presets of the TimGM6mb soundfont (bundled by ``pretty_midi``).

Notes are rendered offline with ``tinysoundfont``; when that package is missing a small additive synth
(harmonic partials, per-family envelope; see :func:`_additive`) stands in, so the corpus still builds.
Varies instrument, register, tempo, dynamics, articulation and texture (melody, chords, arpeggio, scale,
sustained note); drum kit clips vary style and tempo.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from audiovec.demo.synth.common import SAMPLE_RATE, Clip, fit_length, normalize, pick, seconds

# name -> (GM program, lowest MIDI note, highest MIDI note, can play chords, envelope family)
INSTRUMENTS: dict[str, tuple[int, int, int, bool, str]] = {
    "piano": (0, 33, 96, True, "struck"),
    "harpsichord": (6, 41, 89, True, "plucked"),
    "glockenspiel": (9, 72, 108, False, "mallet"),
    "marimba": (12, 45, 96, False, "mallet"),
    "church organ": (19, 36, 96, True, "sustained"),
    "accordion": (21, 48, 84, True, "sustained"),
    "harmonica": (22, 60, 91, False, "sustained"),
    "acoustic guitar": (24, 40, 84, True, "plucked"),
    "electric guitar": (30, 40, 84, True, "sustained"),
    "bass guitar": (33, 28, 60, False, "plucked"),
    "violin": (40, 55, 100, False, "sustained"),
    "cello": (42, 36, 76, False, "sustained"),
    "harp": (46, 36, 96, True, "plucked"),
    "choir": (52, 48, 81, True, "sustained"),
    "trumpet": (56, 55, 82, False, "sustained"),
    "trombone": (57, 40, 72, False, "sustained"),
    "tuba": (58, 28, 58, False, "sustained"),
    "saxophone": (65, 49, 81, False, "sustained"),
    "clarinet": (71, 50, 91, False, "sustained"),
    "flute": (73, 60, 96, False, "sustained"),
    "sitar": (104, 48, 84, False, "plucked"),
    "banjo": (105, 48, 84, True, "plucked"),
    "bagpipe": (109, 55, 79, False, "sustained"),
    "steel drum": (114, 55, 88, False, "mallet"),
}
REGISTERS = ("low", "mid-range", "high")
TEMPI = {"slow": (60, 76), "steady": (92, 112), "fast": (140, 176)}
DYNAMICS = {"soft": ((35, 55), -10.0), "loud": ((100, 127), 0.0)}
TEXTURES = ("melody", "chords", "arpeggio", "scale", "note")
DRUM_STYLES = ("rock beat", "disco beat", "march rhythm", "tom-tom pattern")
MAJOR, MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)
KICK, SNARE, CLAP, HAT, OPEN_HAT, CRASH, TOMS = 36, 38, 39, 42, 46, 49, (45, 47, 50)

Note = tuple[float, float, int, int, int]  # start s, duration s, channel, MIDI key, velocity


def combos(kind: str) -> list[tuple[str, str]]:
    """Held-out rule pairs: (instrument, register) or, for drums, (style, tempo)."""
    if kind == "drums":
        return [(s, t) for s in DRUM_STYLES for t in TEMPI]
    return [(i, r) for i in INSTRUMENTS for r in REGISTERS]


def make_spec(kind: str, combo: tuple[str, str], rng: np.random.Generator) -> dict:
    """All random choices for one instrument (or drum kit) clip."""
    dyn = pick(rng, list(DYNAMICS))
    if kind == "drums":
        style, tempo = combo
        return {
            "kind": kind,
            "style": style,
            "tempo": tempo,
            "dynamics": dyn,
            "seed": int(rng.integers(2**31)),
        }
    name, register = combo
    poly = INSTRUMENTS[name][3]
    textures = [t for t in TEXTURES if poly or t != "chords"]
    weights = np.array([{"melody": 3.0, "chords": 2.0}.get(t, 1.0) for t in textures])
    texture = textures[int(rng.choice(len(textures), p=weights / weights.sum()))]
    articulation = "legato" if texture == "note" else pick(rng, ["legato", "staccato"])
    tempo = "slow" if texture == "note" else pick(rng, list(TEMPI))  # a held note has no pace of its own
    return {
        "kind": kind,
        "instrument": name,
        "register": register,
        "tempo": tempo,
        "dynamics": dyn,
        "articulation": articulation,
        "texture": texture,
        "seed": int(rng.integers(2**31)),
    }


def _register_range(name: str, register: str) -> tuple[int, int]:
    _, lo, hi, _, _ = INSTRUMENTS[name]
    third = (hi - lo) / 3.0
    i = REGISTERS.index(register)
    return int(lo + i * third), int(lo + (i + 1) * third)


def _scale_notes(root: int, mode: tuple[int, ...], lo: int, hi: int) -> list[int]:
    return [n for n in range(lo - 12, hi + 13) if (n - root) % 12 in mode and lo <= n <= hi]


def _pitched_notes(spec: dict, rng: np.random.Generator) -> list[Note]:
    lo, hi = _register_range(spec["instrument"], spec["register"])
    beat = 60.0 / float(rng.integers(*TEMPI[spec["tempo"]]))
    vel_lo, vel_hi = DYNAMICS[spec["dynamics"]][0]
    keep = 0.92 if spec["articulation"] == "legato" else 0.35
    root = int(rng.integers(0, 12))
    pool = _scale_notes(root, MAJOR if rng.random() < 0.6 else MINOR, lo, hi + 7)
    total = float(rng.uniform(3.0, 6.0))
    notes: list[Note] = []

    def add(t: float, length: float, keys: list[int]) -> None:
        for k in keys:
            notes.append((t, length * keep, 0, int(k), int(rng.integers(vel_lo, vel_hi + 1))))

    t, texture = 0.0, spec["texture"]
    if texture == "note":
        add(0.0, total / keep, [pick(rng, [n for n in pool if n <= hi] or pool)])
    elif texture == "scale":
        start = int(rng.integers(0, max(1, len(pool) - 8)))
        step = beat / 2 if spec["tempo"] != "slow" else beat
        for k in (pool[start : start + 8] * 2)[: max(4, int(total / step))]:
            add(t, step, [k])
            t += step
    elif texture == "chords":
        while t < total:
            i = int(rng.integers(0, max(1, len(pool) - 4)))
            add(t, 2 * beat, pool[i : i + 5 : 2])
            t += 2 * beat
    elif texture == "arpeggio":
        while t < total:
            i = int(rng.integers(0, max(1, len(pool) - 4)))
            for k in pool[i : i + 5 : 2] + pool[i + 2 : i + 3]:
                add(t, beat / 2, [k])
                t += beat / 2
    else:  # melody: a random walk on the scale with mixed note lengths
        i = int(rng.integers(0, len(pool)))
        lengths = [1.0, 2.0, 1.0] if spec["tempo"] == "slow" else [0.5, 0.5, 1.0, 1.0, 2.0]
        while t < total:
            i = int(np.clip(i + rng.integers(-2, 3), 0, len(pool) - 1))
            length = pick(rng, lengths) * beat
            add(t, length, [pool[i]])
            t += length
    return notes


def _drum_notes(spec: dict, rng: np.random.Generator) -> list[Note]:
    beat = 60.0 / float(rng.integers(*TEMPI[spec["tempo"]]))
    vel_lo, vel_hi = DYNAMICS[spec["dynamics"]][0]
    bars, notes, style = int(np.ceil(float(rng.uniform(3.0, 6.0)) / (4 * beat))), [], spec["style"]

    def hit(t: float, key: int, accent: float = 1.0) -> None:
        velocity = int(min(127, rng.integers(vel_lo, vel_hi + 1) * accent))
        notes.append((t, 0.1, 9, key, velocity))

    for bar in range(bars):
        t0 = bar * 4 * beat
        for eighth in range(8):
            t, on_beat = t0 + eighth * beat / 2, eighth % 2 == 0
            if style == "rock beat":
                hit(t, HAT, 0.8)
                if eighth in (0, 5):
                    hit(t, KICK)
                if eighth in (2, 6):
                    hit(t, SNARE)
            elif style == "disco beat":
                if on_beat:
                    hit(t, KICK)
                else:
                    hit(t, OPEN_HAT, 0.8)
                if eighth in (2, 6):
                    hit(t, CLAP)
            elif style == "march rhythm":
                hit(t, SNARE, 1.0 if on_beat else 0.6)
                hit(t + beat / 4, SNARE, 0.5)
                if eighth in (0, 4):
                    hit(t, KICK)
            else:
                hit(t, TOMS[(eighth // 2 + bar) % 3] if eighth != 7 else TOMS[0])
                if eighth == 0:
                    hit(t, KICK)
        if bar == 0 and rng.random() < 0.5:
            hit(0.0, CRASH, 0.9)
    return notes


@functools.lru_cache(maxsize=1)
def soundfont_path() -> Path:
    """TimGM6mb.sf2 as shipped inside the ``pretty_midi`` package."""
    import pretty_midi

    return Path(pretty_midi.__file__).with_name("TimGM6mb.sf2")


@functools.lru_cache(maxsize=1)
def _soundfont_bytes() -> bytes:
    return soundfont_path().read_bytes()


def renderer() -> str:
    """ "tinysoundfont" when that renderer imports, else "additive" (the fallback synth)."""
    try:
        import tinysoundfont  # noqa: F401
    except ImportError:
        return "additive"
    return "tinysoundfont"


def _render_soundfont(notes: list[Note], program: int, total: float, soundfont: bytes) -> np.ndarray:
    import tinysoundfont

    synth = tinysoundfont.Synth(
        samplerate=SAMPLE_RATE
    )  # a fresh synth per clip: no state leaks between clips
    sfid = synth.sfload(soundfont)
    synth.program_select(0, sfid, 0, program)
    synth.program_select(9, sfid, 128, 0, is_drums=True)
    events = sorted(
        [(start, 1, ch, key, vel) for start, _, ch, key, vel in notes]
        + [(start + length, 0, ch, key, 0) for start, length, ch, key, _ in notes]
    )
    out, now = [], 0
    for when, is_on, ch, key, vel in [*events, (total, -1, 0, 0, 0)]:
        frames = seconds(when) - now
        if frames > 0:
            out.append(np.frombuffer(synth.generate(frames), dtype=np.float32).reshape(-1, 2).mean(axis=1))
            now += frames
        if is_on == 1:
            synth.noteon(ch, key, vel)
        elif is_on == 0:
            synth.noteoff(ch, key)
    return np.concatenate(out).astype(np.float32)


def _additive(notes: list[Note], family: str, total: float, seed: int) -> np.ndarray:
    """Fallback synth: decaying harmonic partials per note; drums as filtered noise and sine thumps."""
    rng = np.random.default_rng(seed)
    out = np.zeros(seconds(total), np.float32)
    for start, length, ch, key, vel in notes:
        tail = 0.05 if family == "sustained" else 1.0
        n = min(seconds(length + tail), len(out) - seconds(start))
        if n <= 0:
            continue
        t = np.arange(n) / SAMPLE_RATE
        if ch == 9:
            tone = (
                rng.standard_normal(n) * np.exp(-t * 25)
                if key != KICK
                else np.sin(2 * np.pi * 55 * t) * np.exp(-t * 12)
            )
        else:
            f0 = 440.0 * 2 ** ((key - 69) / 12)
            decay = {"struck": 3.0, "plucked": 5.0, "mallet": 9.0}.get(family, 0.0)
            tone = sum(np.sin(2 * np.pi * f0 * h * t) / h**1.5 for h in range(1, 8) if f0 * h < 7000)
            env = np.exp(-t * decay) * np.minimum(1.0, t / 0.01)
            if family == "sustained":
                env *= np.minimum(1.0, t / 0.06) * (t < length)
            tone = tone * env
        s = seconds(start)
        out[s : s + n] += (vel / 127.0) * tone.astype(np.float32)
    return out


def render(spec: dict, soundfont: bytes | None = None) -> Clip:
    """Render a spec from :func:`make_spec` with ``soundfont`` (the bytes of a General MIDI ``.sf2``;
    default TimGM6mb)."""
    rng = np.random.default_rng(spec["seed"])
    if spec["kind"] == "drums":
        notes, program, family = _drum_notes(spec, rng), 0, "drums"
    else:
        notes = _pitched_notes(spec, rng)
        program, family = INSTRUMENTS[spec["instrument"]][0], INSTRUMENTS[spec["instrument"]][4]
    end = max(start + length for start, length, *_ in notes)
    total = min(end + (0.3 if family == "sustained" else 0.8), 8.0)
    if renderer() == "tinysoundfont":
        wave = _render_soundfont(notes, program, total, soundfont or _soundfont_bytes())
    else:
        wave = _additive(notes, family, total, spec["seed"])
    wave = fit_length(normalize(wave, DYNAMICS[spec["dynamics"]][1]), max_s=8.0)
    attrs = {k: v for k, v in spec.items() if k not in ("kind", "seed")}
    if spec["kind"] == "drums":
        labels = ["music", "drums", spec["style"], f"tempo:{spec['tempo']}", spec["dynamics"]]
    else:
        labels = ["music", spec["instrument"], f"register:{spec['register']}", spec["texture"]]
        labels += [f"tempo:{spec['tempo']}", spec["dynamics"], spec["articulation"]]
    return Clip(wave, "instrument", spec["kind"], attrs, labels)
