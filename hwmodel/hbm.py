"""The HBM memory system by mechanism, and the formulas that time traffic on it.

Loaded from the `hbm:` section of a hardware YAML: stacks and pseudo-channels
(PCs) with their width and data rate (so the peak is derived), the address
map (row, bank, bank-group and column bits), DRAM timings, the ports and the
interconnect between the cores and the PCs. There is no efficiency factor: a
stream's time follows from the bytes and row openings it puts on each PC, the
refresh duty, the column-command spacing its address map allows, and the
ports it goes through. Used by the cycle engine (every LD/ST), the roofline
(sustained bandwidth) and `dspflight hbm-bench` (the vendors' experiments).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from hwmodel.configio import Fields

_MAP_FIELD = re.compile(r"^(\d+)(R|BG|B|C)$")


@dataclass(frozen=True)
class AddressMap:
    """A PC-local byte address split MSB to LSB, e.g. `16R-2B-1BG-7C-1BG-3C`."""
    spec: str
    fields: tuple[tuple[str, int], ...]      # (R | B | BG | C, bits), most significant first

    def _bits(self, kind: str) -> int:
        return sum(b for k, b in self.fields if k == kind)

    @property
    def pc_bytes(self) -> int:
        return 1 << sum(b for _, b in self.fields)

    @property
    def row_bytes(self) -> int:
        return 1 << self._bits("C")

    @property
    def banks(self) -> int:
        return 1 << (self._bits("B") + self._bits("BG"))

    @property
    def bg_run_bytes(self) -> int:
        """Bytes a linear stream stays in one bank group: everything below the lowest BG bit."""
        below = 0
        for kind, bits in reversed(self.fields):
            if kind == "BG":
                return 1 << below
            below += bits
        return 1 << below


def parse_address_map(spec: str) -> AddressMap:
    """`16R-2B-2BG-10C` -> AddressMap; a ValueError says what is wrong."""
    fields = []
    for part in spec.split("-"):
        m = _MAP_FIELD.match(part.strip())
        if not m or int(m.group(1)) < 1:
            raise ValueError(f"expected fields like 14R, 2B, 2BG, 10C joined by '-', got {part!r}")
        fields.append((m.group(2), int(m.group(1))))
    kinds = {k for k, _ in fields}
    if not {"R", "C"} <= kinds or sum(b for _, b in fields) > 40:
        raise ValueError(f"expected row (R) and column (C) bits, at most 40 bits in all, got {spec!r}")
    return AddressMap(spec, tuple(fields))


@dataclass(frozen=True)
class DramTiming:
    """DRAM timings in ns (the vendor's where published, else JEDEC-class values)."""
    tRC: float       # activate to activate, same bank
    tCCD_S: float    # column to column, different bank groups
    tCCD_L: float    # column to column, same bank group
    tRFC: float      # all-bank refresh duration
    tREFI: float     # refresh interval
    tWTR: float      # write to read turnaround
    tRTW: float      # read to write turnaround


@dataclass(frozen=True)
class Hbm:
    capacity_bytes: int
    stacks: int
    pcs_per_stack: int
    pc_bits: int
    data_rate_mtps: float
    access_bytes: int          # one column access (burst length x PC width)
    address_map: AddressMap
    timing: DramTiming
    row_miss_ns: float         # sustained interval between row openings in random banks of one PC
    latency_ns: float          # request to first data of a row miss, through the interconnect
    port_bits: int
    port_mhz: float
    ports_per_pc: int
    interconnect: str          # "axi_switch" (UltraScale+) or "noc" (Versal)
    segment_pcs: int           # PCs (and ports) per switch segment
    lateral_share: float       # share of a port's throughput for traffic that leaves its segment
    noc_link_gbps: float       # read limit of one NoC link (0: no NoC)
    burst_bytes: int           # addressing granule of the ISA and interleave unit of a channel group

    # ---- derived values -------------------------------------------------
    @property
    def channels(self) -> int:
        return self.stacks * self.pcs_per_stack

    @property
    def pc_gbps(self) -> float:
        """Raw peak of one PC: width x data rate."""
        return self.pc_bits / 8 * self.data_rate_mtps / 1000

    @property
    def peak_gbps(self) -> float:
        return self.channels * self.pc_gbps

    @property
    def port_gbps(self) -> float:
        """One port's throughput, capped by its NoC link where there is one."""
        raw = self.port_bits / 8 * self.port_mhz / 1000
        return min(raw, self.noc_link_gbps) if self.noc_link_gbps else raw

    @property
    def refresh_duty(self) -> float:
        """Fraction of time an all-bank refresh blocks the PC."""
        return self.timing.tRFC / self.timing.tREFI

    @property
    def access_ns(self) -> float:
        return self.access_bytes / self.pc_gbps

    def column_ns(self, map_: AddressMap | None = None) -> float:
        """Mean spacing of the column accesses of a linear read: within a bank-group
        run consecutive accesses wait tCCD_L, across runs tCCD_S."""
        m = map_ or self.address_map
        t = self.timing
        same = max(0.0, 1 - self.access_bytes / m.bg_run_bytes)
        return same * max(self.access_ns, t.tCCD_L) + (1 - same) * max(self.access_ns, t.tCCD_S)

    def stream_gbps(self, map_: AddressMap | None = None) -> float:
        """What one PC sustains for a linear read: column spacing and refresh."""
        return self.access_bytes / self.column_ns(map_) * (1 - self.refresh_duty)

    def pc_link_gbps(self, ports: int | None = None) -> float:
        """How fast one PC's data can leave through `ports` of its ports (default all)."""
        return min(self.stream_gbps(), (ports or self.ports_per_pc) * self.port_gbps)

    @cached_property
    def link_gbps(self) -> float:
        """pc_link_gbps() through all ports, computed once (the engine asks for every transfer)."""
        return self.pc_link_gbps()

    # ---- formulas ---------------------------------------------------------
    def stream_ns(self, nbytes, opens):
        """Time one PC needs for a stream of `nbytes` that opens `opens` rows
        (numpy arrays allowed): data at the sustained rate, or the row openings
        when they come faster than the PC can open rows."""
        return np.maximum(np.asarray(nbytes) / self.link_gbps, np.asarray(opens) * self.row_miss_ns)

    def random_access_ns(self, size: int, map_: AddressMap | None = None) -> float:
        """Mean time per access of `size` bytes at random addresses of one PC: each
        opens a row; with probability 1/banks it finds its bank still busy (tRC)."""
        data = size / self.stream_gbps(map_)
        base = max(data, self.row_miss_ns)
        return base + max(0.0, self.timing.tRC - base) / self.address_map.banks

    def ordered_random_ns(self, size: int, pcs: int) -> float:
        """Mean time per random access of one master with one AXI ID over `pcs` PCs:
        reads of one ID return in order, so a read to another PC than the last
        waits for the last to complete (a full latency; its row opening is then
        inside that latency)."""
        p = (pcs - 1) / pcs
        data = size / self.stream_gbps()
        return (1 - p) * self.random_access_ns(size) + p * (self.latency_ns + data)


def load_hbm(h: Fields, line_bytes: int) -> Hbm:
    """The `hbm:` section of a hardware YAML, checked field by field."""
    h.check_known({"capacity_gb", "stacks", "pcs_per_stack", "pc_bits", "data_rate_mtps", "access_bytes",
                   "address_map", "timing_ns", "row_miss_ns", "latency_ns", "ports", "interconnect",
                   "burst_bytes"})
    try:
        amap = parse_address_map(h.text("address_map"))
    except ValueError as exc:
        raise h.error("address_map", str(exc)) from None
    t = h.sub("timing_ns")
    t.check_known({"tRC", "tCCD_S", "tCCD_L", "tRFC", "tREFI", "tWTR", "tRTW"})
    timing = DramTiming(**{k: t.number(k, lo=0.0, hi=1e6) for k in
                           ("tRC", "tCCD_S", "tCCD_L", "tRFC", "tREFI", "tWTR", "tRTW")})
    if timing.tRFC >= timing.tREFI:
        raise t.error("tRFC", f"expected less than tREFI={timing.tREFI}, got {timing.tRFC}")
    ports = h.sub("ports")
    ports.check_known({"bits", "mhz", "per_pc"})
    net = h.sub("interconnect")
    net.check_known({"kind", "segment_pcs", "lateral_share", "noc_link_gbps"})
    kind = net.text("kind", choices=("axi_switch", "noc"))
    hbm = Hbm(
        capacity_bytes=int(h.number("capacity_gb", lo=0.001, hi=1e6) * 2**30),
        stacks=h.integer("stacks", lo=1, hi=16),
        pcs_per_stack=h.integer("pcs_per_stack", lo=1, hi=64),
        pc_bits=h.integer("pc_bits", lo=8, hi=1024),
        data_rate_mtps=h.number("data_rate_mtps", lo=1, hi=1e5),
        access_bytes=h.integer("access_bytes", lo=1, hi=4096),
        address_map=amap,
        timing=timing,
        row_miss_ns=h.number("row_miss_ns", lo=0.0, hi=1e5),
        latency_ns=h.number("latency_ns", lo=0.0, hi=1e5),
        port_bits=ports.integer("bits", lo=8, hi=4096),
        port_mhz=ports.number("mhz", lo=1, hi=1e4),
        ports_per_pc=ports.integer("per_pc", lo=1, hi=8),
        interconnect=kind,
        segment_pcs=net.integer("segment_pcs", 0, lo=0, hi=256),
        lateral_share=net.number("lateral_share", 1.0, lo=0.01, hi=1.0),
        noc_link_gbps=net.number("noc_link_gbps", 0.0, lo=0.0, hi=1e4),
        burst_bytes=h.integer("burst_bytes", lo=1, hi=1 << 20),
    )
    _check(h, hbm, line_bytes)
    return hbm


def _check(h: Fields, hbm: Hbm, line_bytes: int) -> None:
    """Fields that must agree with each other."""
    ch = hbm.channels
    if ch & (ch - 1) or ch > 256:
        raise h.error("pcs_per_stack", f"stacks x pcs_per_stack must be a power of two <= 256, got {ch}")
    if hbm.capacity_bytes != ch * hbm.address_map.pc_bytes:
        raise h.error("capacity_gb", f"{ch} PCs of {hbm.address_map.pc_bytes} bytes (address_map "
                                     f"{hbm.address_map.spec}) hold {ch * hbm.address_map.pc_bytes / 2**30:g} GB, "
                                     f"not {hbm.capacity_bytes / 2**30:g}")
    for name, value in (("burst_bytes", hbm.burst_bytes), ("access_bytes", hbm.access_bytes)):
        if value & (value - 1):
            raise h.error(name, f"expected a power of two, got {value}")
    if hbm.burst_bytes < hbm.access_bytes or hbm.address_map.row_bytes % hbm.burst_bytes:
        raise h.error("burst_bytes", f"expected a multiple of access_bytes={hbm.access_bytes} dividing the "
                                     f"{hbm.address_map.row_bytes}-byte row, got {hbm.burst_bytes}")
    if line_bytes % hbm.burst_bytes and hbm.burst_bytes % line_bytes:
        raise h.error("burst_bytes", f"expected a multiple or divisor of buffers.line_bytes={line_bytes}")
    if hbm.interconnect == "axi_switch" and (not hbm.segment_pcs or ch % hbm.segment_pcs):
        raise h.error("interconnect", f"an axi_switch needs segment_pcs dividing the {ch} PCs")


def gbps(size: float, ns: float) -> float:
    """Bytes per ns is GB/s."""
    return size / ns if ns > 0 else math.inf
