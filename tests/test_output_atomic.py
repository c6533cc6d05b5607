"""All-or-nothing output: whatever stops a command — a directory in the way, a later
error, a full disk, Ctrl-C, SIGTERM, a failure half-way through moving files in —
it prints one line, leaves the target as it was and no temporary file behind."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hwmodel.atomic
from dspflight.cli import main
from hwmodel.errors import SimulationError

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model", "tiny", "--prefill", "32", "--decode", "8"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every entry under `folder` (hidden ones too) with its bytes (b"" for a directory or FIFO)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else b"" for p in folder.rglob("*")}


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def compiled(tmp_path) -> Path:
    """A compiled tiny program in `tmp_path/prog` (the test's parent folder holds nothing else)."""
    assert main(["compile", *TINY, "-o", str(tmp_path / "prog")]) == 0
    return tmp_path / "prog"


def test_a_directory_in_the_way_writes_nothing(tmp_path, compiled, capsys):
    (compiled / "program.asm").unlink()
    (compiled / "program.asm").mkdir()
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert main(["compile", "--model", "tiny", "--prefill", "64", "--decode", "8", "-o", str(compiled)]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"{compiled / 'program.asm'}: a directory is in the way" in line
    assert snapshot(tmp_path) == before          # program.dfp not replaced, no .tmp left


def test_a_later_error_leaves_no_graph_dumps(tmp_path, capsys, monkeypatch):
    """The graphs are dumped while compiling; the simulation that follows fails."""
    def fails(*args, **kwargs):
        raise SimulationError("section decode-t1: instruction 3 (LD): a fault planted by the test")
    monkeypatch.setattr("dspflight.api.simulate_program", fails)
    out = tmp_path / "run"
    code = main(["run", *TINY, "--dump-after", "tile", "-o", str(out)])
    assert code == 2
    assert "a fault planted by the test" in one_line(capsys.readouterr().err)
    assert snapshot(tmp_path) == {}


def test_the_graph_dumps_arrive_with_the_rest(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["compile", *TINY, "--dump-after", "tile", "-o", str(out)]) == 0
    names = sorted(snapshot(tmp_path))
    assert names == ["run", "run/compile.json", "run/graph-decode-c48-tile.txt", "run/graph-prefill-c128-tile.txt",
                     "run/program.asm", "run/program.dfp"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())    # a plain directory, not mkdtemp's 0700


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_full_disk_names_the_file_and_writes_nothing(tmp_path, compiled, capsys, monkeypatch):
    before = snapshot(tmp_path)
    write_bytes = Path.write_bytes

    def full(self, data):
        if self.name == "program.asm":
            write_bytes(self, data[:100])            # a partial file, as a full disk leaves it
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    assert main(["compile", "--model", "tiny", "--prefill", "64", "--decode", "8", "-o", str(compiled)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line == f"dspflight: error: {compiled / 'program.asm'}: cannot write (No space left on device; nothing " \
                   f"written)"
    assert snapshot(tmp_path) == before


def test_an_interruption_while_moving_files_in_puts_the_old_ones_back(tmp_path, compiled, capsys, monkeypatch):
    before = snapshot(tmp_path)
    rename, calls = os.rename, []

    def interrupted(src, dst):
        calls.append(dst)
        if len(calls) == 4:                          # old compile.json and program.asm moved aside, one new file in
            raise KeyboardInterrupt
        rename(src, dst)

    monkeypatch.setattr(hwmodel.atomic.os, "rename", interrupted)
    assert main(["compile", "--model", "tiny", "--prefill", "64", "--decode", "8", "-o", str(compiled)]) == 130
    assert len(calls) > 4                            # the undo ran
    assert one_line(capsys.readouterr().err) == "dspflight: interrupted (no partial output)"
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"),
                                             (signal.SIGTERM, 143, "terminated")])
def test_a_signal_mid_run_exits_cleanly(tmp_path, compiled, sig, code, word):
    """`simulate` blocks reading compile.json made a FIFO: the stage exists then, and the
    signal arrives while the command is certainly running (no sleep-and-hope)."""
    (compiled / "compile.json").unlink()
    os.mkfifo(compiled / "compile.json")
    before = snapshot(tmp_path)
    out = tmp_path / "sim"
    proc = subprocess.Popen([sys.executable, "-m", "dspflight.cli", "simulate", str(compiled / "program.dfp"),
                             "-o", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "DSPFLIGHT_WORKERS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))   # as from a terminal
    fd = None
    try:
        deadline = time.monotonic() + 120
        while fd is None:                            # opening the writing end succeeds once the reader waits
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            try:
                fd = os.open(compiled / "compile.json", os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                assert exc.errno == errno.ENXIO
                time.sleep(0.01)
        assert [p.name for p in tmp_path.glob(".sim.*.tmp")]    # the stage exists while it waits
        proc.send_signal(sig)
        os.close(fd)     # EOF: were the signal flagged just before the read began, the read still returns
        fd = None
        _, stderr = proc.communicate(timeout=60)
    finally:
        if fd is not None:
            os.close(fd)
        proc.kill()
        proc.wait()
    assert proc.returncode == code
    assert one_line(stderr) == f"dspflight: {word} (no partial output)"
    assert snapshot(tmp_path) == before
