"""Data placement: which HBM pseudo-channels (PCs) each region of a program uses.

A placement gives every core a list of virtual channels (its DMA ports, one
PC each) and each region kind (weights, KV cache, host I/O) a channel group:
a run of the core's virtual channels, named in every LD/ST by `ch_first` and
`ch_count`. Each distinct set of PCs is a *space*: a linear range of bursts
interleaved burst by burst over its PCs (burst b of a space lives in PC
pcs[b mod n] at PC offset b // n bursts). Spaces sit one after another in the
program's logical HBM address space, which base registers, the packer and the
functional executor address. Spaces never share a PC, and every region starts
at a whole number of rows on each of its PCs, so a transfer's PC-level
pattern (and so its timing) does not depend on its base register.

The placement is recorded in the program header; the cycle engine, the
packer and the executor read it from there. The plans that produce it are a
compiler pass (compiler/passes/place_hbm.py).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from hwmodel.errors import ProgramFormatError
from hwmodel.hwconfig import HwConfig

REGIONS = ("weights", "kv", "io")


@dataclass(frozen=True)
class Space:
    pcs: tuple[int, ...]
    start: int       # first logical burst
    bursts: int


@dataclass(frozen=True)
class Placement:
    name: str
    core_pcs: tuple[tuple[int, ...], ...]          # [core][virtual channel] -> PC
    groups: tuple[tuple[str, int, int], ...]       # (region, first virtual channel, count)
    spaces: tuple[Space, ...] = ()

    def __hash__(self) -> int:          # asked for every transfer the engine times: computed once
        if "_hash" not in self.__dict__:
            object.__setattr__(self, "_hash", hash((self.name, self.core_pcs, self.groups, self.spaces)))
        return self.__dict__["_hash"]

    def group(self, region: str) -> tuple[int, int]:
        return next((first, count) for r, first, count in self.groups if r == region)

    def pcs_of(self, core: int, first: int, count: int) -> tuple[int, ...]:
        return self.core_pcs[core][first:first + count]

    def space_of(self, core: int, first: int, count: int) -> Space | None:
        pcs = self.pcs_of(core, first, count)
        return next((s for s in self.spaces if s.pcs == pcs), None)

    @property
    def end(self) -> int:
        """First logical burst after the last space."""
        return max((s.start + s.bursts for s in self.spaces), default=0)

    def laid_out(self, sizes: dict[tuple[int, ...], int], align: int) -> "Placement":
        """Spaces of the given sizes (bursts), one after another, each start aligned."""
        spaces, pos = [], 0
        for pcs, bursts in sizes.items():
            spaces.append(Space(pcs, pos, bursts))
            pos += -(-bursts // align) * align
        return replace(self, spaces=tuple(spaces))

    # ---- per-PC images --------------------------------------------------------
    def channel_images(self, flat: np.ndarray, hw: HwConfig) -> np.ndarray:
        """[PC][bytes]: where each burst of the logical image lies on the PCs."""
        burst = hw.hbm.burst_bytes
        depth = max((-(-s.bursts // len(s.pcs)) for s in self.spaces), default=0)
        out = np.zeros((hw.hbm.channels, depth * burst), np.uint8)
        for s in self.spaces:
            n = len(s.pcs)
            part = np.zeros(-(-s.bursts // n) * n * burst, np.uint8)
            have = flat[s.start * burst: (s.start + s.bursts) * burst]
            part[:len(have)] = have
            rows = part.reshape(-1, n, burst)
            for i, pc in enumerate(s.pcs):
                out[pc, :rows.shape[0] * burst] = rows[:, i].reshape(-1)
        return out

    def from_channel_images(self, channels: np.ndarray, hw: HwConfig) -> np.ndarray:
        """The logical image back from per-PC images (inverse of channel_images)."""
        burst = hw.hbm.burst_bytes
        flat = np.zeros(self.end * burst, np.uint8)
        for s in self.spaces:
            n = len(s.pcs)
            rows = -(-s.bursts // n)
            block = np.stack([channels[pc, :rows * burst].reshape(rows, burst) for pc in s.pcs], axis=1)
            flat[s.start * burst: (s.start + s.bursts) * burst] = block.reshape(-1)[: s.bursts * burst]
        return flat

    # ---- header -------------------------------------------------------------
    def to_json(self) -> dict:
        return {"name": self.name, "core_pcs": [list(p) for p in self.core_pcs],
                "groups": [list(g) for g in self.groups],
                "spaces": [[list(s.pcs), s.start, s.bursts] for s in self.spaces]}

    @classmethod
    def from_json(cls, data, hw: HwConfig, where: str = "program header") -> "Placement":
        """Read and check a header's placement against the design."""
        def bad(msg: str) -> ProgramFormatError:
            return ProgramFormatError(f"{where}: placement: {msg}")
        try:
            name = data["name"]
            core_pcs = tuple(_ints(row, "core_pcs") for row in data["core_pcs"])
            groups = tuple(_triple(g, "groups", str) for g in data["groups"])
            spaces = tuple(Space(_ints(pcs, "spaces"), start, n)
                           for pcs, start, n in (_triple(s, "spaces", list) for s in data["spaces"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"malformed ({type(exc).__name__}: {exc})") from None
        if not isinstance(name, str) or len(core_pcs) != hw.slrs:
            raise bad(f"expected a name and one PC list per core ({hw.slrs}), got {len(core_pcs)}")
        if any(not 0 <= p < hw.hbm.channels for row in core_pcs for p in row):
            raise bad(f"a PC outside 0..{hw.hbm.channels - 1}")
        if sorted(r for r, _, _ in groups) != sorted(REGIONS):
            raise bad(f"expected one group for each of {', '.join(REGIONS)}")
        for region, first, count in groups:
            if count < 1 or first < 0 or any(first + count > len(row) for row in core_pcs):
                raise bad(f"group {region} ({first}, {count}) outside a core's channels")
        used: dict[int, tuple[int, ...]] = {}
        for s in spaces:
            if s.start < 0 or s.bursts < 0 or not s.pcs:
                raise bad(f"space on PCs {list(s.pcs)} has a negative start or size")
            for pc in s.pcs:
                if used.setdefault(pc, s.pcs) != s.pcs:
                    raise bad(f"PC {pc} belongs to two spaces")
            if -(-s.bursts // len(s.pcs)) * hw.hbm.burst_bytes > hw.hbm.address_map.pc_bytes:
                raise bad(f"space on PCs {list(s.pcs)} is larger than its PCs")
            if (s.start + s.bursts) * hw.hbm.burst_bytes > hw.hbm.capacity_bytes:
                raise bad(f"space on PCs {list(s.pcs)} ends beyond the HBM capacity")
        return cls(name, core_pcs, groups, spaces)


def _ints(value, where: str) -> tuple[int, ...]:
    """A list of integers (JSON: no floats, strings or booleans)."""
    if not isinstance(value, list) or any(type(v) is not int for v in value):
        raise TypeError(f"{where}: expected a list of integers, got {str(value)[:40]}")
    return tuple(value)


def _triple(value, where: str, first: type) -> tuple:
    """[first, int, int]: a group (region, first, count) or a space (PCs, start, bursts)."""
    if not isinstance(value, list) or len(value) != 3 or not isinstance(value[0], first) \
            or any(type(v) is not int for v in value[1:]):
        raise TypeError(f"{where}: expected [{first.__name__}, int, int], got {str(value)[:40]}")
    return tuple(value)
