"""``--engine ray`` on a local Ray instance (``ray.init(num_cpus=2)``, one per module): ``audiovec encode``
and ``audiovec index`` give the single-process vectors and rows, resume (a rerun embeds only what is not
yet written) and report and skip unreadable files. Real built-in model, real FSDD speech, synthesised
events. Slow: each Ray job starts two actors that each load the model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from audiovec.build.pretrained import DEFAULT_MODEL  # noqa: E402
from audiovec.cli import main  # noqa: E402
from audiovec.data.fsdd import bundled_files as fsdd_files  # noqa: E402

pytestmark = pytest.mark.slow
RAY_ARGS = ["--engine", "ray", "--workers", "2", "--files-per-call", "2"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Three FSDD recordings, three synthesised events (one longer than a 30 s window) and a broken file."""
    import soundfile as sf

    from audiovec.demo.synth import events

    out = tmp_path_factory.mktemp("clips")
    for path in fsdd_files()[::200][:3]:
        shutil.copy(path, out / f"speech_{path.name}")
    for kind, seconds in (("siren", 4.0), ("rain", 34.0), ("bell", 3.0)):
        wave = getattr(events, kind)(np.random.default_rng(0), 0, seconds).astype(np.float32)
        sf.write(out / f"{kind}.wav", wave, 16000)
    (out / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    return out


@pytest.fixture(scope="module")
def model():
    from audiovec.model import AudioTextEmbedder

    return AudioTextEmbedder.from_pretrained(DEFAULT_MODEL)


def test_encode_with_ray_equals_one_process_resumes_and_skips_bad_files(
    folder, model, tmp_path, capsys
) -> None:
    from audiovec.ray_engine import read_vectors

    good = sorted(str(p) for p in folder.iterdir() if p.name != "broken.wav")
    out = tmp_path / "vectors"
    first = [*good[:3], str(folder / "broken.wav")]
    assert main(["encode", *first, "--out", str(out), *RAY_ARGS]) == 1  # as today: 1 when a file failed
    err = capsys.readouterr().err
    assert "skipped: " in err and "broken.wav" in err and "3 encoded" in err
    (out / ".part-000099.tmp").write_bytes(b"half a part a killed run was writing")
    assert main(["encode", str(folder), "--out", str(out), *RAY_ARGS]) == 1
    err = capsys.readouterr().err
    assert f"{len(good) - 3} encoded, 3 already written, 1 failed" in err, err
    assert not list(out.glob(".part-*"))
    paths, vectors = read_vectors(out)
    assert sorted(paths) == good and len(set(paths)) == len(good)
    expected = model.encode_audio(paths)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert (vectors @ expected.T).argmax(1).tolist() == list(range(len(paths)))


def test_index_with_ray_writes_the_single_process_rows_and_resumes(folder, model, tmp_path, capsys) -> None:
    import lancedb

    from audiovec.apps.index import AudioIndex
    from audiovec.index_quantized import set_precision

    AudioIndex(tmp_path / "one").add(model, [folder], model_dir=DEFAULT_MODEL)
    assert main(["index", str(folder), "--db", str(tmp_path / "ray"), *RAY_ARGS]) == 0
    out = capsys.readouterr().out
    assert "6 added" in out and "1 failed" in out and "broken.wav" in out, out

    def rows(db: Path) -> dict:
        table = AudioIndex(db).rows(
            ("path", "window", "n_windows", "start", "end", "hash", "model", "vector")
        )
        order = sorted(
            range(table.num_rows), key=lambda i: (table["path"][i].as_py(), table["window"][i].as_py())
        )
        return table.take(order).to_pydict()

    single, by_ray = rows(tmp_path / "one"), rows(tmp_path / "ray")
    assert max(by_ray["n_windows"]) == 2  # the 34 s file is two windows
    for column in ("path", "window", "n_windows", "start", "end", "hash", "model"):
        assert by_ray[column] == single[column], column
    np.testing.assert_allclose(np.asarray(by_ray["vector"]), np.asarray(single["vector"]), atol=1e-5)
    assert AudioIndex(tmp_path / "ray").meta() == AudioIndex(tmp_path / "one").meta()  # one writer
    set_precision(AudioIndex(tmp_path / "ray"), "int8")  # a later Ray run keeps the index's settings
    (folder / "broken.wav").rename(tmp_path / "broken.wav")
    try:  # a rerun: nothing left to embed, so no Ray job at all
        assert main(["index", str(folder), "--db", str(tmp_path / "ray"), *RAY_ARGS]) == 0
    finally:
        (tmp_path / "broken.wav").rename(folder / "broken.wav")
    assert "0 added, 0 re-indexed, 6 unchanged, 0 failed, 0 windows written" in capsys.readouterr().out
    assert AudioIndex(tmp_path / "ray").meta()["precision"] == "int8"
    # the index names the "audiovec" embedding function: plain lancedb searches it by string
    hit = lancedb.connect(str(tmp_path / "ray")).open_table("windows").search("a siren wailing").limit(1)
    assert Path(hit.to_list()[0]["path"]).name == "siren.wav"


def test_encode_dataset_takes_a_read_binary_files_dataset(folder, model, tmp_path) -> None:
    """Workers decode the bytes Ray read (no shared file system needed); a broken file is reported."""
    from audiovec.ray_engine import EngineConfig, encode_dataset, read_vectors

    files = sorted(str(p) for p in folder.iterdir() if p.name in ("siren.wav", "broken.wav", "bell.wav"))
    ds = ray.data.read_binary_files(files, include_paths=True)
    report = encode_dataset(DEFAULT_MODEL, ds, tmp_path / "out", EngineConfig(workers=1))
    assert report.written == 2 and list(report.failed) == [str(folder / "broken.wav")]
    paths, vectors = read_vectors(tmp_path / "out")
    np.testing.assert_allclose(vectors, model.encode_audio(paths), atol=1e-5)
