"""LanceDB index on real FSDD audio: windows of long files, incremental runs, bad files, kills, ANN, CLI."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import audiovec.apps.index.rows as index_rows
from audiovec.apps.index import (
    AudioIndex,
    IndexStoreError,
    embed_source,
    embed_windows,
    file_sha256,
    model_fingerprint,
    pool_windows,
)
from audiovec.audio import SAMPLE_RATE, load_audio
from audiovec.cli import main
from audiovec.data.fsdd import bundled_files as fsdd_files
from audiovec.model import AudioTextEmbedder
from audiovec.tiny import save_tiny_embedder, tiny_embedder
from helpers.badaudio import fail_decoding_after


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> AudioTextEmbedder:
    return AudioTextEmbedder.from_pretrained(tiny_model_dir)


@pytest.fixture()
def clips(tmp_path: Path, fsdd_clips: list[Path]) -> list[Path]:
    """Copies of real recordings in a folder the test may modify."""
    folder = tmp_path / "clips"
    folder.mkdir()
    return [Path(shutil.copy(c, folder / c.name)) for c in fsdd_clips[:6]]


@pytest.fixture()
def long_file(tmp_path: Path) -> Path:
    """~6.7 s of real speech (twelve recordings back to back) at 16 kHz."""
    wave = np.concatenate([load_audio(f) for f in fsdd_files(12)])
    path = tmp_path / "long.wav"
    sf.write(path, wave, SAMPLE_RATE)
    return path


def stored(index: AudioIndex) -> list[dict]:
    return index.rows(["path", "window", "n_windows", "start", "end", "hash"]).to_pylist()


def assert_consistent(index: AudioIndex, expected_paths: set[str]) -> None:
    """Every file exactly once: windows 0..n-1 with no duplicate and no gap."""
    rows = stored(index)
    keys = Counter((r["path"], r["window"]) for r in rows)
    assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1]
    by_path: dict[str, set[int]] = {}
    for r in rows:
        by_path.setdefault(r["path"], set()).add(r["window"])
        assert r["window"] < r["n_windows"]
    assert set(by_path) == expected_paths
    for path, windows in by_path.items():
        n = next(r["n_windows"] for r in rows if r["path"] == path)
        assert windows == set(range(n)), path


def test_long_file_is_one_row_per_window_and_searchable_by_segment(pretrained_model_dir, long_file, tmp_path):
    model = AudioTextEmbedder.from_pretrained(
        pretrained_model_dir
    )  # tells the windows apart (cosine <= 0.91)
    index = AudioIndex(tmp_path / "db")
    report = index.add(model, [long_file], window_seconds=2.0)
    assert report.added == [str(long_file)] and not report.failed
    duration = sf.info(long_file).frames / SAMPLE_RATE
    rows = sorted(stored(index), key=lambda r: r["window"])
    assert len(rows) == int(np.ceil(duration / 2.0)) == rows[0]["n_windows"]
    assert rows[0]["start"] == 0.0 and rows[-1]["end"] == pytest.approx(duration, abs=1e-3)
    for a, b in zip(rows, rows[1:]):
        assert a["end"] == pytest.approx(b["start"])
    # querying with the third window's own audio finds that window, with its span
    wave = load_audio(long_file)
    query = embed_windows(model, [wave[4 * SAMPLE_RATE : 6 * SAMPLE_RATE]])[0]
    hits = index.search(query, k=2)
    assert (hits[0].path, hits[0].window, hits[0].start, hits[0].end) == (str(long_file), 2, 4.0, 6.0)
    assert hits[0].score == pytest.approx(1.0, abs=1e-4) and hits[1].score < 0.95


def test_short_file_row_equals_library_vector_and_text_search_ranks_by_cosine(
    pretrained_model_dir, clips, tmp_path
):
    model = AudioTextEmbedder.from_pretrained(pretrained_model_dir)  # spread vectors: the order is asserted
    index = AudioIndex(tmp_path / "db")
    index.add(model, clips)
    vectors = model.encode_audio([str(c) for c in clips])
    for clip, vector in zip(clips[:2], vectors):
        hits = index.search(vector, k=2)
        assert hits[0].path == str(clip) and hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert hits[1].score < 0.99  # the next clip is another recording, not a tie
    text = model.encode_text("a man saying zero")
    hits = index.search(text, k=len(clips))
    expected = model.similarity(text, vectors)[0]
    assert np.diff(np.sort(expected)).min() > 1e-4  # no near-ties: the order below is meaningful
    assert [h.path for h in hits] == [str(clips[i]) for i in np.argsort(-expected)]
    assert [h.score for h in hits] == pytest.approx(sorted(expected, reverse=True), abs=1e-4)


def test_rerun_adds_nothing_and_changed_file_is_reindexed(model, clips, tmp_path):
    index = AudioIndex(tmp_path / "db")
    first = index.add(model, [clips[0].parent])
    assert len(first.added) == len(clips)
    again = index.add(model, [clips[0].parent])
    assert again.rows_added == 0 and len(again.skipped) == len(clips) and index.count() == len(clips)
    other = fsdd_files(digits="9")[0]
    shutil.copy(other, clips[0])  # the file changes on disk
    third = index.add(model, [clips[0].parent])
    assert third.replaced == [str(clips[0])] and len(third.skipped) == len(clips) - 1
    assert index.count() == len(clips)
    assert_consistent(index, {str(c) for c in clips})
    row = next(r for r in index.rows(["path", "hash", "vector"]).to_pylist() if r["path"] == str(clips[0]))
    assert row["hash"] == file_sha256(other)
    np.testing.assert_allclose(row["vector"], model.encode_audio(str(other)), atol=1e-5)


def test_bad_files_are_reported_and_skipped(model, clips, tmp_path):
    folder = clips[0].parent
    (folder / "empty.wav").write_bytes(b"")
    (folder / "noise.wav").write_bytes(os.urandom(2000))
    (folder / "notes.mp3").write_text("not audio at all\n")
    missing = tmp_path / "missing.wav"
    report = AudioIndex(tmp_path / "db").add(model, [folder, missing])
    assert set(report.failed) == {str(folder / n) for n in ("empty.wav", "noise.wav", "notes.mp3")} | {
        str(missing)
    }
    assert all(reason for reason in report.failed.values())
    assert sorted(report.added) == sorted(str(c) for c in clips)


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from audiovec.apps.index import AudioIndex
    from audiovec.model import AudioTextEmbedder
    model = AudioTextEmbedder.from_pretrained(sys.argv[1])
    def committed(report):
        print("committed", len(report.added), flush=True)
        time.sleep(float(sys.argv[3]))
    AudioIndex(sys.argv[2]).add(model, sys.argv[4:], model_dir=sys.argv[1], batch_files=2,
                                window_seconds=2.0, on_commit=committed)
    print("done", flush=True)
    """
)


