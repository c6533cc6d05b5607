"""Benchmark: what candidate blocks of a cheaper MPE lane would cost, synthesized
alone (Yosys `synth_xilinx -family xcup`, as `dspflight rtl synth`), before any of
them becomes gateware (issue 9, item 1: at most 100 LUT per DSP).

- `diff`: 16 lanes of the cheapest dequantizer, `q - z` with the code unpacked
  by width (2, 3, 4, 5, 8 bits), registered: what a lane costs if the group
  scale leaves the lane. `diff-planes`: the codes as bit planes (plane p:
  bit p of every lane), the planes above the width masked in the lane;
  `sub`: the planes above the width zero on the bus, no per-width logic
  (the gateware's dequantizer).
- `shift`: the same lanes scaled by a power of two (a 3-bit group exponent) and
  saturated to INT8 in the lane: FlightLLM's bit-width expander ("control
  bits, scale, sign", FACTS.md); its `q - z` register stays, one more cycle.
  `shift-nosat` drops the saturation (a quantizer that never overflows INT8).
- `scaler`: one chain's group scale in the fabric (shifted partial
  products), `acc += S * m` for two tokens at beat rate (20-bit beat sums S,
  8-bit m, 48-bit acc); `scaler-dsp`: the same written as `*`, which Yosys
  maps to DSP48s (the MV tile's).
- `mux`: 16 lanes of the sparse MUX (a 16:1 pick of a 16-bit activation pair),
  registered; once as inferred, once with `-widemux 5` (MUXF7/F8 if inferred).
  `mux-tree`: the same as a tree of 2:1 multiplexers (`sparse_chain.pick`, the
  gateware's), without and with `-widemux 4`; `mux-f7f8`: four 4:1 LUTs a bit
  with MUXF7/MUXF8 instantiated, the by-hand bound.
- `mux-lutram`: the pick as a read of distributed RAM: each lane holds the
  16 pairs of its block twice over (two banks, 32 x 16 bits: one bank read
  at the lane's index while the next block is written, one entry a cycle)
  and reads asynchronously, registered. Its LUTs are counted as LUT6s
  (`LUTRAM_LUTS`), as a Vivado utilization report counts LUT as memory.

    .venv/bin/python bench/bench_rtl_candidates.py [--only diff,diff-planes,sub,shift,shift-nosat,scaler,scaler-dsp,mux,mux-tree,mux-f7f8,mux-lutram]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from amaranth import Cat, Instance, Module, Mux, Signal, signed
from amaranth.back import rtlil
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwmodel.dequant import ACC_BITS, MULT_BITS
from hwmodel.gateware.sparse_chain import pick
from hwmodel.isa import INT8_MAX, WBITS_BITS, wbits_code
from rtl.synth import CELL_GROUPS
from rtl.yosys import run_yosys

LANES = 16
WIDTHS = (2, 3, 4, 5, 8)          # the U280 design's weight widths
CODE = max(WIDTHS)


class LaneDiff(wiring.Component):
    def __init__(self):
        super().__init__({"q": In(CODE * LANES), "wbits": In(WBITS_BITS), "z": In(CODE),
                          "w": Out(data.ArrayLayout(signed(CODE + 1), LANES))})

    def elaborate(self, platform) -> Module:
        m = Module()
        for lane in range(LANES):
            code = Signal(CODE, name=f"code{lane}")
            with m.Switch(self.wbits):
                for b in WIDTHS:
                    with m.Case(wbits_code(b)):
                        m.d.comb += code.eq(self.q[lane * b:(lane + 1) * b])
                with m.Default():
                    m.d.comb += code.eq(self.z)
            m.d.sync += self.w[lane].eq(code - self.z)
        return m


class LaneDiffPlanes(wiring.Component):
    """`q - z` with the codes as bit planes (plane p: bit p of every lane), the
    planes above the width zeroed: lane bit p sits at one place for every width."""

    def __init__(self):
        super().__init__({"q": In(CODE * LANES), "wbits": In(WBITS_BITS), "z": In(CODE),
                          "w": Out(data.ArrayLayout(signed(CODE + 1), LANES))})

    def elaborate(self, platform) -> Module:
        m = Module()
        keep = Signal(CODE)
        with m.Switch(self.wbits):
            for b in WIDTHS:
                with m.Case(wbits_code(b)):
                    m.d.comb += keep.eq((1 << b) - 1)
        for lane in range(LANES):
            code = Signal(CODE, name=f"code{lane}")
            m.d.comb += code.eq(Cat(*(self.q[p * LANES + lane] & keep[p] for p in range(CODE))))
            m.d.sync += self.w[lane].eq(code - self.z)
        return m


class LaneSub(wiring.Component):
    """`q - z` with the codes as bit planes that arrive zero above the beat's
    width (the weight-buffer reader's contract): no per-width logic at all."""

    def __init__(self):
        super().__init__({"q": In(CODE * LANES), "z": In(CODE),
                          "w": Out(data.ArrayLayout(signed(CODE + 1), LANES))})

    def elaborate(self, platform) -> Module:
        m = Module()
        for lane in range(LANES):
            code = Cat(*(self.q[p * LANES + lane] for p in range(CODE)))
            m.d.sync += self.w[lane].eq(code - self.z)
        return m


class LaneShift(wiring.Component):
    """`q - z` scaled by a power of two, saturated to INT8: FlightLLM's bit-width
    expander ("control bits, scale, sign"), with a 3-bit group exponent."""

    def __init__(self, saturate: bool = True):
        self.saturate = saturate
        super().__init__({"q": In(CODE * LANES), "wbits": In(WBITS_BITS), "z": In(CODE), "e": In(3),
                          "w": Out(data.ArrayLayout(signed(8), LANES))})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.diff = diff = LaneDiff()
        m.d.comb += [diff.q.eq(self.q), diff.wbits.eq(self.wbits), diff.z.eq(self.z)]
        for lane in range(LANES):
            big = Signal(signed(CODE + 1 + 7), name=f"big{lane}")
            m.d.comb += big.eq(diff.w[lane] << self.e)
            sat = Mux(big > INT8_MAX, INT8_MAX, Mux(big < -INT8_MAX, -INT8_MAX, big)) if self.saturate else big
            m.d.sync += self.w[lane].eq(sat)
        return m


class BeatScaler(wiring.Component):
    def __init__(self, dsp: bool = False, width: int = 20):
        self.dsp = dsp
        super().__init__({"g": In(data.ArrayLayout(signed(width), 2)), "m": In(MULT_BITS),
                          "clear": In(1), "acc": Out(data.ArrayLayout(signed(ACC_BITS), 2))})

    def elaborate(self, platform) -> Module:
        m = Module()
        for t in range(2):
            prod = self.g[t] * self.m if self.dsp else sum(Mux(self.m[i], self.g[t] << i, 0) for i in range(MULT_BITS))
            m.d.sync += self.acc[t].eq(Mux(self.clear, 0, self.acc[t]) + prod)
        return m


class LaneMux(wiring.Component):
    def __init__(self):
        super().__init__({"acts": In(data.ArrayLayout(16, 16)), "index": In(data.ArrayLayout(4, LANES)),
                          "o": Out(data.ArrayLayout(16, LANES))})

    def elaborate(self, platform) -> Module:
        m = Module()
        for lane in range(LANES):
            m.d.sync += self.o[lane].eq(self.acts[self.index[lane]])
        return m


class LaneMuxTree(LaneMux):
    """The sparse MUX as an explicit tree of 2:1 multiplexers (for `-widemux`)."""

    def elaborate(self, platform) -> Module:
        m = Module()
        for lane in range(LANES):
            m.d.sync += self.o[lane].eq(pick([self.acts[k] for k in range(16)], self.index[lane]))
        return m


class LaneMuxF7F8(LaneMux):
    """The sparse MUX per bit as four 4:1 multiplexers (one LUT6 each), two MUXF7 and a
    MUXF8, instantiated: the carry-free wide-MUX resources of a Xilinx CLB."""

    def elaborate(self, platform) -> Module:
        m = Module()
        for lane in range(LANES):
            sel = self.index[lane]
            for bit in range(16):
                quads = [Signal(name=f"q{lane}_{bit}_{k}") for k in range(4)]
                for k, q in enumerate(quads):
                    m.d.comb += q.eq(pick([self.acts[4 * k + j][bit] for j in range(4)], sel[:2]))
                f7 = [Signal(name=f"f7_{lane}_{bit}_{k}") for k in range(2)]
                for k, o in enumerate(f7):
                    m.submodules[f"f7_{lane}_{bit}_{k}"] = Instance(
                        "MUXF7", i_I0=quads[2 * k], i_I1=quads[2 * k + 1], i_S=sel[2], o_O=o)
                out = Signal(name=f"f8_{lane}_{bit}")
                m.submodules[f"f8_{lane}_{bit}"] = Instance("MUXF8", i_I0=f7[0], i_I1=f7[1], i_S=sel[3], o_O=out)
                m.d.sync += self.o[lane][bit].eq(out)
        return m


class LaneMuxLutram(wiring.Component):
    """The sparse MUX as a distributed-RAM read: lane pair g's block is written
    into both its lanes' RAMs one entry (`waddr`: bank, column) a cycle."""

    def __init__(self):
        super().__init__({"wdata": In(data.ArrayLayout(16, LANES // 2)), "waddr": In(5), "we": In(1),
                          "raddr": In(data.ArrayLayout(5, LANES)), "o": Out(data.ArrayLayout(16, LANES))})

    def elaborate(self, platform) -> Module:
        m = Module()
        for lane in range(LANES):
            m.submodules[f"ram{lane}"] = ram = Memory(shape=16, depth=32, init=[])
            wr, rd = ram.write_port(), ram.read_port(domain="comb")
            m.d.comb += [wr.addr.eq(self.waddr), wr.data.eq(self.wdata[lane // 2]), wr.en.eq(self.we),
                         rd.addr.eq(self.raddr[lane])]
            m.d.sync += self.o[lane].eq(rd.data)
        return m


# LUT6s per distributed-RAM primitive (UG574: RAM32M and RAM64M take four, RAM32M16 and RAM64M8 eight)
LUTRAM_LUTS = {"RAM32X1S": 1, "RAM64X1S": 1, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4,
               "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8}

CANDIDATES = {"diff": (LaneDiff, [""]), "diff-planes": (LaneDiffPlanes, [""]), "sub": (LaneSub, [""]),
              "shift": (LaneShift, [""]),
              "shift-nosat": (lambda: LaneShift(saturate=False), [""]), "scaler": (BeatScaler, [""]),
              "scaler-dsp": (lambda: BeatScaler(dsp=True), [""]),
              "mux": (LaneMux, ["", "-widemux 5"]), "mux-tree": (LaneMuxTree, ["", "-widemux 4"]),
              "mux-f7f8": (LaneMuxF7F8, [""]), "mux-lutram": (LaneMuxLutram, [""])}


def synth(design: wiring.Component, extra: str, folder: Path) -> dict[str, int]:
    (folder / "top.il").write_text(rtlil.convert(design, name="top"))
    run_yosys(f"read_rtlil top.il; synth_xilinx -family xcup -top top -flatten -noiopad -dff {extra}; "
              f"tee -q -o stat.json stat -json", folder)
    cells = json.loads((folder / "stat.json").read_text())["design"]["num_cells_by_type"]
    out = {group: sum(cells.get(c, 0) for c in names) for group, names in CELL_GROUPS.items()}
    out["lutram"] = sum(n * cells.get(c, 0) for c, n in LUTRAM_LUTS.items())
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(CANDIDATES), help="comma-separated candidates")
    args = ap.parse_args()
    unknown = sorted(set(args.only.split(",")) - set(CANDIDATES))
    if unknown:
        ap.error(f"--only: no candidate {unknown[0]!r} (candidates: {', '.join(CANDIDATES)})")
    print(f"{'block':<12} {'flags':<12} {'LUT*':>8} {'FF':>6} {'DSP48':>6} {'per DSP (of ' + str(LANES) + ')':>18}"
          f" {'s':>5}")
    for name in args.only.split(","):
        make, flags = CANDIDATES[name]
        for extra in flags:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                r = synth(make(), extra, Path(tmp))
            lut = r["lut"] + r["srl"] + r["lutram"]
            print(f"{name:<12} {extra or '-':<12} {lut:>8} {r['ff']:>6} {r['dsp']:>6} {lut / LANES:>10.1f} LUT "
                  f"{r['ff'] / LANES:>4.1f} FF {time.perf_counter() - t0:>5.0f}")
    print("LUT*: LUTs as logic, shift registers (SRL) and distributed RAM")
    print(f"reproduce: .venv/bin/python bench/bench_rtl_candidates.py --only {args.only}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
