"""What the CLI prints from the logging tree: audiovec's progress at INFO, other libraries only from WARNING
(huggingface_hub logs every saved checkpoint, temporary folders included, at INFO), everything with -v."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import logging, sys
from audiovec.cli import main
main([*sys.argv[1:], "search", "--db", "/nonexistent/db", "dog"])
logging.getLogger("huggingface_hub.serialization").info("third-party info")
logging.getLogger("huggingface_hub.serialization").warning("third-party warning")
logging.getLogger("audiovec.demo").info("our progress")
logging.getLogger("audiovec.demo").debug("our detail")
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_cli_logs_its_own_progress_and_only_warnings_of_others(verbose: bool) -> None:
    argv = [sys.executable, "-c", SCRIPT, *(["-v"] if verbose else [])]
    err = subprocess.run(argv, capture_output=True, text=True, timeout=120).stderr
    assert "no audiovec index here" in err  # the command ran (and failed with its one-line error)
    assert "INFO our progress" in err and "WARNING third-party warning" in err
    assert ("third-party info" in err) is verbose and ("our detail" in err) is verbose
