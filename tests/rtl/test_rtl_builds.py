"""Simulator builds that cannot go stale: a damaged build is rebuilt, not
reused; a build killed half way is never used and its leftovers are cleared;
two runs building one design at once share one build and both pass."""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from rtl_tools import icarus, require, yosys  # noqa: F401 (fixtures)

from hwmodel.gateware.dsp48 import FAMILY_DSP
from hwmodel.hwconfig import load_hw
from rtl.export import tile_for, write_verilog
from rtl.runner import ROOT, artifact, build_key, built, missing, simulate, sources_of

pytestmark = pytest.mark.rtl

NAME = "mv_tile_1x4"          # the smallest tile: the quickest Verilator build


def export_tile(folder: Path) -> Path:
    tile = tile_for(load_hw("u280"), chains=1, chain_length=4, geometry=FAMILY_DSP["xcup"])
    return write_verilog(tile, NAME, folder)


def run_cycles(entry, sim: str, record: Path) -> tuple[int, int]:
    """The bench's cycle test on a build (it checks results and cycle counts itself)."""
    params = {"hw": "u280", "chains": 1, "chain_length": 4, "family": "xcup", "seed": 7, "record": str(record)}
    return simulate(entry, sim=sim, toplevel=NAME, test_module="rtl.benches.tile_bench", params=params,
                    testcase="cycles")


def build_and_run(root: Path, verilog: Path, record: Path) -> dict:
    """One of two concurrent test runs: build (or wait for the other's build), then simulate."""
    start = time.monotonic()
    with built(sim="verilator", verilog=verilog, toplevel=NAME, root=root) as entry:
        ready = time.monotonic()
        result = run_cycles(entry, "verilator", record)
    return {"built": entry.built, "path": entry.path, "start": start, "ready": ready, "result": result}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("damage", ["truncate", "remove"])
def test_damaged_build_is_rebuilt(icarus, tmp_path, damage):
    """On Icarus (a build takes a second): the check is the cache's, the same for Verilator."""
    sim, verilog, root = icarus, export_tile(tmp_path), tmp_path / "builds"
    with built(sim=sim, verilog=verilog, toplevel=NAME, root=root) as entry:
        assert entry.built
    target = entry.path / artifact(sim, NAME)
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    else:
        target.unlink()
    with built(sim=sim, verilog=verilog, toplevel=NAME, root=root) as again:
        assert again.built and again.path == entry.path
        assert run_cycles(again, sim, tmp_path / "record.json") == (1, 0)


def kill_build_half_way(verilog: Path, root: Path, key: str) -> None:
    """Start a Verilator build in another process and SIGKILL it (and its make
    and c++) once Verilator has written the C++ and make is compiling it."""
    code = (f"from pathlib import Path; from rtl.runner import built\n"
            f"with built(sim='verilator', verilog=Path({str(verilog)!r}), toplevel={NAME!r}, root=Path({str(root)!r})):"
            f" pass")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list(root.glob(f"verilator/.{NAME}-{key}.*.tmp/obj/Vtop.mk")):
            assert child.poll() is None and time.monotonic() < deadline, "the build ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def test_killed_build_is_not_reused_and_two_runs_at_once_share_its_rebuild(yosys, tmp_path):
    """The incident: a build died half way, then runs overlapped. (One test, so
    one Verilator build, the costly part, serves both checks.)"""
    require(missing("verilator"))
    verilog, root = export_tile(tmp_path), tmp_path / "builds"
    key = build_key("verilator", sources_of(verilog), NAME)
    kill_build_half_way(verilog, root, key)
    assert not (root / "verilator" / f"{NAME}-{key}").exists()
    assert leftovers(root / "verilator")                           # the killed build's folder

    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        runs = [pool.submit(build_and_run, root, verilog, tmp_path / f"record{i}.json") for i in range(2)]
        first, second = sorted((run.result() for run in runs), key=lambda r: not r["built"])
    assert first["result"] == second["result"] == (1, 0)
    assert (first["built"], second["built"]) == (True, False)     # rebuilt once; the second waited for it
    assert second["start"] < first["ready"], "the runs did not overlap"
    assert first["path"] == second["path"] == root / "verilator" / f"{NAME}-{key}"
    assert leftovers(root / "verilator") == []
