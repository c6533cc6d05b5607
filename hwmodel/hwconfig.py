"""HwConfig: the only place a hardware number lives.

Loaded from `configs/hardware/*.yaml`, validated field by field (an impossible
design is a ConfigError naming the field), with every derived quantity —
peak MACs per cycle, per-channel HBM bytes per cycle, ISA field widths — as a
property, so the compiler, the simulator and the gateware compute them the
same way.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

from hwmodel.configio import Fields, config_fields
from hwmodel.dequant import SCALE_DSPS
from hwmodel.hbm import Hbm, load_hbm
from hwmodel.resources import FAMILIES, mpe_estimate

BRAM36_BYTES = 4096   # data bytes of one BRAM36 at 32-bit width (36 Kb with parity)
URAM_BYTES = 32768    # data bytes of one UltraRAM at 64-bit width (288 Kb with parity)
BUFFER_ORDER = ("act", "glb", "wgt")
# The K block: MM/MV `kblk` counts blocks of this many columns, MISC `len16` this
# many features, activations lie in panels this wide (docs/numerics.md), and an
# N:M sparse block is this wide (a design's `sparsity_m` must equal it).
BLOCK = 16  # layout of the unified on-chip address map
MAX_CHAIN_LENGTH = 256   # DSPs per chain a hardware config may ask for
# Fields only the simulator and the reports read (time, power, price): a program
# compiled for a design is byte for byte the program of a design that differs
# from it only in these, apart from the fingerprint (tests/test_compiler.py).
COMPILER_BLIND = ("clock_mhz", "static_power_w", "price_usd")


@dataclass(frozen=True)
class Buffer:
    """One on-chip buffer of a core; all buffers share one address map."""
    name: str
    kind: str          # "uram" or "bram36"
    bytes: int
    base: int          # byte address of its first line in the on-chip map

    @property
    def blocks(self) -> int:
        return math.ceil(self.bytes / (URAM_BYTES if self.kind == "uram" else BRAM36_BYTES))


@dataclass(frozen=True, eq=False)
class HwConfig:
    name: str
    source: str
    description: str
    clock_mhz: float
    slrs: int
    chains: int
    chain_length: int
    dsp_group: int
    macs_per_dsp: int
    sparsity_m: int
    sparsity_n: tuple[int, ...]
    weight_bits: tuple[int, ...]
    sfu_lanes: int
    sfu_dsp: int
    sfu_passes_softmax: int
    misc_latency_cycles: int
    buffers: dict[str, Buffer]
    line_bytes: int
    hbm: Hbm
    ddr_gbps: float
    slr_link_bytes_per_cycle: int
    slr_sync_latency_cycles: int
    static_power_w: float
    price_usd: float
    fabric: dict[str, int] = field(default_factory=dict)
    fabric_family: str | None = None      # the Yosys family whose gateware fit estimates LUT and FF (reported)

    # ---- derived values -------------------------------------------------
    @property
    def clock_hz(self) -> float:
        return self.clock_mhz * 1e6

    @property
    def dsp_per_core(self) -> int:
        return self.chains * self.chain_length

    @property
    def scale_dsp_per_core(self) -> int:
        """DSP48s of one core's MPE that apply the group scales (hwmodel.dequant), not MACs."""
        return self.chains * SCALE_DSPS

    @property
    def dsp_total(self) -> int:
        """DSP48s of the whole design: every core's MPE (MACs and group scales) and SFU."""
        return self.slrs * (self.dsp_per_core + self.scale_dsp_per_core + self.sfu_dsp)

    @property
    def mm_macs_per_cycle(self) -> int:
        """Peak INT8 MACs per cycle of one core's MPE with two tokens packed per DSP."""
        return self.dsp_per_core * self.macs_per_dsp

    @property
    def mv_macs_per_cycle(self) -> int:
        """Peak MACs per cycle for one activation vector: packing needs two tokens
        sharing a weight, so batch-1 decode uses one lane of each DSP."""
        return self.dsp_per_core

    @property
    def hbm_latency_cycles(self) -> int:
        """Request to first data of an LD, in kernel cycles."""
        return math.ceil(self.hbm.latency_ns * self.clock_mhz / 1000)

    @property
    def dma_port_gbps(self) -> float:
        """What a core's DMA moves through one HBM port: a buffer line per kernel cycle."""
        return self.line_bytes * self.clock_mhz / 1000

    @property
    def onchip_bytes(self) -> int:
        last = self.buffers[BUFFER_ORDER[-1]]
        return last.base + last.bytes

    @property
    def onchip_addr_bits(self) -> int:
        """Width of every on-chip address field (in lines of `line_bytes`)."""
        return max(1, math.ceil(math.log2(self.onchip_bytes // self.line_bytes)))

    @property
    def hbm_addr_bits(self) -> int:
        """Width of HBM offsets (in bursts of `hbm.burst_bytes`)."""
        return max(1, math.ceil(math.log2(self.hbm.capacity_bytes // self.hbm.burst_bytes)))

    @property
    def hbm_channel_bits(self) -> int:
        return max(1, math.ceil(math.log2(self.hbm.channels)))

    @cached_property
    def fingerprint(self) -> str:
        """Identifies the design a program was compiled for (file paths excluded)."""
        return self._digest(("source", "description"))

    @cached_property
    def program_key(self) -> str:
        """Identifies the program a design runs: designs that differ only in fields
        the compiler never reads (`COMPILER_BLIND`) share one compiled program."""
        return self._digest(("source", "description") + COMPILER_BLIND)

    def _digest(self, leave_out: tuple[str, ...]) -> str:
        data = asdict(self)
        for name in leave_out:
            data.pop(name)
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:32]

    def buffer_of(self, addr_line: int) -> Buffer | None:
        """Which buffer an on-chip address (in lines) falls into."""
        byte = addr_line * self.line_bytes
        for buf in self.buffers.values():
            if buf.base <= byte < buf.base + buf.bytes:
                return buf
        return None


_TOP = {"name", "description", "clock_mhz", "slrs", "fabric", "mpe", "sfu", "buffers", "hbm", "ddr",
        "slr_link", "power", "price_usd"}


def load_hw(spec: "str | Path | dict | HwConfig", source: str | None = None, *,
            fabric_estimate: bool = True) -> HwConfig:
    """Load and validate a hardware design: `u280`, `vhk158`, a YAML path, the same
    mapping as data (errors name `source`), or an HwConfig (returned as it is).
    `fabric_estimate=False` skips the LUT/FF check, for `dspflight rtl fit`,
    which writes the estimate that check reads."""
    if isinstance(spec, HwConfig):
        return spec
    f, path = config_fields("hardware", spec, source)
    path = path or f.source
    f.check_known(_TOP)
    clock = f.number("clock_mhz", lo=1, hi=2000)
    slrs = f.integer("slrs", lo=1, hi=8)
    mpe = _mpe_fields(f.sub("mpe"))
    sfu = f.sub("sfu")
    sfu.check_known({"lanes", "dsp", "softmax_passes", "latency_cycles"})
    buffers, line = _buffers(f.sub("buffers"))
    hbm = load_hbm(f.sub("hbm"), line)
    ddr = f.sub("ddr")
    ddr.check_known({"capacity_gb", "peak_gbps"})
    link = f.sub("slr_link")
    link.check_known({"bytes_per_cycle", "sync_latency_cycles"})
    power = f.sub("power")
    power.check_known({"static_w", "static_w_source"})
    fabric, family = _fabric(f.sub("fabric"))
    hw = HwConfig(
        name=f.text("name"), source=str(path), description=f.text("description", ""),
        clock_mhz=clock, slrs=slrs, **mpe,
        sfu_lanes=sfu.integer("lanes", lo=1),
        sfu_dsp=sfu.integer("dsp", lo=0),
        sfu_passes_softmax=sfu.integer("softmax_passes", lo=1, hi=4),
        misc_latency_cycles=sfu.integer("latency_cycles", lo=0),
        buffers=buffers, line_bytes=line, hbm=hbm,
        ddr_gbps=ddr.number("peak_gbps", lo=0.001),
        slr_link_bytes_per_cycle=link.integer("bytes_per_cycle", lo=1),
        slr_sync_latency_cycles=link.integer("sync_latency_cycles", lo=0),
        static_power_w=power.number("static_w", lo=0),
        price_usd=f.number("price_usd", lo=0),
        fabric=fabric, fabric_family=family,
    )
    _check_fits_fabric(hw, f, fabric_estimate)
    return hw


def _mpe_fields(mpe: Fields) -> dict:
    """The matrix engine's HwConfig fields: chains, their length and grouping, packing, patterns, widths."""
    mpe.check_known({"chains", "chain_length", "dsp_group", "macs_per_dsp", "sparsity_m", "sparsity_n",
                     "weight_bits"})
    chain_length = mpe.integer("chain_length", lo=2, hi=MAX_CHAIN_LENGTH)
    group = mpe.integer("dsp_group", lo=1)
    if chain_length % group or chain_length & (chain_length - 1):
        raise mpe.error("chain_length", f"expected a power of two and a multiple of dsp_group={group}, "
                                        f"got {chain_length}")
    m = mpe.integer("sparsity_m")
    if m != BLOCK:
        raise mpe.error("sparsity_m", f"expected {BLOCK}: the ISA's K blocks, the activation panels and the "
                                      f"executor's layouts are {BLOCK} columns wide, got {m}")
    ns = mpe.int_list("sparsity_n", lo=1)
    for n in ns:
        if m % n or n & (n - 1):
            raise mpe.error("sparsity_n", f"every N must be a power of two dividing sparsity_m={m}, got {n}")
        if n > chain_length and n % chain_length or n < chain_length and chain_length % n:
            raise mpe.error("sparsity_n", f"N={n} and chain_length={chain_length} must divide one another")
    bits = mpe.int_list("weight_bits", lo=2)
    if any(b > 8 for b in bits):
        raise mpe.error("weight_bits", f"weights are dequantized to INT8: expected bit widths <= 8, got {bits}")
    return dict(chains=mpe.integer("chains", lo=1), chain_length=chain_length, dsp_group=group,
                macs_per_dsp=mpe.integer("macs_per_dsp", lo=1, hi=2), sparsity_m=m, sparsity_n=ns,
                weight_bits=bits)


def _buffers(bufs: Fields) -> tuple[dict[str, Buffer], int]:
    """The on-chip buffers, laid out in BUFFER_ORDER, and the line size."""
    bufs.check_known(set(BUFFER_ORDER) | {"line_bytes"})
    line = bufs.integer("line_bytes", lo=1)
    buffers: dict[str, Buffer] = {}
    base = 0
    for name in BUFFER_ORDER:
        b = bufs.sub(name)
        b.check_known({"kind", "bytes"})
        size = b.integer("bytes", lo=line)
        if size % line:
            raise b.error("bytes", f"expected a multiple of buffers.line_bytes={line}, got {size}")
        buffers[name] = Buffer(name, b.text("kind", choices=("uram", "bram36")), size, base)
        base += size
    return buffers, line


def _fabric(fab: Fields) -> tuple[dict[str, int], str | None]:
    """Device totals the design must fit in, and the gateware family that estimates LUT and FF."""
    fab.check_known({"family", "dsp", "lut", "ff", "bram36", "uram"})
    fabric = {k: fab.integer(k, lo=0) for k in ("dsp", "lut", "ff", "bram36", "uram") if fab.has(k)}
    return fabric, fab.text("family", choices=FAMILIES) if fab.has("family") else None


def _check_fits_fabric(hw: HwConfig, f: Fields, fabric_estimate: bool) -> None:
    """An MPE or buffer set larger than the device is an impossible design."""
    fab = f.sub("fabric")
    if "dsp" in hw.fabric:
        need = hw.dsp_total
        if need > hw.fabric["dsp"]:
            raise f.sub("mpe").error("chains", f"{hw.slrs} cores x ({hw.chains} chains x ({hw.chain_length} MAC + "
                                               f"{SCALE_DSPS} scale DSP) + {hw.sfu_dsp} SFU DSP) = {need} DSPs, "
                                               f"more than fabric.dsp={hw.fabric['dsp']}")
    if hw.fabric_family and fabric_estimate:
        mpe = mpe_estimate(hw.fabric_family, chains=hw.chains, chain_length=hw.chain_length, cores=hw.slrs)
        for kind in ("lut", "ff"):
            if kind in hw.fabric and mpe[kind] > hw.fabric[kind]:
                raise f.sub("mpe").error("chains", f"{hw.slrs} cores x {hw.chains} chains of {hw.chain_length} DSPs "
                                                   f"need about {mpe[kind]:,.0f} {kind.upper()} (the gateware's "
                                                   f"{hw.fabric_family} fit, hwmodel/resources.py), more than "
                                                   f"fabric.{kind}={hw.fabric[kind]}")
    for kind in ("bram36", "uram"):
        if kind not in hw.fabric:
            continue
        need = hw.slrs * sum(b.blocks for b in hw.buffers.values() if b.kind == kind)
        if need > hw.fabric[kind]:
            name = next(b.name for b in hw.buffers.values() if b.kind == kind)
            raise f.sub("buffers").sub(name).error(
                "bytes", f"buffers need {need} {kind} blocks over {hw.slrs} cores, more than "
                         f"fabric.{kind}={fab.integer(kind)}")