def _run_and_kill(
    script: Path, args: list[str], after_commits: int | None, delay: float | None = None
) -> int:
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, text=True)
    commits = 0
    try:
        if after_commits is not None:
            for line in proc.stdout:  # bounded: the script ends by itself
                if line.startswith("committed"):
                    commits += 1
                    if commits >= after_commits:
                        break
        else:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
    return commits


def test_killed_run_resumes_without_duplicates_or_losses(tiny_model_dir, model, clips, long_file, tmp_path):
    script = tmp_path / "run_index.py"
    script.write_text(KILL_SCRIPT)
    db = tmp_path / "db"
    files = [str(long_file), *map(str, clips)]
    commits = _run_and_kill(script, [str(tiny_model_dir), str(db), "30", *files], after_commits=1)
    assert commits == 1
    index = AudioIndex(db)
    partial = {r["path"] for r in stored(index)}
    assert 0 < len(partial) < len(files)  # really killed mid-way
    assert_consistent(index, partial)
    report = AudioIndex(db).add(model, files, window_seconds=2.0)
    assert sorted(report.skipped) == sorted(partial)
    assert sorted(report.added) == sorted(set(files) - partial)
    assert_consistent(AudioIndex(db), set(files))
    assert AudioIndex(db).meta()["model_dir"] == os.path.abspath(tiny_model_dir)


@pytest.mark.slow
def test_repeated_random_kills_never_duplicate(tiny_model_dir, model, clips, long_file, tmp_path):
    script = tmp_path / "run_index.py"
    script.write_text(KILL_SCRIPT)
    db = tmp_path / "db"
    files = [str(long_file), *map(str, clips)]
    rng = random.Random(0)
    for _ in range(6):
        _run_and_kill(script, [str(tiny_model_dir), str(db), "0", *files], None, delay=rng.uniform(3.0, 12.0))
        if AudioIndex(db).count():
            assert_consistent(AudioIndex(db), {r["path"] for r in stored(AudioIndex(db))})
    AudioIndex(db).add(model, files, window_seconds=2.0)
    assert_consistent(AudioIndex(db), set(files))


