"""cocotb on the exported MV tile, on Icarus Verilog and Verilator: bit-exact
against numpy for every pattern and weight width, and cycle counts equal to
the cost formulas for several chain lengths."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from rtl_tools import simulator, yosys  # noqa: F401 (fixtures)

from hwmodel.gateware.dsp48 import FAMILY_DSP
from hwmodel.hwconfig import load_hw
from rtl.export import tile_for, tile_hw, write_verilog
from rtl.runner import SIM_BUILD, run_bench

pytestmark = pytest.mark.rtl

VECTORS = {             # results per (pattern, weight width), extremes included: the same stimulus on
    "verilator": 1000,  # both simulators, fewer on Icarus, which runs this bench 2.5x slower
    "icarus": 250,      # (64 s for 1,000 on the 2x8 tile, more than a fifth of the RTL tests)
}
CASES = [               # chains, chain length, cocotb tests
    (2, 8, ("bit_exact", "cycles")),
    (1, 4, ("cycles",)),
    (1, 16, ("cycles",)),
]


@functools.cache
def exported(chains: int, length: int) -> tuple[str, Path]:
    """A tile's module name and Verilog, written once for both simulators (Amaranth
    takes seconds to lower it)."""
    name = f"mv_tile_{chains}x{length}"
    tile = tile_for(load_hw("u280"), chains=chains, chain_length=length, geometry=FAMILY_DSP["xcup"])
    return name, write_verilog(tile, name, SIM_BUILD / "verilog")


@pytest.mark.parametrize("chains,length,tests", CASES, ids=[f"{c}x{n}" for c, n, _ in CASES])
def test_mv_tile(simulator, tmp_path, chains, length, tests):
    name, verilog = exported(chains, length)
    small = tile_hw(load_hw("u280"), chains=chains, chain_length=length)
    record = tmp_path / "record.json"
    params = {"hw": "u280", "chains": chains, "chain_length": length, "family": "xcup", "seed": 2024,
              "vectors": VECTORS[simulator], "max_rows": 8, "idle": 0.15, "backpressure": 0.15, "record": str(record)}
    ran, failed = run_bench(sim=simulator, verilog=verilog, toplevel=name, test_module="rtl.benches.tile_bench",
                            params=params, testcase=list(tests))
    assert (ran, failed) == (len(tests), 0)
    measured = json.loads(record.read_text())
    assert len(measured["cycles"]) == 3 * len(small.sparsity_n)
    assert all(m["cycles"] == m["formula"] for m in measured["cycles"].values())
    if "bit_exact" in tests:
        assert len(measured["vectors"]) == len(small.sparsity_n) * len(small.weight_bits)
        assert min(measured["vectors"].values()) >= VECTORS[simulator]
