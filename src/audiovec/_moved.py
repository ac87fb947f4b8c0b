"""Old module names that moved into the wings keep importing for one release, with a DeprecationWarning.

``import audiovec.index`` gives the very module object ``audiovec.apps.index`` (so monkeypatching either
name patches both). The table is the migration guide; docs/design.md shows the new layout."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

MOVED = {
    "audiovec.compose": "audiovec.build.compose",
    "audiovec.prune": "audiovec.build.prune",
    "audiovec.checkpoints": "audiovec.build.sources",
    "audiovec.ct2_whisper": "audiovec.build.ct2_whisper",
    "audiovec.st_layout": "audiovec.build.st_layout",
    "audiovec.pretrained": "audiovec.build.pretrained",
    "audiovec.metrics": "audiovec.evaluation.metrics",
    "audiovec.benchmarks_data": "audiovec.evaluation.retrieval_sets",
    "audiovec.evaluate": "audiovec.evaluation.evaluate",
    "audiovec.mteb_wrapper": "audiovec.evaluation.mteb",
    "audiovec.report": "audiovec.evaluation.report",
    "audiovec.index": "audiovec.apps.index",
    "audiovec.classify": "audiovec.apps.classify",
    "audiovec.routing": "audiovec.apps.routing",
    "audiovec.corpus": "audiovec.demo.corpus",
    "audiovec.data.synth": "audiovec.demo.synth",
    "audiovec.train.checkpoint": "audiovec.train.resume",
}


def new_name(old: str) -> str | None:
    """Where ``old`` (a moved module or one inside a moved package) lives now; None if it did not move."""
    for before, after in MOVED.items():
        if old == before or old.startswith(before + "."):
            return after + old[len(before) :]
    return None


class MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self, fullname: str, path: object, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if new_name(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        target = new_name(spec.name)
        warnings.warn(
            f"{spec.name} moved to {target}; import it from there", DeprecationWarning, stacklevel=2
        )
        return importlib.import_module(target)

    def exec_module(self, module: ModuleType) -> None:  # the target module is already executed
        return None


def install() -> None:
    if not any(isinstance(f, MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedFinder())
