"""Everyday sound events and textures synthesised with numpy/scipy.

Each kind (siren, rain, knock, …) has variants ("wailing" / "yelping", "light" / "heavy", …) that sound
different and are captioned differently; some clips are rendered as if far away (low-passed, reverberant,
quieter). The recipes are simple physical caricatures: swept tones, filtered noise, decaying resonances.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import signal

from audiovec.demo.synth.common import SAMPLE_RATE, Clip, fit_length, normalize, seconds
from audiovec.demo.synth.dsp import (
    band as _band,
)
from audiovec.demo.synth.dsp import (
    burst as _burst,
)
from audiovec.demo.synth.dsp import (
    decay as _decay,
)
from audiovec.demo.synth.dsp import (
    gates as _gates,
)
from audiovec.demo.synth.dsp import (
    low as _low,
)
from audiovec.demo.synth.dsp import (
    moving_band as _moving_band,
)
from audiovec.demo.synth.dsp import (
    place as _place,
)
from audiovec.demo.synth.dsp import (  # noqa: F401
    time_axis as _t,
)
from audiovec.demo.synth.dsp import (
    tone as _tone,
)

SR = SAMPLE_RATE
Gen = Callable[[np.random.Generator, str, float], np.ndarray]


# --- generators: (rng, variant, duration) -> waveform ---------------------------------------------------


def siren(rng, variant, d):
    t = _t(d)
    lo, hi = rng.uniform(550, 750), rng.uniform(1300, 1700)
    if variant == "wailing":
        lfo = 0.5 - 0.5 * np.cos(2 * np.pi * rng.uniform(0.15, 0.3) * t)
    else:
        lfo = (t * rng.uniform(3.0, 5.0)) % 1.0
    return _tone(lo + (hi - lo) * lfo, d, (1.0, 0.4, 0.2))


def alarm(rng, variant, d):
    t = _t(d)
    if variant == "two-tone":
        a, b, period = rng.uniform(420, 480), rng.uniform(580, 660), rng.uniform(0.8, 1.2)
        freq = np.where((t % period) < period / 2, a, b)
        return _tone(freq, d, (1.0, 0.0, 0.3, 0.0, 0.15))
    if variant == "beeping":
        f, out = rng.uniform(1800, 2600), np.zeros(len(t))
        cycle = rng.uniform(0.9, 1.3)
        for k in range(int(d / cycle) + 1):
            for j in range(4):
                _place(out, _tone(f, 0.07) * np.hanning(seconds(0.07)), k * cycle + j * 0.13)
        return out
    f = rng.uniform(90, 150)
    return np.sign(_tone(f, d)) * _gates(d, rng.uniform(0.6, 0.9), rng.uniform(0.3, 0.5))


def beeps(rng, variant, d):
    f, out = rng.uniform(700, 2500), np.zeros(seconds(d))
    length = rng.uniform(0.08, 0.25)
    count = 1 if variant == "single" else int(rng.integers(3, 8))
    gap = rng.uniform(0.15, 0.35)
    for k in range(count):
        _place(out, _tone(f, length) * np.hanning(seconds(length)) ** 0.3, 0.2 + k * (length + gap))
    return out


def typing(rng, variant, d):
    out, t = np.zeros(seconds(d)), 0.1
    while t < d - 0.1:
        _place(out, _burst(rng, 0.03, 1500, 6000, 250) + 0.5 * _burst(rng, 0.03, 200, 800, 150), t)
        t += rng.uniform(0.08, 0.2) if variant == "fast" else rng.uniform(0.3, 0.8)
    return out


def ticking(rng, variant, d):
    out = np.zeros(seconds(d))
    period = rng.uniform(0.9, 1.1) if variant == "tick-tock" else rng.uniform(0.18, 0.25)
    for k in range(int(d / period)):
        high = variant == "fast" or k % 2 == 0
        _place(out, _burst(rng, 0.02, 3000 if high else 1800, 7000 if high else 4500, 300), 0.05 + k * period)
    return out


def engine(rng, variant, d):
    t = _t(d)
    f = np.full(len(t), rng.uniform(28, 40))
    if variant == "revving":
        f = f * (1 + 1.8 * np.sin(np.pi * np.clip(t / d * rng.uniform(1.0, 2.0), 0, 1)) ** 2)
    body = _tone(f, d, (1.0, 0.7, 0.5, 0.35, 0.25, 0.15))
    rumble = _low(rng.standard_normal(len(t)), 400) * (1 + 0.8 * np.sin(2 * np.pi * np.cumsum(f) / SR))
    return body + 0.8 * rumble / (np.std(rumble) + 1e-9) * np.std(body)


def wind(rng, variant, d):
    t = _t(d)
    if variant == "howling":
        centre = rng.uniform(350, 700) * (1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.15, 0.4) * t[::160]))
        out = _moving_band(rng, d, centre, 60.0, smooth=0.3)
    else:
        out = _low(rng.standard_normal(len(t)), rng.uniform(500, 900))
    return out * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 6)))


def rain(rng, variant, d):
    n = seconds(d)
    heavy = variant == "heavy"
    bed = _band(rng.standard_normal(n), 800, 7000) * (0.6 if heavy else 0.08)
    drops = np.zeros(n)
    rate = rng.uniform(400, 900) if heavy else rng.uniform(15, 40)
    for at in rng.uniform(0, d, int(rate * d)):
        _place(drops, _decay(rng.uniform(1500, 5000), 0.015, 300), at, rng.uniform(0.2, 1.0))
    return bed + drops * (0.3 if heavy else 1.0)


def knock(rng, variant, d):
    out, t = np.zeros(seconds(d)), 0.2
    gap = rng.uniform(0.5, 0.8) if variant == "slow" else rng.uniform(0.12, 0.18)
    for _ in range(int(rng.integers(3, 6)) if variant == "slow" else int(rng.integers(5, 10))):
        _place(out, _burst(rng, 0.12, 80, 600, 40) + 0.6 * _decay(rng.uniform(180, 260), 0.12, 35), t)
        t += gap * rng.uniform(0.9, 1.1)
    return out


def footsteps(rng, variant, d):
    out, t = np.zeros(seconds(d)), 0.1
    step = rng.uniform(0.5, 0.65) if variant == "walking" else rng.uniform(0.26, 0.33)
    while t < d - 0.2:
        _place(out, _burst(rng, 0.08, 60, 1500, 45), t)
        _place(out, _burst(rng, 0.05, 300, 3000, 80), t + 0.04, 0.5)
        t += step * rng.uniform(0.95, 1.05)
    return out


def bell(rng, variant, d):
    out = np.zeros(seconds(d))
    if variant == "church":
        f0, ratios, rate, every = (
            rng.uniform(180, 320),
            (0.5, 1.0, 1.19, 1.5, 2.0, 2.51, 3.0),
            0.8,
            rng.uniform(1.6, 2.4),
        )
    else:
        f0, ratios, rate, every = rng.uniform(1500, 2600), (1.0, 2.76, 5.4), 6.0, rng.uniform(0.15, 0.3)
    strike = sum(_decay(f0 * r, min(d, 4.0), rate * (1 + i * 0.3)) / (i + 1) for i, r in enumerate(ratios))
    for k in range(int(d / every)):
        _place(out, strike, 0.05 + k * every)
    return out


def telephone(rng, variant, d):
    t = _t(d)
    if variant == "old":
        ring = np.sin(2 * np.pi * rng.uniform(18, 22) * t) > 0
        tone = _tone(rng.uniform(900, 1100), d, (1.0, 0.5, 0.3)) * (0.3 + 0.7 * ring)
        return tone * _gates(d, 1.8, 1.0, 0.1)
    notes = rng.uniform(600, 1600, 6)
    freq = notes[((t * rng.uniform(6, 9)) % 6).astype(int)]
    return np.sign(_tone(freq, d)) * 0.5 * _gates(d, 1.4, 0.6, 0.1)


def static(rng, variant, d):
    n = seconds(d)
    hiss = _band(rng.standard_normal(n), 300, 7500) * 0.5
    crackle = np.zeros(n)
    for at in rng.uniform(0, d, int(d * 40)):
        _place(crackle, _burst(rng, 0.01, 1000, 7000, 600), at, rng.uniform(0.5, 2.0))
    return hiss + crackle


def heartbeat(rng, variant, d):
    out, beat = (
        np.zeros(seconds(d)),
        60.0 / (rng.uniform(55, 70) if variant == "slow" else rng.uniform(120, 150)),
    )
    for k in range(int(d / beat)):
        _place(out, _decay(rng.uniform(45, 60), 0.15, 25), 0.1 + k * beat)
        _place(out, _decay(rng.uniform(55, 75), 0.12, 30), 0.1 + k * beat + beat * 0.3, 0.7)
    return out


def waves(rng, variant, d):
    t = _t(d)
    swell = np.clip(np.sin(2 * np.pi * t / rng.uniform(4, 7) + rng.uniform(0, 6)), 0, None) ** 2
    return _low(rng.standard_normal(len(t)), 2500) * (0.1 + swell)


def thunder(rng, variant, d):
    t = _t(d)
    crack = _burst(rng, 0.4, 200, 4000, 8) * 0.8
    rumble = (
        _low(rng.standard_normal(len(t)), 150, 4)
        * np.exp(-t / rng.uniform(1.5, 3.0))
        * np.minimum(1, t / 0.3)
    )
    out = rumble / (np.std(rumble) + 1e-9)
    _place(out, crack / (np.std(crack) + 1e-9), rng.uniform(0.05, 0.4))
    return out


def bouncing(rng, variant, d):
    out, t, gap, gain = np.zeros(seconds(d)), 0.1, rng.uniform(0.45, 0.7), 1.0
    while t < d and gap > 0.02:
        _place(out, _decay(rng.uniform(250, 400), 0.05, 60), t, gain)
        _place(out, _burst(rng, 0.03, 500, 3000, 150), t, 0.3 * gain)
        t, gap, gain = t + gap, gap * 0.8, gain * 0.85
    return out


def dripping(rng, variant, d):
    out, period = np.zeros(seconds(d)), rng.uniform(0.4, 0.9)
    for k in range(int(d / period)):
        f0 = rng.uniform(600, 1200)
        drop = _tone(np.linspace(f0, f0 * 2.2, seconds(0.06)), 0.06) * np.exp(-_t(0.06) * 50)
        _place(out, drop, 0.1 + k * period * rng.uniform(0.95, 1.05))
    return out


def buzzing(rng, variant, d):
    t = _t(d)
    if variant == "insect":
        f = rng.uniform(170, 240) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
        saw = (np.cumsum(f) / SR) % 1.0 - 0.5
        return saw * (0.5 + 0.5 * np.abs(np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t)))
    mains = rng.choice([50.0, 60.0])
    return _tone(mains, d, (1.0, 0.6, 0.8, 0.3, 0.4, 0.2, 0.2)) + 0.05 * rng.standard_normal(len(t))


def whistle(rng, variant, d):
    t = _t(d)
    if variant == "referee":
        trill = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(25, 40) * t)
        gates = _gates(d, rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.6), 0.1)
        return _tone(rng.uniform(2600, 3400), d) * trill * gates
    rise = rng.uniform(1300, 1800) * (1 + 0.25 * np.minimum(1, t / d * 2))
    return (_tone(rise, d) + 0.2 * _band(rng.standard_normal(len(t)), 1000, 4000)) * np.minimum(1, t / 0.8)


def morse(rng, variant, d):
    f, unit = rng.uniform(550, 850), rng.uniform(0.06, 0.1)
    out, t = np.zeros(seconds(d)), 0.1
    while t < d - 0.4:
        length = unit * (3 if rng.random() < 0.4 else 1)
        _place(out, _tone(f, length) * np.hanning(seconds(length)) ** 0.2, t)
        t += length + unit * (3 if rng.random() < 0.25 else 1)
    return out


def applause(rng, variant, d):
    out = np.zeros(seconds(d))
    people = int(rng.integers(3, 6)) if variant == "small" else int(rng.integers(40, 80))
    for _ in range(people):
        rate, t = rng.uniform(3, 6), rng.uniform(0, 0.3)
        while t < d - 0.3:
            _place(out, _burst(rng, 0.03, 800, 5000, 180), t, rng.uniform(0.5, 1.0))
            t += 1.0 / rate * rng.uniform(0.9, 1.1)
    return out


def fire(rng, variant, d):
    n = seconds(d)
    out = _low(rng.standard_normal(n), 300) * 0.4
    for at in rng.uniform(0, d, int(d * rng.uniform(8, 20))):
        _place(out, _burst(rng, 0.02, 1500, 7000, 300), at, rng.uniform(0.5, 2.5))
    return out


# kind -> (generator, {variant: (noun phrase, alternative phrase)}, can be far away)
EVENTS: dict[str, tuple[Gen, dict[str, tuple[str, str]], bool]] = {
    "siren": (
        siren,
        {
            "wailing": ("a wailing siren", "an emergency siren wailing up and down"),
            "yelping": ("a yelping police siren", "a police siren yelping rapidly"),
        },
        True,
    ),
    "alarm": (
        alarm,
        {
            "two-tone": ("a two-tone alarm", "an alarm alternating between two tones"),
            "beeping": ("a beeping alarm clock", "an alarm clock beeping"),
            "buzzer": ("a harsh buzzer", "an electric buzzer going off"),
        },
        True,
    ),
    "beep": (
        beeps,
        {
            "single": ("a single electronic beep", "one short beep"),
            "series": ("a series of short beeps", "several quick electronic beeps"),
        },
        False,
    ),
    "typing": (
        typing,
        {
            "slow": ("slow typing on a keyboard", "keys being pressed one at a time"),
            "fast": ("fast typing on a keyboard", "rapid keyboard clicking"),
        },
        False,
    ),
    "ticking": (
        ticking,
        {
            "tick-tock": ("a clock ticking", "the tick-tock of a wall clock"),
            "fast": ("a timer ticking quickly", "fast mechanical ticking"),
        },
        False,
    ),
    "engine": (
        engine,
        {
            "idling": ("an idling car engine", "a car engine running at idle"),
            "revving": ("an engine revving", "a car engine revving up and down"),
        },
        True,
    ),
    "wind": (
        wind,
        {
            "gentle": ("a gentle breeze", "soft wind blowing"),
            "howling": ("a howling wind", "strong wind howling"),
        },
        False,
    ),
    "rain": (
        rain,
        {"light": ("light rain", "a light drizzle falling"), "heavy": ("heavy rain", "a heavy downpour")},
        False,
    ),
    "knock": (
        knock,
        {
            "slow": ("slow knocking on a door", "someone knocking slowly on a wooden door"),
            "rapid": ("rapid knocking on a door", "someone banging quickly on a door"),
        },
        True,
    ),
    "footsteps": (
        footsteps,
        {
            "walking": ("footsteps of someone walking", "a person walking"),
            "running": ("footsteps of someone running", "a person running"),
        },
        True,
    ),
    "bell": (
        bell,
        {
            "church": ("a church bell tolling", "a large bell ringing slowly"),
            "small": ("a small bell jingling", "a little hand bell ringing quickly"),
        },
        True,
    ),
    "telephone": (
        telephone,
        {
            "old": ("an old telephone ringing", "the bell of a landline phone ringing"),
            "digital": ("an electronic ringtone", "a mobile phone ringing"),
        },
        False,
    ),
    "static": (static, {"radio": ("radio static", "crackling radio noise")}, False),
    "heartbeat": (
        heartbeat,
        {
            "slow": ("a slow heartbeat", "a heart beating slowly"),
            "fast": ("a fast heartbeat", "a racing heart"),
        },
        False,
    ),
    "waves": (waves, {"ocean": ("ocean waves on a beach", "waves rolling onto the shore")}, True),
    "thunder": (thunder, {"storm": ("a clap of thunder", "thunder rumbling")}, True),
    "bouncing": (bouncing, {"ball": ("a ball bouncing to a stop", "a bouncing ball")}, False),
    "dripping": (dripping, {"tap": ("water dripping", "a dripping tap")}, False),
    "buzzing": (
        buzzing,
        {
            "insect": ("a fly buzzing", "an insect buzzing around"),
            "electric": ("an electrical hum", "mains hum from electronics"),
        },
        False,
    ),
    "whistle": (
        whistle,
        {
            "referee": ("a referee's whistle", "sharp whistle blasts"),
            "kettle": ("a whistling kettle", "a kettle whistling on the stove"),
        },
        True,
    ),
    "morse": (morse, {"code": ("morse code beeping", "a message tapped out in morse code")}, False),
    "applause": (
        applause,
        {
            "small": ("a few people clapping", "light applause from a small group"),
            "large": ("a large crowd applauding", "loud applause from a big audience"),
        },
        True,
    ),
    "fire": (fire, {"crackling": ("a crackling fire", "wood burning in a fireplace")}, False),
}
BACKGROUNDS = [("rain", "light"), ("rain", "heavy"), ("wind", "gentle"), ("wind", "howling"),
               ("engine", "idling"), ("waves", "ocean"), ("fire", "crackling"), ("static", "radio"),
               ("applause", "large")]  # fmt: skip
FOREGROUNDS = [("siren", "wailing"), ("bell", "church"), ("bell", "small"), ("knock", "slow"),
               ("telephone", "old"), ("alarm", "beeping"), ("whistle", "referee"), ("thunder", "storm"),
               ("footsteps", "walking"), ("beep", "series"), ("typing", "fast")]  # fmt: skip


def combos(kind: str = "event") -> list[tuple[str, str, bool]]:
    """Held-out rule triples: (kind, variant, far away), far only where it makes sense."""
    return [
        (k, v, far)
        for k, (_, variants, can_be_far) in EVENTS.items()
        for v in variants
        for far in ((False, True) if can_be_far else (False,))
    ]


def make_spec(kind: str, combo: tuple, rng: np.random.Generator) -> dict:
    """All random choices for one event clip; ``combo`` is (kind, variant) or (kind, variant, far)."""
    name, variant = combo[0], combo[1]
    far = bool(combo[2]) if len(combo) > 2 else False
    duration = float(
        rng.uniform(1.0, 1.5) if (name, variant) == ("beep", "single") else rng.uniform(2.5, 6.5)
    )
    return {"kind": name, "variant": variant, "far": bool(far), "duration": duration,
            "gain_db": float(rng.uniform(-6, 0)), "seed": int(rng.integers(2**31))}  # fmt: skip


def _far_away(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    tail = _t(0.8)
    impulse = rng.standard_normal(len(tail)) * np.exp(-tail * 6)
    impulse[0] = 4.0
    wet = signal.fftconvolve(_low(x, 1500, 4), impulse)[: len(x)]
    return wet


def render(spec: dict) -> Clip:
    """Render a spec from :func:`make_spec`."""
    rng = np.random.default_rng(spec["seed"])
    gen, variants, _ = EVENTS[spec["kind"]]
    wave = np.asarray(gen(rng, spec["variant"], spec["duration"]), dtype=np.float64)
    gain = spec["gain_db"]
    if spec["far"]:
        wave, gain = _far_away(wave, rng), gain - 8.0
    wave = fit_length(normalize(wave.astype(np.float32), gain), max_s=8.0)
    np_, alt = variants[spec["variant"]]
    attrs = {"np": np_, "alt": alt, "far": spec["far"], "kind": spec["kind"], "variant": spec["variant"]}
    labels = ["event", spec["kind"], f"{spec['kind']}:{spec['variant']}"] + (
        ["distant"] if spec["far"] else []
    )
    return Clip(wave, "event", "event", attrs, labels)
