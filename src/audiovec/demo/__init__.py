"""The main job (``audiovec demo``): the real-sounds corpus (``corpus``), its synthetic supplement
(``synth``), and the run that composes, trains, evaluates, indexes and searches (``run``)."""

import importlib
from typing import Any


def __getattr__(name: str) -> Any:  # ``from audiovec.demo import run_demo`` keeps working (moved to .run)
    if name.startswith("__") or name in {"run", "corpus", "synth"}:
        raise AttributeError(name)
    return getattr(importlib.import_module("audiovec.demo.run"), name)