def test_ann_index_is_built_past_threshold_and_agrees_with_exact_search(
    pretrained_model_dir, clips, long_file, tmp_path
):
    model = AudioTextEmbedder.from_pretrained(pretrained_model_dir)  # spread vectors: the paths must agree
    exact = AudioIndex(tmp_path / "exact")
    exact.add(model, [*clips, long_file], window_seconds=2.0, ann_threshold=10**9)
    ann = AudioIndex(tmp_path / "ann")
    report = ann.add(model, [*clips, long_file], window_seconds=2.0, ann_threshold=5)
    assert report.ann_built and ann.has_ann() and not exact.has_ann()
    for clip in clips[:3]:
        query = model.encode_audio(str(clip))
        found, truth = ann.search(query, k=3), exact.search(query, k=3)
        assert [(h.path, h.window) for h in found] == [(h.path, h.window) for h in truth]
        assert found[0].path == str(clip) and found[0].score == pytest.approx(1.0, abs=1e-4)
        assert [h.score for h in found] == pytest.approx([h.score for h in truth], abs=1e-4)
        # explicit search effort: the smallest ef is raised to what re-ranking needs, the largest agrees too
        for nprobes, ef in ((1, 1), (64, 2000)):
            tuned = ann.search(query, k=3, nprobes=nprobes, ef=ef)
            assert len(tuned) == 3 and tuned[0].path == str(clip)
    with pytest.raises(ValueError, match="ef must be >= 1"):
        ann.search(query, k=3, ef=0)


def test_index_built_by_another_model_is_refused(model, clips, tmp_path):
    index = AudioIndex(tmp_path / "db")
    index.add(model, clips[:2])
    other = AudioTextEmbedder.from_pretrained(save_tiny_embedder(tmp_path / "other", seed=7))
    assert model_fingerprint(other) != model_fingerprint(model)
    with pytest.raises(IndexStoreError, match="another model"):
        index.add(other, clips[:2])
    with pytest.raises(IndexStoreError, match="another model"):
        index.check_model(other)
    report = index.add(other, clips[:2], rebuild=True)
    assert len(report.added) == 2 and index.count() == 2


