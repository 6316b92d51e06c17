"""The compiled-loop cache cannot be used to run someone else's code inside gradviz.

gradviz loads a shared library from its cache folder (gradviz/engine/native/build.py). It
loads one only from a folder of the current user's that no one else may enter (mode 0700)
and only a regular file of the user's that no one else may write; a folder planted at the
predictable fallback path in the temporary directory, a symbolic link planted there, a
library of someone else's or one that others may write are never loaded. Each planted
library here is real: loading it would write a marker file (the first test shows it does).

The tests run as root (as this project's do), so "someone else" is uid 65534 via chown.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from gradviz.engine import native
from gradviz.engine.native import build, checkcache

OTHER_UID = 65534          # "nobody": a user that is not the one running the tests

pytestmark = [
    pytest.mark.skipif(not build.find_compiler(), reason="no C compiler on this machine"),
    pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0,
                       reason="planting files owned by another user needs root"),
]

PLANTED_C = r"""
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(MARKER, "w");
    if (f) { fputs("the planted library ran", f); fclose(f); }
}
"""


@pytest.fixture
def planted(tmp_path):
    """(bytes of a shared library that writes ``marker`` when loaded, marker path)."""
    source, lib, marker = tmp_path / "planted.c", tmp_path / "planted.so", tmp_path / "RAN"
    source.write_text(PLANTED_C)
    subprocess.run([build.find_compiler(), f'-DMARKER="{marker}"', "-shared", "-fPIC",
                    "-o", str(lib), str(source)], check=True, capture_output=True)
    data = lib.read_bytes()
    lib.unlink()
    return data, marker


def library_name() -> str:
    """The file name gradviz looks for first (the first flag set's build)."""
    return build.library_name(build.SOURCE.read_bytes(), build.find_compiler(),
                              build.FLAG_SETS[0])


def plant(folder: Path, data: bytes, *, uid: int | None = None, mode: int = 0o755) -> Path:
    target = folder / library_name()
    target.write_bytes(data)
    os.chmod(target, mode)
    if uid is not None:
        os.chown(target, uid, uid)
    return target


@pytest.fixture
def no_home_cache(tmp_path, monkeypatch):
    """~/.cache cannot be written (a file is in the way): the cache falls back to the
    temporary directory, here tmp_path/tmp. Returns the fallback path."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    return tmp_path / "tmp" / f"gradviz-cache-{os.getuid()}"


def test_the_planted_library_really_runs_when_loaded(tmp_path, planted):
    """Proof that the tests below would see a planted library that was loaded."""
    data, marker = planted
    lib = tmp_path / "lib.so"
    lib.write_bytes(data)
    ctypes.CDLL(str(lib))
    assert marker.exists()


@pytest.mark.parametrize("how", ["a folder of another user", "a symbolic link"])
def test_nothing_planted_at_the_fallback_path_is_loaded(tmp_path, planted, no_home_cache, how):
    data, marker = planted
    if how == "a folder of another user":
        no_home_cache.mkdir()
        plant(no_home_cache, data, uid=OTHER_UID)
        os.chmod(no_home_cache, 0o777)
        os.chown(no_home_cache, OTHER_UID, OTHER_UID)
        reason = f"belongs to uid {OTHER_UID}"
    else:
        # Even a link to a private folder holding a library that passes every other check.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        plant(elsewhere, data, mode=0o700)
        no_home_cache.symlink_to(elsewhere)
        os.lchown(no_home_cache, OTHER_UID, OTHER_UID)
        reason = "is a symbolic link"
    kernels, status = native.load()
    assert not marker.exists(), "a planted library was loaded"
    assert kernels is None
    assert str(no_home_cache) in status and reason in status
    assert status.endswith("using PyTorch operations")


@pytest.mark.parametrize("owner,mode,reason", [
    (OTHER_UID, 0o755, f"belongs to uid {OTHER_UID}"),
    (None, 0o775, "others may write it"),
    (None, 0o757, "others may write it"),
])
@pytest.mark.slow
def test_a_library_others_could_have_written_is_rebuilt_not_loaded(tmp_path, monkeypatch,
                                                                   planted, owner, mode, reason):
    data, marker = planted
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "gradviz").mkdir(mode=0o700)
    target = plant(tmp_path / "gradviz", data, uid=owner, mode=mode)
    kernels, status = native.load()
    assert not marker.exists(), "a planted library was loaded"
    assert kernels is not None, status
    assert f"rebuilt {target.name}" in status and reason in status
    st = target.stat()
    assert st.st_uid == os.getuid() and not st.st_mode & 0o022


@pytest.mark.slow
def test_a_cache_folder_open_to_others_is_made_private_and_its_builds_rebuilt(
        tmp_path, monkeypatch, planted):
    """Anyone could have put or renamed a file into a folder with mode 0777, even one that
    now looks like the user's own: its builds are not trusted."""
    data, marker = planted
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = tmp_path / "gradviz"
    folder.mkdir()
    os.chmod(folder, 0o777)
    plant(folder, data, mode=0o700)
    kernels, status = native.load()
    assert not marker.exists(), "a library from a folder open to others was loaded"
    assert kernels is not None, status
    assert folder.stat().st_mode & 0o777 == 0o700
    assert "was open to others" in status


@pytest.mark.slow
def test_a_fresh_cache_is_private_even_under_a_permissive_umask(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    old = os.umask(0o002)
    try:
        kernels, status = native.load()
    finally:
        os.umask(old)
    assert kernels is not None, status
    folder = tmp_path / "gradviz"
    assert folder.stat().st_mode & 0o777 == 0o700
    library, record, passed = sorted(folder.iterdir())
    assert record == build.record_path(library)
    assert passed == checkcache.result_path(library)      # the self-check's pass
    assert not library.stat().st_mode & 0o022
    assert not record.stat().st_mode & 0o077 and not passed.stat().st_mode & 0o077
    assert status == f"compiled loops in use ({' '.join(build.FLAG_SETS[0])}, {library})"


@pytest.mark.slow
def test_the_fallback_folder_is_created_private(tmp_path, no_home_cache):
    kernels, status = native.load()
    assert kernels is not None, status
    st = os.lstat(no_home_cache)
    assert st.st_uid == os.getuid() and st.st_mode & 0o777 == 0o700
    assert str(no_home_cache) in status


# -- a build cut short (issue 20, point 3) --------------------------------------------------
PROBE = ("from gradviz.engine import native; k, s = native.load(); "
         "print('LOADED' if k is not None else 'TORCH'); print(s)")


def probe_in_child(cache: Path, **env) -> subprocess.CompletedProcess:
    """native.load() in a child process whose cache is ``cache``/gradviz: a SIGBUS there
    shows as a return code, not as the death of the test run."""
    import sys

    full = {**os.environ, "XDG_CACHE_HOME": str(cache), **env}
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=300, env=full)


@pytest.fixture
def built_cache(tmp_path):
    """A cache holding a whole build (and its record), made by a child process."""
    first = probe_in_child(tmp_path)
    assert first.returncode == 0 and first.stdout.startswith("LOADED"), first.stderr[-500:]
    target = tmp_path / "gradviz" / library_name()
    assert target.exists() and build.record_path(target).exists()
    return tmp_path, target


@pytest.mark.slow
@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.9])
def test_a_library_cut_short_is_rebuilt_not_loaded(built_cache, fraction):
    cache, target = built_cache
    whole = target.read_bytes()
    cut = int(len(whole) * fraction)
    subprocess.run(f"head -c {cut} {target} > {target}.cut && mv {target}.cut {target}",
                   shell=True, check=True)
    os.chmod(target, 0o700)
    assert target.stat().st_size == cut
    child = probe_in_child(cache)
    assert child.returncode == 0, f"exit {child.returncode}: {child.stderr[-500:]}"
    lines = child.stdout.splitlines()
    assert lines[0] == "LOADED"
    assert f"rebuilt {target.name}: it is {cut} bytes, its build wrote {len(whole)}" in lines[1]
    assert target.stat().st_size == len(whole)


