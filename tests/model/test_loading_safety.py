"""Loading never runs code from a model folder, and a save killed mid-way leaves the previous folder whole."""

from __future__ import annotations

import ast
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from audiovec.errors import CheckpointError, UnsafeCheckpointError
from audiovec.model import AudioTextEmbedder
from audiovec.tiny import save_tiny_embedder

SRC = Path(__file__).resolve().parents[2] / "src" / "audiovec"
AUTO_CLASSES = {"AutoTokenizer", "AutoModel", "AutoConfig", "AutoProcessor", "AutoFeatureExtractor"}


class _RunsCode:
    """Unpickling this runs ``touch MARKER``: what a hostile checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    return save_tiny_embedder(tmp_path / "model")


def _vectors(model: AudioTextEmbedder) -> np.ndarray:
    return model.encode_text(["a dog barking", "piano music"])


# ------------------------------------------------------------------------------------------ pickle


def test_pickle_weights_refused_unless_allowed(model_dir: Path) -> None:
    reference = _vectors(AudioTextEmbedder.from_pretrained(model_dir))
    state = load_file(str(model_dir / "model.safetensors"))
    (model_dir / "model.safetensors").unlink()
    torch.save(state, model_dir / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="pickle") as info:
        AudioTextEmbedder.from_pretrained(model_dir)
    assert str(model_dir) in str(info.value) and "allow_pickle" in str(info.value)
    allowed = AudioTextEmbedder.from_pretrained(model_dir, allow_pickle=True)
    np.testing.assert_allclose(_vectors(allowed), reference, atol=1e-6)


def test_hostile_pickle_never_runs(model_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    (model_dir / "model.safetensors").unlink()
    with open(model_dir / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"weight": _RunsCode(marker)}, handle)
    with pytest.raises(UnsafeCheckpointError):
        AudioTextEmbedder.from_pretrained(model_dir)
    assert not marker.exists()
    # even when pickle is allowed, torch.load(weights_only=True) refuses to call os.system
    with pytest.raises((CheckpointError, pickle.UnpicklingError)):
        AudioTextEmbedder.from_pretrained(model_dir, allow_pickle=True)
    assert not marker.exists()


def test_safetensors_win_over_a_pickle_beside_them(model_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    with open(model_dir / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"weight": _RunsCode(marker)}, handle)
    AudioTextEmbedder.from_pretrained(model_dir, allow_pickle=True)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ remote code


def _plant_custom_tokenizer(folder: Path, marker: Path) -> None:
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "HostileTokenizer"
    config["auto_map"] = {"AutoTokenizer": [None, "hostile_tok.HostileTokenizer"]}
    config_path.write_text(json.dumps(config))
    (folder / "hostile_tok.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import PreTrainedTokenizerFast\n\n\n"
        "class HostileTokenizer(PreTrainedTokenizerFast):\n    pass\n"
    )


def test_custom_code_in_a_model_folder_never_runs(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even with 'y' waiting on stdin (a pipeline, ``yes |``), loading must refuse, not run the code."""
    marker = tmp_path / "PWNED"
    _plant_custom_tokenizer(model_dir, marker)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\ny\n"))
    with pytest.raises((CheckpointError, ValueError), match="trust_remote_code|custom code"):
        AudioTextEmbedder.from_pretrained(model_dir)
    assert not marker.exists(), "the model folder's Python code was executed"


