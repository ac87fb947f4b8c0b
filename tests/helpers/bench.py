"""Run a benchmark script at reduced size (``--quick``) in its own process and return its JSON result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def run_quick(script: str, tmp_path: Path, *args: str, timeout: float = 600) -> dict[str, Any]:
    """``benchmarks/SCRIPT --quick --out FILE ARGS``: must exit 0 and write a quick result with the machine."""
    out = tmp_path / f"{script}.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["machine"]["cpu"]
    return data
