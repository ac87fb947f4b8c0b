"""Register audiovec's LanceDB embedding function whenever ``lancedb.embeddings`` is imported.

LanceDB looks embedding functions up by name in a process-wide registry and has no plugin discovery, so
a table naming ``"audiovec"`` needs the name registered first. ``import audiovec`` calls :func:`install`:
if ``lancedb.embeddings`` is already imported it registers at once, otherwise a meta-path finder waits for
that import (so ``import audiovec`` itself never pays for importing LanceDB).
"""

from __future__ import annotations

import importlib.abc
import logging
import sys
from typing import Any

TARGET = "lancedb.embeddings"
log = logging.getLogger(__name__)


def _register() -> None:
    try:
        import audiovec.lancedb_embedding  # noqa: F401  (registers "audiovec" on import)
    except Exception as exc:  # an incompatible LanceDB must not break `import lancedb`
        log.warning("audiovec: could not register the LanceDB embedding function: %s", exc)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds ``lancedb.embeddings`` with the other finders and registers audiovec after it executes."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != TARGET:
            return None
        sys.meta_path.remove(self)  # once is enough; also keeps the search below from finding us
        for finder in sys.meta_path:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                run = spec.loader.exec_module

                def exec_module(module: Any, run: Any = run) -> None:
                    run(module)
                    _register()

                spec.loader.exec_module = exec_module  # type: ignore[method-assign]
                return spec
        return None


def install() -> None:
    """Register now if LanceDB's embeddings are imported, else when they are."""
    if TARGET in sys.modules:
        _register()
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
