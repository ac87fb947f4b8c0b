"""``audiovec data synth``: a small, real, varied audio-text corpus built offline from pip-installable
sources (eSpeak NG speech, General MIDI instruments, synthesised events, FSDD recordings, scenes).

See docs/corpus.md for the sources, licences, caption templates and the held-out rules. The builder is
imported on first use: it needs the ``demo`` extra (scipy, eSpeak NG), which the CLI must not require.
"""

from typing import Any

__all__ = ["DEFAULT_N", "build_corpus"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from audiovec.demo.synth import corpus

        return getattr(corpus, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
