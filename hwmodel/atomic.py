"""Writing files so that a reader, a crash, an error or a kill never sees half of them.

`write_atomic` replaces one file (trace, plot, exported Verilog, the resource
fit). `OutputSet` writes a command's whole output directory all or nothing:
files are staged in a hidden folder beside the target (same file system, so
moving them in is a rename) and moved in only by `commit`, after everything
succeeded. Leaving the `with` block any other way — an error, Ctrl-C, SIGTERM
(dspflight.cli turns it into an exception) — removes the stage; a move that
fails half-way puts back the files it replaced.
"""
from __future__ import annotations

import filecmp
import json
import os
import shutil
import tempfile
import uuid
from functools import partial
from pathlib import Path
from typing import Callable

from hwmodel.errors import OutputError


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write `data` under a unique temporary name beside `path`, then rename it
    into place. An unchanged file is left alone (its date spares rebuilds of
    what depends on it); the temporary file never outlives the call."""
    path = Path(path)
    blob = data.encode() if isinstance(data, str) else data
    if path.is_file() and path.stat().st_size == len(blob) and path.read_bytes() == blob:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class OutputSet:
    """`with OutputSet(dir) as out: out.add_json(...); out.commit()`."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._stage: Path | None = None

    def __enter__(self) -> OutputSet:
        if self.directory.exists() and not self.directory.is_dir():
            raise OutputError(f"{self.directory}: not a directory (nothing written)")
        anchor = self.directory.absolute().parent
        while not anchor.is_dir():          # the target's parents are made only by commit
            anchor = anchor.parent
        try:
            self._stage = Path(tempfile.mkdtemp(prefix=f".{self.directory.name}.", suffix=".tmp", dir=anchor))
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self._stage, 0o777 & ~umask)   # it may become the directory: a plain mkdir's mode
        except OSError as exc:
            raise OutputError(f"{self.directory}: cannot write there ({exc.strerror})") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._stage is not None:
            shutil.rmtree(self._stage, ignore_errors=True)
            self._stage = None

    @property
    def stage(self) -> Path:
        """The folder being filled (other code may write files into it, e.g. graph dumps)."""
        if self._stage is None:
            raise RuntimeError("OutputSet used outside its `with` block")
        return self._stage

    def add_bytes(self, name: str, data: bytes) -> None:
        path = self.stage / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError as exc:
            raise OutputError(f"{self.directory / name}: cannot write ({exc.strerror}; nothing written)") from None

    def add_text(self, name: str, text: str) -> None:
        self.add_bytes(name, text.encode())

    def add_json(self, name: str, obj) -> None:
        self.add_bytes(name, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())

    def names(self) -> list[str]:
        """Every staged file, relative to the directory."""
        return sorted(p.relative_to(self.stage).as_posix() for p in self.stage.rglob("*") if not p.is_dir())

    def commit(self) -> list[str]:
        """Move every staged file into the directory; returns their names."""
        names = self.names()
        for name in names:
            _check_way(self.directory, name)
        try:
            if not self.directory.exists():
                self.directory.parent.mkdir(parents=True, exist_ok=True)
                os.rename(self.stage, self.directory)
                self._stage = None
            else:
                _move_in(self.stage, self.directory, names)
        except OSError as exc:
            raise OutputError(f"{exc.filename or self.directory}: cannot write ({exc.strerror}; nothing written)") \
                from None
        return names


def _check_way(directory: Path, name: str) -> None:
    """Refuse before moving anything if an existing path is in the way of `name`."""
    final = directory / name
    for parent in reversed(final.relative_to(directory).parents):
        if (directory / parent).exists() and not (directory / parent).is_dir():
            raise OutputError(f"{directory / parent}: not a directory, needed for {final} (nothing written)")
    if final.is_dir():
        raise OutputError(f"{final}: a directory is in the way of this output file (nothing written)")


def _move_in(stage: Path, directory: Path, names: list[str]) -> None:
    """Rename each staged file over its target (an identical one is left alone),
    keeping the old one in the stage; on any failure (or interruption) undo
    every move made so far."""
    old_dir = Path(tempfile.mkdtemp(prefix=".replaced.", dir=stage))
    undo: list[Callable[[], None]] = []
    try:
        for i, name in enumerate(names):
            final = directory / name
            if final.is_file() and filecmp.cmp(stage / name, final, shallow=False):
                continue                    # unchanged: its date spares rebuilds of what depends on it
            for parent in reversed(final.relative_to(directory).parents):
                if not (directory / parent).exists():
                    (directory / parent).mkdir()
                    undo.append((directory / parent).rmdir)
            if final.exists() or final.is_symlink():
                os.rename(final, old_dir / str(i))
                undo.append(partial(os.rename, old_dir / str(i), final))
            os.rename(stage / name, final)
            undo.append(final.unlink)
    except BaseException:
        for step in reversed(undo):
            step()
        raise
