"""A plain ``pip install audiovec`` (no extras): every command's help works, and a command that needs an
extra fails with one line naming it. The extras' modules are absent in a subprocess (``None`` in
``sys.modules``: imports fail as for a missing package, ``importlib.util.find_spec`` returns None)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from audiovec.cli import COMMAND_MODULES
from audiovec.extras import MODULE_EXTRAS

HIDE_EXTRAS = textwrap.dedent(
    f"""
    import contextlib, io, json, sys
    sys.modules.update(dict.fromkeys({sorted(MODULE_EXTRAS)!r}))  # as if not installed (find_spec: None)
    from audiovec.cli import main
    results = []
    for argv in json.loads(sys.argv[1]):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code
        results.append({{"argv": argv, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}})
    print(json.dumps(results))
    """
)


def _run(*argvs: list[str]) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-c", HIDE_EXTRAS, json.dumps(list(argvs))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_help_works_and_an_extra_is_named_in_one_line(tmp_path) -> None:
    helps = [["--help"]] + [[c, "--help"] for c in COMMAND_MODULES] + [["data", "synth", "--help"]]
    needs_demo = ["data", "synth", "--out", str(tmp_path / "corpus"), "--n", "4"]
    *results, extra = _run(*helps, needs_demo)
    for result in results:
        assert result["code"] == 0, result
        assert "usage:" in result["stdout"], result
    assert all(c in results[0]["stdout"] for c in COMMAND_MODULES)
    assert extra["code"] == 1
    lines = extra["stderr"].strip().splitlines()
    assert len(lines) == 1, extra["stderr"]
    assert "pip install 'audiovec[demo]'" in lines[0] and lines[0].startswith("audiovec data")


def test_help_imports_neither_torch_nor_transformers() -> None:
    """``audiovec --help`` and every command's help stay quick: the heavy stack loads when a command runs."""
    code = textwrap.dedent(
        """
        import contextlib, io, sys
        from audiovec.cli import COMMAND_MODULES, main
        for argv in [["--help"]] + [[c, "--help"] for c in COMMAND_MODULES]:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
                main(argv)
        print(sorted(m for m in ("torch", "transformers", "lancedb") if m in sys.modules))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_compose_pooling_choices_are_the_models() -> None:
    from audiovec.cli.compose_cmd import POOLING_MODES as CLI_MODES
    from audiovec.pooling import POOLING_MODES

    assert CLI_MODES == POOLING_MODES
