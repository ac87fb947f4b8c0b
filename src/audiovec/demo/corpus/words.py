"""Short spoken words in many languages, synthesised with eSpeak NG (the synthetic speech supplement).

Real recordings cover few languages (klettres-data's letters, FSDD's English digits, a few game voices), so
the corpus adds words and short phrases in 32 languages, spoken by eSpeak's male and female voice variants,
captioned with what is said and in which language ("a woman saying 'dos' in Spanish"). The words were
written for audiovec: counting words and everyday words a listener would recognise.
"""

from __future__ import annotations

import numpy as np

from audiovec.demo.corpus.labels import Labelled
from audiovec.demo.synth.common import fit_length, normalize, pick, trim_silence

# language -> (eSpeak voice, words and short phrases in that language's own spelling)
WORDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "English": ("en", ("one", "two", "three", "hello", "thank you", "water", "good morning", "the house", "a dog", "open the door")),
    "Spanish": ("es", ("uno", "dos", "tres", "hola", "gracias", "agua", "buenos días", "la casa", "un perro", "la corona")),
    "Catalan": ("ca", ("un", "dos", "tres", "hola", "gràcies", "aigua", "bon dia", "la casa", "un gos", "una corona")),
    "French": ("fr", ("un", "deux", "trois", "bonjour", "merci", "de l'eau", "bonne nuit", "la maison", "un chien", "le soleil")),
    "German": ("de", ("eins", "zwei", "drei", "hallo", "danke", "Wasser", "guten Morgen", "das Haus", "ein Hund", "die Sonne")),
    "Italian": ("it", ("uno", "due", "tre", "ciao", "grazie", "acqua", "buongiorno", "la casa", "un cane", "il sole")),
    "Portuguese": ("pt", ("um", "dois", "três", "olá", "obrigado", "água", "bom dia", "a casa", "um cão", "o sol")),
    "Dutch": ("nl", ("een", "twee", "drie", "hallo", "dank je", "water", "goedemorgen", "het huis", "een hond", "de zon")),
    "Swedish": ("sv", ("ett", "två", "tre", "hej", "tack", "vatten", "god morgon", "huset", "en hund", "solen")),
    "Norwegian": ("nb", ("en", "to", "tre", "hei", "takk", "vann", "god morgen", "huset", "en hund", "solen")),
    "Danish": ("da", ("en", "to", "tre", "hej", "tak", "vand", "god morgen", "huset", "en hund", "solen")),
    "Finnish": ("fi", ("yksi", "kaksi", "kolme", "hei", "kiitos", "vesi", "hyvää huomenta", "talo", "koira", "aurinko")),
    "Polish": ("pl", ("jeden", "dwa", "trzy", "cześć", "dziękuję", "woda", "dzień dobry", "dom", "pies", "słońce")),
    "Czech": ("cs", ("jedna", "dva", "tři", "ahoj", "děkuji", "voda", "dobré ráno", "dům", "pes", "slunce")),
    "Slovak": ("sk", ("jeden", "dva", "tri", "ahoj", "ďakujem", "voda", "dobré ráno", "dom", "pes", "slnko")),
    "Hungarian": ("hu", ("egy", "kettő", "három", "szia", "köszönöm", "víz", "jó reggelt", "a ház", "kutya", "a nap")),
    "Romanian": ("ro", ("unu", "doi", "trei", "salut", "mulțumesc", "apă", "bună dimineața", "casa", "un câine", "soarele")),
    "Croatian": ("hr", ("jedan", "dva", "tri", "bok", "hvala", "voda", "dobro jutro", "kuća", "pas", "sunce")),
    "Slovenian": ("sl", ("ena", "dva", "tri", "živjo", "hvala", "voda", "dobro jutro", "hiša", "pes", "sonce")),
    "Russian": ("ru", ("один", "два", "три", "привет", "спасибо", "вода", "доброе утро", "дом", "собака", "солнце")),
    "Ukrainian": ("uk", ("один", "два", "три", "привіт", "дякую", "вода", "добрий ранок", "дім", "собака", "сонце")),
    "Bulgarian": ("bg", ("едно", "две", "три", "здравей", "благодаря", "вода", "добро утро", "къща", "куче", "слънце")),
    "Greek": ("el", ("ένα", "δύο", "τρία", "γεια σου", "ευχαριστώ", "νερό", "καλημέρα", "το σπίτι", "ένας σκύλος", "ο ήλιος")),
    "Turkish": ("tr", ("bir", "iki", "üç", "merhaba", "teşekkürler", "su", "günaydın", "ev", "köpek", "güneş")),
    "Basque": ("eu", ("bat", "bi", "hiru", "kaixo", "eskerrik asko", "ura", "egun on", "etxea", "txakurra", "eguzkia")),
    "Welsh": ("cy", ("un", "dau", "tri", "helo", "diolch", "dŵr", "bore da", "y tŷ", "ci", "yr haul")),
    "Irish": ("ga", ("a haon", "a dó", "a trí", "dia duit", "go raibh maith agat", "uisce", "maidin mhaith", "an teach", "madra", "an ghrian")),
    "Icelandic": ("is", ("einn", "tveir", "þrír", "halló", "takk", "vatn", "góðan daginn", "húsið", "hundur", "sólin")),
    "Indonesian": ("id", ("satu", "dua", "tiga", "halo", "terima kasih", "air", "selamat pagi", "rumah", "anjing", "matahari")),
    "Swahili": ("sw", ("moja", "mbili", "tatu", "habari", "asante", "maji", "habari za asubuhi", "nyumba", "mbwa", "jua")),
    "Vietnamese": ("vi", ("một", "hai", "ba", "xin chào", "cảm ơn", "nước", "chào buổi sáng", "ngôi nhà", "con chó", "mặt trời")),
    "Esperanto": ("eo", ("unu", "du", "tri", "saluton", "dankon", "akvo", "bonan matenon", "la domo", "hundo", "la suno")),
}  # fmt: skip
VARIANTS = {"man": ("m1", "m2", "m3", "m4", "m5", "m7"), "woman": ("f1", "f2", "f3", "f4", "f5")}


def plan(n: int, rng: np.random.Generator) -> list[dict]:
    """``n`` (language, word, voice) choices spread evenly over the languages."""
    languages = sorted(WORDS)
    specs = []
    for i in range(n):
        language = languages[i % len(languages)]
        voice, words = WORDS[language]
        person = "man" if rng.random() < 0.5 else "woman"
        says = pick(rng, words)
        specs.append({"language": language, "voice": voice, "says": says, **speaker(person, rng)})
    return specs


def speaker(person: str, rng: np.random.Generator) -> dict:
    """How ``person`` ("man" or "woman") speaks one clip: an eSpeak voice variant, rate and pitch."""
    return {
        "person": person, "variant": pick(rng, VARIANTS[person]),
        "rate": int(rng.integers(130, 200)), "pitch": int(rng.integers(35, 70)),
    }  # fmt: skip


def render(spec: dict, engine) -> np.ndarray:
    """Speak one planned word (16 kHz float32), silence trimmed, at least 1 s."""
    wave = engine.say(spec["says"], f"{spec['voice']}+{spec['variant']}", spec["rate"], spec["pitch"])
    return fit_length(normalize(trim_silence(wave), -2.0), max_s=4.0)


def labelled(spec: dict) -> Labelled:
    """What the captions are written from: speaker, language and the words said."""
    return Labelled(
        labels=(f"{spec['person']}_speech", "speech"), captions=(), kind="synthetic", rule=0,
        language=spec["language"], speaker=spec["person"], says=spec["says"],
    )  # fmt: skip
