"""Build products (simulator builds, synthesis results) cached under a key of
everything they were built from, safe when several processes share a checkout.

An entry is the folder `<root>/<name>-<key>`. It is made in a fresh temporary
folder next to it and renamed into place whole, with a manifest of its files
(size and SHA-256) written last: a build that failed or was killed never
appears under the final name, and a folder whose files no longer match its
manifest (truncated, removed, no manifest) is rebuilt, never used. A lock
file per entry (`fcntl.flock`) is held shared while an entry is used and
exclusively while it is built, replaced or pruned, so two processes never
build the same entry twice at once and nobody deletes an entry in use. The
kernel drops the locks of a process that dies.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
BUILD_ROOT = ROOT / "build" / "rtl"
MANIFEST = "manifest.json"
KEY_CHARS = 16          # hex digits of the key in a folder name


@dataclass(frozen=True)
class Entry:
    """A cached folder, and whether this call built it (False: reused)."""
    path: Path
    built: bool


def key_of(*parts: object) -> str:
    """A short hash of `parts` (JSON-serializable, bytes as their SHA-256)."""
    def encode(obj: object) -> object:
        if isinstance(obj, bytes):
            return hashlib.sha256(obj).hexdigest()
        raise TypeError(f"cannot key {type(obj).__name__}")
    blob = json.dumps(parts, sort_keys=True, default=encode).encode()
    return hashlib.sha256(blob).hexdigest()[:KEY_CHARS]


@contextmanager
def cached(root: Path, name: str, key: str, make: Callable[[Path], None]) -> Iterator[Entry]:
    """The entry `<root>/<name>-<key>`, made by `make(folder)` unless an intact
    one exists; held (shared lock) until the `with` block ends. A new build
    prunes the entries of `name` under other keys that nobody holds."""
    root.mkdir(parents=True, exist_ok=True)
    final, lock = root / f"{name}-{key}", root / f".{name}-{key}.lock"
    built = False
    while True:
        with _flocked(lock, fcntl.LOCK_SH):
            if _intact(final):
                yield Entry(final, built)
                return
        with _flocked(lock, fcntl.LOCK_EX):
            if not _intact(final):
                _build(final, make)
                built = True
                _prune(root, name, keep=lock)


def _build(final: Path, make: Callable[[Path], None]) -> None:
    """Make the entry in a temporary folder, add its manifest, rename it into
    place (replacing a damaged one). Caller holds the entry's exclusive lock,
    so leftovers of a killed build of this entry are nobody's: removed."""
    for orphan in final.parent.glob(f".{final.name}.*.tmp"):
        shutil.rmtree(orphan, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        make(tmp)
        (tmp / MANIFEST).write_text(json.dumps(_files(tmp), indent=1, sort_keys=True) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _files(folder: Path) -> dict[str, list]:
    """Every file under `folder` (but the manifest) by relative path: [size, sha256]."""
    return {p.relative_to(folder).as_posix(): [p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()]
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


def _intact(folder: Path) -> bool:
    """The folder has its manifest and every file in it, whole and unchanged."""
    try:
        listed = json.loads((folder / MANIFEST).read_text())
        return all(_file_matches(folder / rel, size, digest) for rel, (size, digest) in listed.items())
    except (OSError, ValueError, TypeError):
        return False


def _file_matches(path: Path, size: int, digest: str) -> bool:
    return path.is_file() and path.stat().st_size == size and hashlib.sha256(path.read_bytes()).hexdigest() == digest


def _prune(root: Path, name: str, *, keep: Path) -> None:
    """Remove the entries of `name` under other keys (and leftovers of their
    killed builds) that no process holds: a newer build made them stale."""
    pattern = re.compile(rf"\.{re.escape(name)}-[0-9a-f]{{{KEY_CHARS}}}\.lock")
    for lock in root.iterdir():
        if lock == keep or not pattern.fullmatch(lock.name):
            continue
        entry = lock.name[1:-len(".lock")]
        try:
            with _flocked(lock, fcntl.LOCK_EX | fcntl.LOCK_NB):
                for path in [root / entry, *root.glob(f".{entry}.*.tmp")]:
                    shutil.rmtree(path, ignore_errors=True)
                lock.unlink()
        except BlockingIOError:
            continue                     # in use or being built: not stale


@contextmanager
def _flocked(path: Path, how: int) -> Iterator[None]:
    """Hold `flock(how)` on `path` (created if missing). A lock file pruned
    while we waited for it is no longer the entry's lock: open it again."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, how)
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)
