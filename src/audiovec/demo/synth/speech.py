"""Synthetic speech from eSpeak NG (the library and voices bundled by the ``espeakng-loader`` package).

Varies language, accent, voice variant (men, women, old, hoarse, whispering), pitch, rate and sentence.
English clips carry their sentence in the caption; other languages are described by language and manner.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

from audiovec.demo.synth.common import Clip, fit_length, normalize, pick, resample, trim_silence
from audiovec.errors import DataError

WORKER = Path(__file__).with_name("espeak_worker.py")

SENTENCES_EN = [
    "turn off the lights",
    "the train leaves at nine",
    "please close the door",
    "where is the nearest station",
    "I will call you back tomorrow",
    "the coffee is getting cold",
    "it is going to rain this afternoon",
    "can you pass me the salt",
    "the meeting has been moved to Friday",
    "welcome to the city museum",
    "do not forget your umbrella",
    "the cat is sleeping on the sofa",
    "please take a seat",
    "dinner is ready",
    "the flight to London is delayed",
    "how much does this cost",
    "good morning everyone",
    "the shop closes at six",
    "my phone battery is almost empty",
    "let us go for a walk in the park",
    "the children are playing outside",
    "please speak a little louder",
    "the next stop is Central Station",
    "I lost my keys again",
    "thank you for waiting",
    "the water is boiling",
    "turn left at the traffic lights",
    "we need more milk and bread",
    "the concert starts at eight",
    "please wash your hands",
]
ACCENTS = {"British": "en", "American": "en-us", "Scottish": "en-gb-scotland", "Caribbean": "en-029"}
# language name -> (eSpeak voice, a few everyday sentences written for this corpus)
FOREIGN = {
    "French": (
        "fr",
        ["Bonjour, comment allez-vous ?", "Le train part à neuf heures.", "Il fait très beau aujourd'hui."],
    ),
    "German": (
        "de",
        ["Guten Morgen, wie geht es dir?", "Der Zug fährt um neun Uhr ab.", "Heute ist das Wetter schön."],
    ),
    "Spanish": (
        "es",
        ["Buenos días, ¿cómo estás?", "El tren sale a las nueve.", "Hoy hace muy buen tiempo."],
    ),
    "Italian": ("it", ["Buongiorno, come stai?", "Il treno parte alle nove.", "Oggi il tempo è bellissimo."]),
    "Portuguese": (
        "pt",
        ["Bom dia, como você está?", "O comboio parte às nove horas.", "Hoje o tempo está ótimo."],
    ),
    "Dutch": (
        "nl",
        ["Goedemorgen, hoe gaat het?", "De trein vertrekt om negen uur.", "Vandaag is het mooi weer."],
    ),
    "Polish": (
        "pl",
        ["Dzień dobry, jak się masz?", "Pociąg odjeżdża o dziewiątej.", "Dzisiaj jest piękna pogoda."],
    ),
    "Russian": (
        "ru",
        ["Доброе утро, как дела?", "Поезд отправляется в девять часов.", "Сегодня хорошая погода."],
    ),
    "Swedish": ("sv", ["God morgon, hur mår du?", "Tåget går klockan nio.", "Det är fint väder idag."]),
    "Turkish": ("tr", ["Günaydın, nasılsın?", "Tren saat dokuzda kalkıyor.", "Bugün hava çok güzel."]),
    "Finnish": (
        "fi",
        ["Hyvää huomenta, mitä kuuluu?", "Juna lähtee kello yhdeksän.", "Tänään on kaunis ilma."],
    ),
    "Greek": ("el", ["Καλημέρα, τι κάνεις;", "Το τρένο φεύγει στις εννέα.", "Σήμερα ο καιρός είναι ωραίος."]),
}
# eSpeak voice variants (file names in espeak-ng-data/voices/!v) by person and style
VARIANTS = {
    ("man", "plain"): ["m1", "m2", "m3", "m4", "m5", "m6", "m7"],
    ("woman", "plain"): ["f1", "f2", "f3", "f4", "f5"],
    ("man", "whisper"): ["whisper"],
    ("woman", "whisper"): ["whisperf"],
    ("man", "old"): ["grandpa"],
    ("woman", "old"): ["grandma"],
    ("man", "croaky"): ["croak"],
}
RATES = {"slow": (115, 135), "normal": (160, 185), "fast": (245, 285)}
PERSONS = ("man", "woman")


class ESpeak:
    """Client of the :mod:`espeak_worker` process; use as a context manager. Not thread-safe."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self.sample_rate = 0

    def __enter__(self) -> ESpeak:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if self._proc is not None:
            return
        self._proc = subprocess.Popen(
            [sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )
        head = self._read(4)
        self.sample_rate = struct.unpack("<i", head)[0]
        if self.sample_rate <= 0:
            self.close()
            raise DataError("eSpeak NG (espeakng-loader's libespeak-ng) could not be initialised")

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.stdin:
                self._proc.stdin.close()
            self._proc.wait(timeout=30)
            if self._proc.stdout:
                self._proc.stdout.close()
            self._proc = None

    def _read(self, n: int) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        data = bytearray()
        while len(data) < n:
            chunk = self._proc.stdout.read(n - len(data))
            if not chunk:
                raise DataError(f"eSpeak NG worker ({WORKER}) stopped unexpectedly")
            data.extend(chunk)
        return bytes(data)

    def say(
        self, text: str, voice: str, rate: int = 175, pitch: int = 50, pitch_range: int = 50
    ) -> np.ndarray:
        """Speak ``text`` with eSpeak voice ``voice`` (e.g. ``"fr+f2"``); float32 mono at 16 kHz."""
        self.start()
        assert self._proc is not None and self._proc.stdin is not None
        request = {"voice": voice, "text": text, "rate": rate, "pitch": pitch, "range": pitch_range}
        self._proc.stdin.write((json.dumps(request, ensure_ascii=False) + "\n").encode("utf-8"))
        status, nbytes = struct.unpack("<iI", self._read(8))
        pcm = self._read(nbytes) if nbytes else b""
        if status != 0 or not pcm:
            raise DataError(f"eSpeak NG could not speak {text!r} with voice {voice!r} (status {status})")
        wave = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        return resample(wave, self.sample_rate)


def combos(kind: str) -> list[tuple[str, str]]:
    """The attribute pairs the held-out rule works on: (sentence, person) or (language, person)."""
    keys = SENTENCES_EN if kind == "speech_en" else sorted(FOREIGN)
    return [(key, person) for key in keys for person in PERSONS]


def make_spec(kind: str, combo: tuple[str, str], rng: np.random.Generator) -> dict:
    """All random choices for one clip of family ``kind`` ("speech_en" or "speech_foreign")."""
    key, person = combo
    styles = [s for (p, s) in VARIANTS if p == person]
    style = "plain" if rng.random() < 0.55 else pick(rng, [s for s in styles if s != "plain"])
    rate_name = pick(rng, list(RATES))
    lo, hi = RATES[rate_name]
    spec = {
        "kind": kind,
        "person": person,
        "style": style,
        "variant": pick(rng, VARIANTS[(person, style)]),
        "rate_name": rate_name,
        "rate": int(rng.integers(lo, hi + 1)),
        "pitch": int(rng.integers(35, 66)),
        "range": int(rng.integers(30, 80)),
        "gain_db": float(rng.uniform(-6.0, 0.0)),
    }
    if kind == "speech_en":
        spec["sentence"] = key
        spec["accent"] = pick(rng, list(ACCENTS))
        spec["voice"] = ACCENTS[spec["accent"]]
        spec["text"] = key[0].upper() + key[1:] + "."
    else:
        spec["language"] = key
        spec["voice"] = FOREIGN[key][0]
        spec["text"] = pick(rng, FOREIGN[key][1])
    return spec


def render(spec: dict, engine: ESpeak) -> Clip:
    """Speak a spec from :func:`make_spec`."""
    wave = engine.say(
        spec["text"], f"{spec['voice']}+{spec['variant']}", spec["rate"], spec["pitch"], spec["range"]
    )
    wave = fit_length(normalize(trim_silence(wave), spec["gain_db"]), max_s=8.0)
    attrs: dict[str, object] = {"person": spec["person"], "style": spec["style"], "rate": spec["rate_name"]}
    labels = ["speech", spec["person"], spec["style"], f"rate:{spec['rate_name']}"]
    if spec["kind"] == "speech_en":
        attrs.update(sentence=spec["sentence"], accent=spec["accent"], language="English")
        labels += ["English", f"accent:{spec['accent']}", f"sentence:{spec['sentence']}"]
    else:
        attrs["language"] = spec["language"]
        labels.append(spec["language"])
    return Clip(wave, "speech", spec["kind"], attrs, labels)
