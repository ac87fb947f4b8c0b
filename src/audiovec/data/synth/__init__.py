"""``audiovec data synth``: a small, real, varied audio-text corpus built offline from pip-installable
sources (eSpeak NG speech, General MIDI instruments, synthesised events, FSDD recordings, scenes).

See docs/corpus.md for the sources, licences, caption templates and the held-out rules.
"""

from audiovec.data.synth.corpus import DEFAULT_N, build_corpus

__all__ = ["DEFAULT_N", "build_corpus"]
