"""Reading sound files straight out of a real .deb (built here with ``dpkg-deb --build``), including files
without an extension that are audio only by their header (Blob Wars ships ``sound/rain``)."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiovec.audio import load_audio
from audiovec.demo.corpus.archives import sounds_like_audio
from audiovec.demo.corpus.debian import iter_members

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian/Ubuntu)")


def _encoded(fmt: str, seconds: float = 0.5) -> bytes:
    t = np.arange(int(16000 * seconds)) / 16000
    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(2 * np.pi * 440 * t), 16000, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pkg")
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(
        "Package: audiovec-test-sounds\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: audiovec tests <t@example.org>\nDescription: test sounds\n"
    )
    files = {
        "usr/share/games/x/sound/rain": _encoded("WAV"),  # WAV without an extension
        "usr/share/games/x/music/hub": _encoded("OGG"),  # Ogg without an extension
        "usr/share/games/x/sound/beep.wav": _encoded("WAV"),
        "usr/share/games/x/sound/readme": b"not a sound at all, just some text\n",
        "usr/share/games/x/sound/tiny": b"RIFF",  # shorter than a header
        "usr/share/games/x/gfx/logo.png": b"\x89PNG\r\n\x1a\n" + b"\0" * 32,
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    out = tmp_path_factory.mktemp("deb") / "audiovec-test-sounds_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(out)], check=True,
                   capture_output=True)  # fmt: skip
    return out


def test_audio_is_found_by_extension_or_by_header(deb: Path) -> None:
    members = {m.path: m.data for m in iter_members("audiovec-test-sounds", deb)}
    assert sorted(members) == [
        "usr/share/games/x/music/hub",
        "usr/share/games/x/sound/beep.wav",
        "usr/share/games/x/sound/rain",
    ]
    for data in members.values():  # whole files, decodable by the corpus's own loader
        wave = load_audio(io.BytesIO(data))
        assert abs(wave.shape[0] / 16000 - 0.5) < 0.01


def test_headers_that_count_as_audio() -> None:
    assert sounds_like_audio(_encoded("WAV")[:12]) and sounds_like_audio(_encoded("OGG")[:12])
    assert sounds_like_audio(_encoded("FLAC")[:12]) and sounds_like_audio(_encoded("AIFF")[:12])
    assert not sounds_like_audio(b"RIFF\0\0\0\0AVI ")  # a RIFF container that is not WAVE
    assert not sounds_like_audio(b"\x89PNG\r\n\x1a\n\0\0\0\0") and not sounds_like_audio(b"")