@pytest.mark.slow
def test_a_damaged_library_that_cannot_be_rebuilt_means_the_pytorch_path(built_cache, tmp_path):
    cache, built = built_cache
    failing = tmp_path / "cc-fails"
    failing.write_text("#!/bin/sh\necho 'cc: broken' >&2\nexit 1\n")
    failing.chmod(0o755)
    # The build named for that compiler: a whole one, then damaged.
    target = built.with_name(build.library_name(build.SOURCE.read_bytes(), str(failing),
                                                build.FLAG_SETS[0]))
    build.record_path(target).write_bytes(build.record_path(built).read_bytes())
    data = bytearray(built.read_bytes())
    data[len(data) // 2] ^= 0xFF                 # same size, other contents
    target.write_bytes(bytes(data))
    os.chmod(target, 0o700)
    child = probe_in_child(cache, CC=str(failing))
    assert child.returncode == 0, f"exit {child.returncode}: {child.stderr[-500:]}"
    lines = child.stdout.splitlines()
    assert lines[0] == "TORCH"
    assert "its contents differ from its build's" in lines[1]
    assert "using PyTorch operations" in lines[1]


def test_a_build_without_its_record_is_not_loaded(tmp_path, monkeypatch):
    """A library with no record (a crash between the rename and the record, or one put
    there by hand) is refused before ctypes maps it."""
    target = tmp_path / "native-0000.so"
    target.write_bytes(b"\x7fELF not really")
    os.chmod(target, 0o700)
    with pytest.raises(build.DamagedLibrary, match="no record of a whole build"):
        build.load_library(target)
    build.record_path(target).write_text('{"size": 3, "sha256": "00"}')
    with pytest.raises(build.DamagedLibrary, match="its build wrote 3"):
        build.load_library(target)