def test_source_never_turns_remote_code_on() -> None:
    """No call in the package passes ``trust_remote_code=True`` (a user's explicit opt-in must be a variable)."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if (
                        kw.arg == "trust_remote_code"
                        and isinstance(kw.value, ast.Constant)
                        and kw.value.value
                    ):
                        offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not offenders, offenders


def test_auto_class_loads_say_trust_remote_code_explicitly() -> None:
    """transformers prompts on stdin when the flag is left unset; every Auto*.from_pretrained must set it."""
    missing = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            func = node.func if isinstance(node, ast.Call) else None
            if isinstance(func, ast.Attribute) and func.attr == "from_pretrained":
                owner = func.value.id if isinstance(func.value, ast.Name) else ""
                if owner in AUTO_CLASSES and not any(k.arg == "trust_remote_code" for k in node.keywords):
                    missing.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not missing, missing


# ------------------------------------------------------------------------------------------ atomic saves

# A real process saves a *different* model over the folder and is SIGKILLed at a chosen moment of the save.
# The moment is chosen by wrapping one step so that it kills its own process; nothing is simulated.
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import audiovec.model as model_module
    import audiovec.serialization as ser
    from audiovec.tiny import tiny_embedder

    target, point = Path(sys.argv[1]), sys.argv[2]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "weights":  # half of the safetensors file is on disk
        def half_weights(state, folder, **kw):
            ser.save_state_dict(state, folder, **kw)
            weights = Path(folder) / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
            die()
        model_module.save_state_dict = half_weights
    elif point == "fsync":  # every file written, before the swap
        ser._fsync_tree = lambda root: die()
    elif point == "swap":  # no renameat2: the old folder moved aside, the new one not yet in place
        ser._exchange = lambda a, b: False
        real_replace = os.replace
        def replace(src, dst):
            real_replace(src, dst)
            if Path(src) == target:
                die()
        ser.os.replace = replace
    model = tiny_embedder(seed=int(sys.argv[3]))
    if point == "tokenizer":  # weights done, tokenizer files being written
        real_save = model.tokenizer.save_pretrained
        def half_tokenizer(folder, *args, **kw):
            real_save(folder, *args, **kw)
            (Path(folder) / "tokenizer.json").write_text("{")
            die()
        model.tokenizer.save_pretrained = half_tokenizer
    if point == "loop":
        print("saving", flush=True)
        while True:
            model.save_pretrained(target)
    model.save_pretrained(target)
    print("save finished: the kill point was never reached", flush=True)
    """
)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    AudioTextEmbedder.from_pretrained(folder)  # the whole folder loads
    return load_file(str(folder / "model.safetensors"))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _start_killer(folder: Path, point: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", KILLER, str(folder), point, "7"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_save_killed_at_each_step_leaves_previous_folder(tmp_path: Path) -> None:
    """Killed while writing weights, tokenizer, or before the swap: the previous model is there, whole."""
    points = ["weights", "tokenizer", "fsync"]
    targets = {p: save_tiny_embedder(tmp_path / p / "model", seed=0) for p in points}
    before = _weights(targets[points[0]])
    children = {p: _start_killer(targets[p], p) for p in points}  # concurrently: each is mostly imports
    for point, child in children.items():
        out, err = child.communicate(timeout=300)
        assert child.returncode == -signal.SIGKILL, (point, out + err[-2000:])
    for point, target in targets.items():
        assert _same(_weights(target), before), point
        leftovers = [p.name for p in target.parent.iterdir() if p.name.startswith(".tmp-")]
        assert leftovers, f"{point}: the kill did not land inside the save"
    AudioTextEmbedder.from_pretrained(targets["fsync"]).save_pretrained(targets["fsync"])  # saves again
    assert _same(_weights(targets["fsync"]), before)


@pytest.mark.slow
def test_save_killed_between_the_two_renames(tmp_path: Path) -> None:
    """Without renameat2 a save takes two renames; a kill between them is recovered on the next load."""
    target = save_tiny_embedder(tmp_path / "model", seed=0)
    before = _weights(target)
    child = _start_killer(target, "swap")
    out, err = child.communicate(timeout=300)
    assert child.returncode == -signal.SIGKILL, out + err[-2000:]
    assert _same(_weights(target), before)


def test_save_killed_at_a_random_moment(tmp_path: Path) -> None:
    """A process saving in a loop, killed while a save is in flight: the folder is the old or the new model."""
    target = save_tiny_embedder(tmp_path / "model", seed=0)
    old = _weights(target)
    child = _start_killer(target, "loop")
    try:
        assert child.stdout.readline().strip() == "saving"
        deadline = time.monotonic() + 120
        while not any(p.name.startswith(".tmp-model-") for p in tmp_path.iterdir()):
            assert time.monotonic() < deadline, "no save started"
            time.sleep(0.001)
        time.sleep(0.005 + np.random.default_rng().uniform(0, 0.03))
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=60)
    new = save_tiny_embedder(tmp_path / "reference-new", seed=7)
    now = _weights(target)
    assert _same(now, old) or _same(now, _weights(new))
