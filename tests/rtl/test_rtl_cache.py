"""rtl.cache without a simulator: an entry is made once and reused, a failed
make leaves nothing, a damaged entry is rebuilt, concurrent callers make it
once, and older keys are pruned only when nobody holds them."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hwmodel.atomic import write_atomic
from rtl.cache import MANIFEST, cached


def make_files(folder: Path) -> None:
    (folder / "sim.bin").write_bytes(bytes(range(256)) * 8)
    (folder / "logs").mkdir()
    (folder / "logs" / "build.log").write_text("ok\n")


def entry_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def test_entry_is_made_once_then_reused(tmp_path):
    with cached(tmp_path, "tile", "0" * 16, make_files) as first:
        assert first.built and first.path == tmp_path / f"tile-{'0' * 16}"
    with cached(tmp_path, "tile", "0" * 16, lambda folder: pytest.fail("rebuilt an intact entry")) as again:
        assert not again.built and again.path == first.path
    assert (first.path / MANIFEST).is_file() and (first.path / "logs" / "build.log").read_text() == "ok\n"


def test_failed_make_leaves_nothing_and_is_not_reused(tmp_path):
    def fails(folder: Path) -> None:
        make_files(folder)                  # everything there, but the build did not finish
        raise RuntimeError("c++: internal compiler error")

    with pytest.raises(RuntimeError, match="internal compiler error"):
        with cached(tmp_path, "tile", "1" * 16, fails):
            pass
    assert entry_dirs(tmp_path) == []       # neither the entry nor its temporary folder
    with cached(tmp_path, "tile", "1" * 16, make_files) as entry:
        assert entry.built


@pytest.mark.parametrize("damage", ["truncate", "remove", "same size, other bytes", "no manifest"])
def test_damaged_entry_is_rebuilt(tmp_path, damage):
    with cached(tmp_path, "tile", "2" * 16, make_files) as entry:
        pass
    target = entry.path / "sim.bin"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "remove":
        target.unlink()
    elif damage == "same size, other bytes":
        target.write_bytes(bytes(target.stat().st_size))
    else:
        (entry.path / MANIFEST).unlink()
    with cached(tmp_path, "tile", "2" * 16, make_files) as again:
        assert again.built and (again.path / "sim.bin").read_bytes() == bytes(range(256)) * 8


def test_concurrent_callers_make_it_once(tmp_path):
    made, start = [], threading.Barrier(4)

    def slow_make(folder: Path) -> None:
        made.append(folder)
        time.sleep(0.5)
        make_files(folder)

    def use() -> tuple[bool, bytes]:
        start.wait()
        with cached(tmp_path, "tile", "3" * 16, slow_make) as entry:
            return entry.built, (entry.path / "sim.bin").read_bytes()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: use(), range(4)))
    assert len(made) == 1
    assert sorted(built for built, _ in results) == [False, False, False, True]
    assert all(data == bytes(range(256)) * 8 for _, data in results)


def test_older_keys_pruned_unless_in_use(tmp_path):
    with cached(tmp_path, "tile", "a" * 16, make_files):
        pass
    orphan = tmp_path / f".tile-{'a' * 16}.dead.tmp"     # what a killed build leaves
    orphan.mkdir()
    with cached(tmp_path, "tile_2x8", "e" * 16, make_files):  # another design: never pruned for "tile"
        pass
    with cached(tmp_path, "tile", "b" * 16, make_files) as held:
        with cached(tmp_path, "tile", "c" * 16, make_files):   # b is in use: kept
            pass
        assert held.path.is_dir()
    assert entry_dirs(tmp_path) == [f"tile-{'b' * 16}", f"tile-{'c' * 16}", f"tile_2x8-{'e' * 16}"]
    with cached(tmp_path, "tile", "d" * 16, make_files):
        pass
    assert entry_dirs(tmp_path) == [f"tile-{'d' * 16}", f"tile_2x8-{'e' * 16}"]
    assert sorted(p.name for p in tmp_path.glob(".*.lock")) == [f".tile-{'d' * 16}.lock", f".tile_2x8-{'e' * 16}.lock"]


def test_write_atomic_leaves_an_unchanged_file_alone(tmp_path):
    path = write_atomic(tmp_path / "out" / "a.v", "module a;\n")
    before = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert write_atomic(path, "module a;\n").stat().st_mtime_ns == before
    assert write_atomic(path, "module b;\n").read_text() == "module b;\n"
    assert [p.name for p in path.parent.iterdir()] == ["a.v"]
