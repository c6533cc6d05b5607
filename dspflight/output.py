"""Writing a run's output directory so that a failure leaves nothing half-written.

Every file is first written under a temporary name in the target directory
and renamed into place only when all of them have been produced.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


class OutputSet:
    """Collects named file contents in memory, then commits them together."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.files: dict[str, bytes] = {}

    def add_bytes(self, name: str, data: bytes) -> None:
        self.files[name] = data

    def add_text(self, name: str, text: str) -> None:
        self.files[name] = text.encode()

    def add_json(self, name: str, obj) -> None:
        self.files[name] = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()

    def commit(self) -> list[Path]:
        self.directory.mkdir(parents=True, exist_ok=True)
        temps = []
        try:
            for name, data in self.files.items():
                final = self.directory / name
                final.parent.mkdir(parents=True, exist_ok=True)
                tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
                tmp.write_bytes(data)
                temps.append((tmp, final))
        except OSError:
            for tmp, _ in temps:
                tmp.unlink(missing_ok=True)
            raise
        for tmp, final in temps:
            tmp.replace(final)
        return [final for _, final in temps]
