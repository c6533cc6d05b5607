"""Xilinx primitives the Verilog export instantiates where Yosys would not
infer them.

Yosys 0.70's `synth_xilinx -family xcup` maps a `Dsp48Slice`'s multiply to a
DSP48E2 but leaves its registers and post-adder in the fabric (about 110 FF
and 40 LUT per DSP), while on xc7 it packs the whole slice into one DSP48E1.
So the export elaborates with `PRIMITIVES` as its platform (Amaranth's hook
for platform-specific lowering, as `lib.cdc` asks `platform.get_ff_sync`):
a DSP48E2 slice becomes the primitive, configured to compute exactly what
the behavioural slice computes; Amaranth's simulator, with no platform, runs
the behavioural one. The cocotb benches simulate the primitive with our
model of it, `rtl/models/DSP48E2.v`.
"""
from __future__ import annotations

from amaranth import ClockSignal, Const, Instance, Module, Mux, ResetSignal, Signal, signed

from hwmodel.gateware.dsp48 import DSP48E2

# OPMODE = W(8:7) Z(6:4) Y(3:2) X(1:0), UG579 tables 2-7 to 2-10: X = Y = M (the product)
OPMODE_CASCADE = 0b00_001_01_01   # P = M + PCIN
OPMODE_RESTART = 0b00_000_01_01   # P = M
OPMODE_ACCUMULATE = 0b00_010_01_01   # P = M + P
INMODE_D_PLUS_A = 0b00100         # pre-adder D + A2, multiplier B from B2 (UG579 table 2-4)

DSP48E2_CONFIG = {                # what every slice of ours sets alike: pre-adder into the multiplier, no C
    "p_CREG": 0, "p_OPMODEREG": 0, "p_INMODEREG": 0, "p_ALUMODEREG": 0, "p_CARRYINREG": 0, "p_CARRYINSELREG": 0,
    "p_AMULTSEL": "AD", "p_BMULTSEL": "B", "p_PREADDINSEL": "A", "p_USE_MULT": "MULTIPLY",
}
DSP48E2_PORTS = {"A": 30, "B": 18, "C": 48, "D": 27}


def dsp48e2_instance(*, registers: dict[str, int], a, b, d, opmode, pcin, enables: dict[str, object],
                     p, pcout=None) -> Instance:
    """A DSP48E2 computing `(d + a) * b` into the Z-mux's choice (`opmode`), with
    the given register stages and clock enables (every other enable off); P
    clears on the domain's reset."""
    off = Const(0, 1)
    ces = {f"i_{name}": enables.get(name, off) for name in
           ("CEA1", "CEA2", "CEAD", "CEB1", "CEB2", "CEC", "CED", "CEM", "CEP", "CECARRYIN", "CECTRL",
            "CEINMODE", "CEALUMODE")}
    outputs = {"o_P": p} | ({"o_PCOUT": pcout} if pcout is not None else {})
    return Instance(
        "DSP48E2", **DSP48E2_CONFIG, **{f"p_{k}": v for k, v in registers.items()}, **ces, **outputs,
        i_CLK=ClockSignal(), i_A=a, i_B=b, i_D=d, i_C=Const(0, DSP48E2_PORTS["C"]), i_PCIN=pcin,
        i_INMODE=Const(INMODE_D_PLUS_A, 5), i_OPMODE=opmode,
        i_ALUMODE=Const(0, 4), i_CARRYIN=off, i_CARRYINSEL=Const(0, 3),
        i_RSTP=ResetSignal(), i_RSTA=off, i_RSTB=off, i_RSTC=off, i_RSTD=off, i_RSTM=off, i_RSTCTRL=off,
        i_RSTINMODE=off, i_RSTALUMODE=off, i_RSTALLCARRYIN=off,
        i_ACIN=Const(0, 30), i_BCIN=Const(0, 18), i_CARRYCASCIN=off, i_MULTSIGNIN=off,
    )


def dsp48e2(slice_) -> Module:
    """`slice_` (a `Dsp48Slice` of DSP48E2 geometry) as one DSP48E2: the low
    activation on A, the high one shifted on D, their sum in the AD register,
    times B; the Z-mux adds PCIN or restarts. All registers share `ce`; P
    clears on the domain's reset like the behavioural P. With the slice's
    input register, A, D and B1 hold the operands one cycle first."""
    m = Module()
    regs = int(slice_.input_register)
    a = Signal(signed(DSP48E2_PORTS["A"]))
    d = Signal(signed(DSP48E2_PORTS["D"]))
    b = Signal(signed(DSP48E2_PORTS["B"]))
    opmode = Signal(9)
    m.d.comb += [a.eq(slice_.acts.lo), d.eq(slice_.acts.hi << slice_.geometry.pack_shift), b.eq(slice_.weight),
                 opmode.eq(Mux(slice_.restart, OPMODE_RESTART, OPMODE_CASCADE))]
    ce = slice_.ce
    inputs = {"CEA2": ce, "CED": ce, "CEB1": ce} if regs else {}
    m.submodules.dsp48e2 = dsp48e2_instance(
        registers={"AREG": regs, "ACASCREG": regs, "DREG": regs, "BREG": 1 + regs, "BCASCREG": 1 + regs,
                   "ADREG": 1, "MREG": 1, "PREG": 1},
        a=a, b=b, d=d, opmode=opmode, pcin=slice_.pcin,
        enables={"CEAD": ce, "CEB2": ce, "CEM": ce, "CEP": ce} | inputs, p=slice_.p, pcout=slice_.pcout)
    return m


def dsp48e2_accumulator(acc) -> Module:
    """`acc` (a `Dsp48Accumulator` of DSP48E2 geometry) as one DSP48E2: the two
    partial sums on A and D, the multiplier unsigned on B, no register but P,
    whose Z-mux takes P back (OPMODE Z = 010) or restarts."""
    m = Module()
    a = Signal(signed(DSP48E2_PORTS["A"]))
    d = Signal(signed(DSP48E2_PORTS["D"]))
    b = Signal(signed(DSP48E2_PORTS["B"]))
    opmode = Signal(9)
    m.d.comb += [a.eq(acc.a), d.eq(acc.d), b.eq(acc.b),
                 opmode.eq(Mux(acc.restart, OPMODE_RESTART, OPMODE_ACCUMULATE))]
    m.submodules.dsp48e2 = dsp48e2_instance(
        registers={"AREG": 0, "ACASCREG": 0, "DREG": 0, "BREG": 0, "BCASCREG": 0, "ADREG": 0, "MREG": 0,
                   "PREG": 1},
        a=a, b=b, d=d, opmode=opmode, pcin=Const(0, 48), enables={"CEP": acc.ce}, p=acc.p)
    return m


class XilinxPrimitives:
    """The export's platform: hands out primitives by the slice's geometry."""

    def get_dsp48(self, slice_) -> Module | None:
        """The primitive for `slice_`, or None where Yosys infers it whole (DSP48E1)."""
        return dsp48e2(slice_) if slice_.geometry == DSP48E2 else None

    def get_dsp48_accumulator(self, acc) -> Module | None:
        """The primitive for `acc` (a `Dsp48Accumulator`), or None on DSP48E1."""
        return dsp48e2_accumulator(acc) if acc.geometry == DSP48E2 else None


PRIMITIVES = XilinxPrimitives()
