"""The compiled loops' self-check runs once per build, not once per launch
(gradviz.engine.native.checkcache): kept for the library file's SHA-256, run again when
the file or the check changes, never trusted from a file others could have written."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gradviz.engine import native
from gradviz.engine.native import build, checkcache, selfcheck

needs_cc = pytest.mark.skipif(not build.find_compiler(), reason="no C compiler on this machine")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_pass_is_kept_for_one_library_hash_and_one_check(tmp_path, monkeypatch):
    target = tmp_path / "native-0123.so"
    assert not checkcache.passed_before(target, "a" * 64)            # nothing kept yet
    checkcache.remember_pass(target, "a" * 64)
    kept = checkcache.result_path(target)
    assert kept.stat().st_mode & 0o777 == 0o600
    assert checkcache.passed_before(target, "a" * 64)
    assert not checkcache.passed_before(target, "b" * 64)            # another library
    monkeypatch.setattr(checkcache, "_key", "another version of the check")
    assert not checkcache.passed_before(target, "a" * 64)            # another check


@pytest.mark.parametrize("spoil", ["garbage", "writable by others", "symlink", "failed"])
def test_a_kept_pass_that_is_not_what_it_should_be_is_not_trusted(tmp_path, spoil):
    target = tmp_path / "native-0123.so"
    checkcache.remember_pass(target, "a" * 64)
    kept = checkcache.result_path(target)
    if spoil == "garbage":
        kept.write_bytes(b"\x00\xff not json")
    elif spoil == "writable by others":
        os.chmod(kept, 0o622)
    elif spoil == "symlink":
        real = tmp_path / "elsewhere"
        kept.rename(real)
        kept.symlink_to(real)
    else:
        record = json.loads(kept.read_text())
        kept.write_text(json.dumps({**record, "passed": False}))
    assert not checkcache.passed_before(target, "a" * 64)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache in tmp_path holding a copy of this machine's build (and its record),
    and a count of the self-check's runs."""
    if native.kernels() is None:
        pytest.skip(native.status())
    home, _ = build.cache_dir()
    compiler, source = build.find_compiler(), build.SOURCE.read_bytes()
    built = next(home / name for name in (build.library_name(source, compiler, flags)
                                          for flags in build.FLAG_SETS)
                 if (home / name).exists())
    folder = tmp_path / "gradviz"
    folder.mkdir(mode=0o700)
    target = folder / built.name
    shutil.copyfile(built, target)
    os.chmod(target, 0o700)
    shutil.copyfile(build.record_path(built), build.record_path(target))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    runs: list = []
    original = selfcheck.run
    monkeypatch.setattr(selfcheck, "run", lambda k: (runs.append(1), original(k))[1])
    return target, runs


@needs_cc
def test_the_self_check_runs_at_the_first_load_of_a_build_only(cache):
    target, runs = cache
    kernels, status = native.load()
    assert kernels is not None and status.startswith("compiled loops in use"), status
    assert len(runs) == 1
    assert checkcache.passed_before(target, sha(target))
    for _ in range(2):
        again, status = native.load()
        assert again is not None and status.startswith("compiled loops in use"), status
    assert len(runs) == 1


@needs_cc
def test_a_library_changed_since_its_pass_is_checked_again(cache):
    """Even with its record changed to match (a rebuild by hand, say): the pass was for the
    old contents. Bytes after the ELF's end change the file, not the code."""
    target, runs = cache
    assert native.load()[0] is not None and len(runs) == 1
    changed = target.with_name("changed")
    changed.write_bytes(target.read_bytes() + b"\x00" * 64)
    os.chmod(changed, 0o700)
    changed.replace(target)                 # a new file: the one loaded stays as it was
    data = target.read_bytes()
    build.record_path(target).write_text(json.dumps(
        {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}))
    kernels, status = native.load()
    assert kernels is not None, status
    assert len(runs) == 2                   # checked again
    assert checkcache.passed_before(target, sha(target))
    assert native.load()[0] is not None and len(runs) == 2


@pytest.mark.slow
@needs_cc
def test_a_library_cut_short_after_its_pass_is_never_loaded_as_passed(cache):
    target, runs = cache
    assert native.load()[0] is not None and len(runs) == 1
    whole = target.read_bytes()
    cut = target.with_name("cut")
    cut.write_bytes(whole[: len(whole) // 2])
    os.chmod(cut, 0o700)
    cut.replace(target)
    kernels, status = native.load()
    assert kernels is not None, status
    assert f"rebuilt {target.name}: it is {len(whole) // 2} bytes" in status
    # What is loaded now is a whole build, and a pass is kept for exactly its contents:
    # checked again, or byte for byte the build that passed before.
    assert target.stat().st_size > len(whole) // 2
    assert checkcache.passed_before(target, sha(target))
    assert len(runs) == (1 if sha(target) == hashlib.sha256(whole).hexdigest() else 2)


@needs_cc
def test_a_failed_self_check_is_not_kept(cache, monkeypatch):
    target, runs = cache
    monkeypatch.setattr(native, "self_check", lambda k: "lstm forward, torch.float32")
    kernels, status = native.load()
    assert kernels is None and "failed their self-check (lstm forward" in status
    assert not checkcache.result_path(target).exists()
