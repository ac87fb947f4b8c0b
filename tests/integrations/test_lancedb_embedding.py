"""audiovec in LanceDB's embedding registry: a table of audio paths made with the ``"audiovec"`` function
embeds them on ``add`` and a text query on ``search`` (the real lancedb, the built-in model, real FSDD
speech and synthesised sound events that the model tells apart); an ``audiovec index`` folder is
searchable by string from plain lancedb after ``import audiovec``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

lancedb = pytest.importorskip("lancedb")

from lancedb.embeddings import get_registry  # noqa: E402
from lancedb.pydantic import LanceModel, Vector  # noqa: E402

from audiovec.build.pretrained import DEFAULT_MODEL  # noqa: E402
from audiovec.data.fsdd import bundled_files as fsdd_files  # noqa: E402
from audiovec.lancedb_embedding import AudiovecEmbeddings, cached_model  # noqa: E402

QUERIES = {
    "speech": "a man speaking",
    "siren": "a siren wailing",
    "rain": "rain falling",
    "bell": "a bell ringing",
}
SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    """Two real FSDD recordings (speakers held out of the model's training) and one synthesised clip of each event kind, as WAV files."""
    import soundfile as sf

    from audiovec.demo.synth import events

    folder = tmp_path_factory.mktemp("clips")
    out = []
    for path in [p for p in fsdd_files() if p.stem.split("_")[1] in ("george", "yweweler")][::97][:2]:
        out.append(folder / f"speech_{path.name}")
        shutil.copy(path, out[-1])
    for kind in ("siren", "rain", "bell"):
        wave = getattr(events, kind)(np.random.default_rng(0), 0, 4.0).astype(np.float32)
        out.append(folder / f"{kind}.wav")
        sf.write(out[-1], wave, 16000)
    return out


def kind_of(path: str) -> str:
    return Path(path).name.split("_")[0].removesuffix(".wav")


def clip_table(db: Path, func: AudiovecEmbeddings, name: str = "clips"):
    class Clip(LanceModel):
        path: str = func.SourceField()
        vector: Vector(func.ndims()) = func.VectorField()  # type: ignore[valid-type]

    return lancedb.connect(str(db)).create_table(name, schema=Clip)


def test_the_registry_names_audiovec_and_a_table_of_paths_is_searched_by_text(clips, tmp_path) -> None:
    func = get_registry().get("audiovec").create()
    assert isinstance(func, AudiovecEmbeddings) and func.model == DEFAULT_MODEL and func.ndims() == 384
    table = clip_table(tmp_path / "db", func)
    table.add([{"path": str(p)} for p in clips])  # lancedb computes the vectors
    stored = table.to_arrow().to_pydict()
    model = cached_model(DEFAULT_MODEL)
    expected = model.encode_audio([str(p) for p in stored["path"]])
    np.testing.assert_allclose(np.asarray(stored["vector"]), expected, atol=1e-6)
    for kind, text in QUERIES.items():
        hits = table.search(text).distance_type("cosine").limit(2).to_list()
        assert kind_of(hits[0]["path"]) == kind, (text, [h["path"] for h in hits])
    speech = [kind_of(h["path"]) for h in table.search("a man speaking").limit(2).to_list()]
    assert speech == ["speech", "speech"]
    # an audio query (a Path, not a str) finds the clip itself
    hit = table.search(Path(clips[3])).distance_type("cosine").limit(1).to_list()[0]
    assert hit["path"] == str(clips[3]) and hit["_distance"] < 1e-5


def test_the_function_is_recreated_from_table_metadata_without_reloading_the_model(clips, tmp_path) -> None:
    func = get_registry().get("audiovec").create(model=DEFAULT_MODEL, dim=384)
    clip_table(tmp_path / "db", func).add([{"path": str(clips[0])}])
    table = lancedb.connect(str(tmp_path / "db")).open_table("clips")
    conf = table.embedding_functions["vector"]
    assert conf.source_column == "path" and conf.function.model == DEFAULT_MODEL
    assert conf.function.embedder() is cached_model(DEFAULT_MODEL)  # one load per process
    saved = json.loads(table.schema.metadata[b"embedding_functions"])
    assert saved == [
        {"name": "audiovec", "model": {"model": DEFAULT_MODEL, "dim": 384}, "source_column": "path",
         "vector_column": "vector"}
    ]  # fmt: skip


def test_an_unreadable_file_gets_no_vector_and_on_bad_vectors_drop_skips_it(clips, tmp_path) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    func = get_registry().get("audiovec").create(dim=384)
    assert func.compute_source_embeddings([str(bad), str(clips[2])])[0] is None
    table = clip_table(tmp_path / "db", func)
    with pytest.raises((ValueError, RuntimeError), match="on_bad_vectors"):
        table.add([{"path": str(bad)}])  # lancedb's default on_bad_vectors="error"
    table.add([{"path": str(bad)}, {"path": str(clips[2])}], on_bad_vectors="drop")
    assert table.to_arrow().column("path").to_pylist() == [str(clips[2])]


def test_a_query_of_an_unknown_type_names_what_to_pass() -> None:
    from audiovec.errors import ConfigError

    with pytest.raises(ConfigError, match="pass text"):
        get_registry().get("audiovec").create(dim=384).compute_query_embeddings(3.5)


@pytest.mark.parametrize(
    "imports", ["import audiovec; import lancedb", "import lancedb; import audiovec", "import audiovec"]
)
def test_import_audiovec_registers_the_name_in_either_order_without_importing_lancedb(imports) -> None:
    script = (
        f"import sys; {imports}; assert ('lancedb' in sys.modules) == ('lancedb' in {imports!r}); "
        "from lancedb.embeddings import get_registry; print(get_registry().get('audiovec').__name__)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=_env(), check=False
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "AudiovecEmbeddings", proc.stderr[-2000:]


@pytest.mark.slow
def test_an_audiovec_index_is_searched_by_string_from_plain_lancedb(clips, tmp_path) -> None:
    """``audiovec index`` then, in a fresh interpreter, only ``import audiovec, lancedb``: a string search
    returns the right file; without ``import audiovec`` a vector search still reads the table."""
    from audiovec.cli import main

    folder = tmp_path / "clips"
    folder.mkdir()
    for path in clips:
        shutil.copy(path, folder / path.name)
    assert main(["index", str(folder), "--db", str(tmp_path / "db")]) == 0
    found = _string_search(tmp_path / "db")
    for kind, text in QUERIES.items():
        assert kind_of(found[text][0]) == kind, (text, found[text])
    assert [kind_of(p) for p in found["a man speaking"]] == ["speech", "speech"]
    plain = textwrap.dedent(
        f"""
        import lancedb
        table = lancedb.connect({str(tmp_path / "db")!r}).open_table("windows")
        print(len(table.search([0.05] * 384).limit(3).to_list()))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", plain], capture_output=True, text=True, env=_env(), timeout=300, check=False
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "3", proc.stderr[-2000:]


def test_an_index_from_before_the_metadata_gains_it_on_the_next_index_run(clips, tmp_path, capsys) -> None:
    """A table without ``embedding_functions`` metadata (as older audiovec wrote it, with an HNSW sidecar)
    gets it from the next ``audiovec index`` over the same files: nothing re-embedded, the rows and their
    vectors the same, plain lancedb then searches it by string, and the sidecar follows the new row ids."""
    from audiovec.apps.index import AudioIndex
    from audiovec.cli import main
    from audiovec.model import AudioTextEmbedder

    folder, db = tmp_path / "clips", tmp_path / "db"
    folder.mkdir()
    for path in clips:
        shutil.copy(path, folder / path.name)
    assert main(["index", str(folder), "--db", str(db)]) == 0
    AudioIndex(db).build_index("hnsw")
    table = lancedb.connect(str(db)).open_table("windows")
    before = table.to_arrow().sort_by("path")
    stripped = {k: v for k, v in (table.schema.metadata or {}).items() if k != b"embedding_functions"}
    lancedb.connect(str(db)).create_table(
        "windows", data=before.replace_schema_metadata(stripped or None), mode="overwrite"
    )
    assert b"embedding_functions" not in (
        lancedb.connect(str(db)).open_table("windows").schema.metadata or {}
    )
    capsys.readouterr()
    assert main(["index", str(folder), "--db", str(db)]) == 0
    assert "0 added, 0 re-indexed, 5 unchanged, 0 failed, 0 windows written" in capsys.readouterr().out
    table = lancedb.connect(str(db)).open_table("windows")
    assert b"embedding_functions" in table.schema.metadata
    after = table.to_arrow().sort_by("path")
    assert after.drop_columns(["vector"]).equals(before.drop_columns(["vector"]))
    np.testing.assert_array_equal(
        np.asarray(after["vector"].to_pylist()), np.asarray(before["vector"].to_pylist())
    )
    found = _string_search(db)
    for kind, text in QUERIES.items():
        assert kind_of(found[text][0]) == kind, (text, found[text])
    model = AudioTextEmbedder.from_pretrained(DEFAULT_MODEL)
    index = AudioIndex(db)
    assert index.has_ann() and kind_of(index.search_text(model, "a siren wailing", k=1)[0].path) == "siren"
    assert index.add_embedding_metadata() is False  # once is enough


def _string_search(db: Path) -> dict[str, list[str]]:
    """The top-2 paths per query of a string search from a fresh interpreter with only audiovec + lancedb."""
    script = textwrap.dedent(
        f"""
        import json, sys
        import audiovec, lancedb
        table = lancedb.connect({str(db)!r}).open_table("windows")
        out = {{q: [h["path"] for h in table.search(q).limit(2).to_list()] for q in {list(QUERIES.values())!r}}}
        print(json.dumps(out))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _env() -> dict[str, str]:
    import os

    return {
        **os.environ,
        "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
    }
