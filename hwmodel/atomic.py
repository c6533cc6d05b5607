"""Replacing one file so that a reader, a crash or a kill never sees half of it.

Shared by every package that writes a file on its own (trace, roofline plot,
report, exported Verilog, the resource fit); a run's whole output directory is
staged by dspflight.output instead.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path


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
