"""Where the Free Spoken Digit Dataset's real recordings are (CC BY-SA 4.0): a 600-file subset ships in the
repository for tests and tiny recipes; the full set can sit beside the checkout or anywhere via
``$AUDIOVEC_FSDD``."""

from __future__ import annotations

import os
from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parents[3] / "data" / "fsdd" / "recordings"


def bundled_files(n: int | None = None, digits: str = "0123456789") -> list[Path]:
    """The repository's FSDD subset (real 8 kHz speech), sorted, optionally the first ``n``: the same files
    wherever the suite or a tiny recipe runs."""
    files = sorted(p for p in BUNDLED_DIR.glob("*.wav") if p.name[0] in digits)
    return files[:n] if n is not None else files


def default_dir() -> Path | None:
    """Where FSDD recordings are: ``$AUDIOVEC_FSDD``; else the full dataset in ``shared/data/fsdd/recordings``
    beside the checkout when there is one (this project's workspace; it only adds takes); else the 600-file
    subset that ships in the repository (``data/fsdd/recordings``); else None (an installed wheel)."""
    env = os.environ.get("AUDIOVEC_FSDD")
    if env:
        return Path(env)
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for parent in [start, *start.parents]:
            candidate = parent.parent / "shared" / "data" / "fsdd" / "recordings"
            if candidate.is_dir():
                return candidate
    return BUNDLED_DIR if BUNDLED_DIR.is_dir() else None