def test_cli_index_then_search_text_and_audio(pretrained_model_dir, clips, tmp_path, capsys):
    db = tmp_path / "db"
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF")
    assert (
        main(["index", str(pretrained_model_dir), str(clips[0].parent), str(bad), "--db", str(db), "--json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert len(report["added"]) == len(clips) and list(report["failed"]) == [str(bad)]
    assert main(["search", "--db", str(db), "a man saying one", "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and {"path", "start", "end", "score"} <= set(hits[0])
    assert main(["search", "--db", str(db), "--audio", str(clips[1]), "-k", "1", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)[0]
    assert top["path"] == str(clips[1]) and top["score"] == pytest.approx(1.0, abs=1e-4)
    assert main(["search", "--db", str(tmp_path / "nothing"), "dog"]) == 1


def test_cli_index_ann_switches_between_the_hnsw_graph_and_lancedb(
    pretrained_model_dir, clips, tmp_path, capsys
):
    """``--ann hnsw`` builds the sidecar graph at any size, instead of LanceDB's index even past the threshold,
    and search goes through it (a clip finds itself); a later run without ``--ann`` keeps it in sync;
    ``--ann lancedb`` drops it for LanceDB's own index past the threshold. A quantised index refuses a graph
    before anything is embedded."""
    from audiovec import ann

    db = tmp_path / "db"
    base = ["index", str(pretrained_model_dir), "--db", str(db), "--json", "--ann-threshold", "1"]
    assert main([*base, *map(str, clips[:3]), "--ann", "hnsw"]) == 0
    assert json.loads(capsys.readouterr().out)["ann_built"] is True and ann.exists(db)
    assert not AudioIndex(db).table().list_indices()  # no LanceDB index trained for nothing
    assert main([*base, *map(str, clips)]) == 0  # no --ann: the graph stays and follows the new rows
    capsys.readouterr()
    index = AudioIndex(db)
    assert ann.exists(db) and len(ann.sidecar(index).graph) == index.count() > 3
    assert main(["search", "--db", str(db), "--audio", str(clips[-1]), "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["path"] == str(clips[-1])
    assert main([*base, *map(str, clips), "--ann", "lancedb"]) == 0
    assert json.loads(capsys.readouterr().out)["ann_built"] is True and not ann.exists(db)
    assert AudioIndex(db).has_ann()
    quantised = tmp_path / "int8"
    argv = [
        "index",
        str(pretrained_model_dir),
        *map(str, clips),
        "--db",
        str(quantised),
        "--precision",
        "int8",
    ]
    assert main([*argv, "--ann", "hnsw"]) == 1
    assert "HNSW graph searches float32" in capsys.readouterr().err and AudioIndex(quantised).count() == 0


def test_writer_refuses_another_vector_size_before_touching_the_metadata(model, clips, tmp_path):
    index = AudioIndex(tmp_path / "db")
    index.add(model, clips[:2])
    meta = index.meta()
    with pytest.raises(IndexStoreError, match=f"stores {model.embedding_dim}-d vectors"):
        index.writer(meta["fingerprint"], meta["window_seconds"], model.embedding_dim // 2)
    assert index.meta() == meta


def test_embed_source_equals_encode_audio_for_long_file(model, long_file):
    streamed = embed_source(model, long_file, window_seconds=model.config.window_seconds)
    assert np.dot(streamed, model.encode_audio(str(long_file))) == pytest.approx(1.0, abs=1e-5)


SHARD_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch.distributed as dist
    from audiovec.apps.index import AudioIndex
    from audiovec.model import AudioTextEmbedder
    dist.init_process_group("gloo")
    model = AudioTextEmbedder.from_pretrained(sys.argv[1])
    report = AudioIndex(sys.argv[2]).add(model, sys.argv[3:], model_dir=sys.argv[1], window_seconds=2.0)
    print("rank", dist.get_rank(), "failed", len(report.failed), flush=True)
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_sharded_index_under_torchrun_writes_one_table(tiny_model_dir, model, clips, long_file, tmp_path):
    script = tmp_path / "shard.py"
    script.write_text(SHARD_SCRIPT)
    db = tmp_path / "db"
    files = [str(long_file), *map(str, clips), str(tmp_path / "missing.wav")]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    out = subprocess.run(
        [*cmd, str(script), str(tiny_model_dir), str(db), *files], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert_consistent(AudioIndex(db), set(files[:-1]))
    single = AudioIndex(tmp_path / "single")
    single.add(model, files[:-1], window_seconds=2.0)
    query = model.encode_audio(str(clips[2]))
    # scores, not paths: the tiny random model gives some different clips the same vector (ties in any order)
    sharded, alone = AudioIndex(db).search(query, 4), single.search(query, 4)
    assert [h.score for h in sharded] == pytest.approx([h.score for h in alone], abs=1e-5)


@pytest.fixture(scope="module")
def padded_model() -> AudioTextEmbedder:
    """Short clips padded with 3 s of silence before the tower (``min_seconds``); only the clip is pooled."""
    return tiny_embedder(min_seconds=3.0)


def test_min_seconds_rows_and_search_equal_encode_audio(padded_model, clips, long_file, tmp_path):
    """Index rows go through forward_audio with content_lengths, as encode_audio does: a short clip's row,
    its search score and a long file's pooled rows all equal encode_audio (silence padding not pooled)."""
    short = clips[0]
    assert sf.info(short).duration < 3.0
    expected = padded_model.encode_audio(str(short))
    batch = padded_model.featurize([load_audio(short)])
    unmasked = padded_model.forward_audio(batch["features"], batch["lengths"])[0].detach().numpy()
    assert np.abs(unmasked - expected).max() > 1e-3  # the padding would change the vector if pooled

    index = AudioIndex(tmp_path / "db")
    index.add(padded_model, [short, long_file], window_seconds=2.0)
    rows = index.rows(["path", "start", "end", "window", "vector"]).to_pylist()
    (row,) = [r for r in rows if r["path"] == str(short)]
    np.testing.assert_allclose(row["vector"], expected, atol=1e-5)
    hit = index.search(expected, k=1)[0]
    assert hit.path == str(short) and hit.score == pytest.approx(1.0, abs=1e-5)

    windows = sorted((r for r in rows if r["path"] == str(long_file)), key=lambda r: r["window"])
    assert len(windows) == 4 and windows[-1]["end"] - windows[-1]["start"] < 2.0  # a short tail window
    pooled = pool_windows(np.array([r["vector"] for r in windows]), [r["end"] - r["start"] for r in windows])
    two_second = tiny_embedder(min_seconds=3.0, window_seconds=2.0)
    np.testing.assert_allclose(pooled, two_second.encode_audio(str(long_file)), atol=1e-5)


def test_indexing_streams_windows_batch_by_batch(model, long_file, tmp_path, monkeypatch):
    """Windows are embedded batch_size at a time as iter_windows yields them (never the whole file's list),
    with the same rows as embedding the whole file's windows at once."""
    real_windows, real_embed = index_rows.iter_windows, index_rows.embed_windows
    events: list[tuple[str, int]] = []

    def counting_windows(*args, **kwargs):
        for window in real_windows(*args, **kwargs):
            events.append(("yielded", 1))
            yield window

    def counting_embed(model_, waves, batch_size=16, peak=None):
        events.append(("embedded", len(waves)))
        return real_embed(model_, waves, batch_size, peak)

    monkeypatch.setattr(index_rows, "iter_windows", counting_windows)
    monkeypatch.setattr(index_rows, "embed_windows", counting_embed)
    index = AudioIndex(tmp_path / "db")
    report = index.add(model, [long_file], window_seconds=1.0, batch_size=3)
    assert report.added == [str(long_file)] and report.rows_added == 7
    held = pending = 0
    for kind, n in events:  # windows decoded but not yet embedded never exceed one batch
        pending += n if kind == "yielded" else -n
        held = max(held, pending)
    assert held == 3 and pending == 0
    assert [n for kind, n in events if kind == "embedded"] == [3, 3, 1]

    rows = sorted(
        index.rows(["window", "n_windows", "start", "end", "vector"]).to_pylist(), key=lambda r: r["window"]
    )
    windows = list(real_windows(str(long_file), 1.0))
    assert [(r["start"], r["end"]) for r in rows] == [(s, e) for s, e, _ in windows]
    assert {r["n_windows"] for r in rows} == {7}
    peak = model.stream_peak(str(long_file), 1.0)  # floored at the file's peak, as encode_audio does
    assert model.config.log_mel_floor == "file" and peak is not None
    np.testing.assert_allclose(
        [r["vector"] for r in rows], real_embed(model, [w for *_, w in windows], peak=peak), atol=1e-6
    )


def test_file_failing_mid_stream_leaves_no_rows_and_keeps_its_old_ones(
    model, clips, long_file, tmp_path, monkeypatch
):
    """Rows are written only once a file's last window is embedded: a read error after two windows is a
    reported failure with nothing written, the other files are indexed, and a changed file that fails keeps
    its complete older rows (then is re-indexed once readable)."""
    index = AudioIndex(tmp_path / "db")
    index.add(model, [long_file], window_seconds=1.0)
    old = {r["window"]: r["vector"] for r in index.rows(["window", "vector"]).to_pylist()}
    with sf.SoundFile(str(long_file), "r+") as handle:  # the file changes: re-indexing is due
        handle.seek(0)
        handle.write(np.zeros(SAMPLE_RATE // 2, dtype=np.float32))
    fail_decoding_after(monkeypatch, long_file, 2)
    report = index.add(model, [long_file, *clips[:2]], window_seconds=1.0, batch_size=1)
    assert report.failed == {str(long_file): "failed after 2.0 s: [Errno 5] Input/output error"}
    assert sorted(report.added) == sorted(map(str, clips[:2])) and report.rows_added == 2
    kept = [
        r for r in index.rows(["path", "window", "hash", "vector"]).to_pylist() if r["path"] == str(long_file)
    ]
    assert {r["window"]: r["vector"] for r in kept} == old and len(kept) == 7
    assert {r["hash"] for r in kept} != {file_sha256(long_file)}
    assert_consistent(index, {str(long_file), *map(str, clips[:2])})

    monkeypatch.undo()  # readable again
    again = index.add(model, [long_file, *clips[:2]], window_seconds=1.0)
    assert again.replaced == [str(long_file)] and len(again.skipped) == 2
    assert {r["hash"] for r in index.rows(["path", "hash"]).to_pylist() if r["path"] == str(long_file)} == {
        file_sha256(long_file)
    }
    assert_consistent(index, {str(long_file), *map(str, clips[:2])})


def test_non_finite_window_vectors_fail_the_file_without_rows(model, clips, long_file, tmp_path, monkeypatch):
    """A batch of non-finite vectors midway ends the file (the rest is not decoded): reported, no rows."""
    real = index_rows.embed_windows
    calls: list[int] = []

    def nan_second_batch(model_, waves, batch_size=16, peak=None):
        calls.append(len(waves))
        out = real(model_, waves, batch_size, peak)
        return np.full_like(out, np.nan) if len(calls) == 2 else out

    monkeypatch.setattr(index_rows, "embed_windows", nan_second_batch)
    index = AudioIndex(tmp_path / "db")
    report = index.add(model, [long_file, clips[0]], window_seconds=1.0, batch_size=2)
    assert report.failed == {str(long_file): "the model produced non-finite vectors"}
    assert report.added == [str(clips[0])] and calls == [2, 2, 1]  # clips[0]: one window, after the stop
    assert {r["path"] for r in index.rows(["path"]).to_pylist()} == {str(clips[0])}
