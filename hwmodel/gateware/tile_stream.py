"""The wire format of the matrix-vector tile: N:16 weight rows and activation
vectors laid out as beats, and beats as the integers on the payload bus.

This is what a weight-buffer reader feeds the tile; the benches use it to
drive the gateware, and `record_tile` reads a weight record as the compiler
packs it (docs/numerics.md) the way that reader would. Order: for each pass
(token pair), for each step of `chains` rows, the row's beats; beat t of a row
holds its non-zeros t*L .. t*L+L-1 as `bits` bit planes, the planes above
zero (padded with codes equal to the zero point, so weight 0), the multiplier
and zero point of the scale group they lie in, and the activation blocks they
fall in.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth import Shape
from amaranth.lib import data

from hwmodel.chain_timing import row_cycles
from hwmodel.dequant import scaled_weights
from hwmodel.gateware.mv_tile import MatrixVectorTile
from hwmodel.gateware.reference import sparse_mv
from hwmodel.hwconfig import HwConfig
from hwmodel.weight_record import decode_record, pack_planes


@dataclass(frozen=True)
class SparseTile:
    """One MV/MM tile: `rows` rows of `kblk` N:16 blocks of unsigned `bits`-bit codes,
    and `tokens` activation vectors. q, index: (rows, kblk, n); m, z: (rows, groups),
    one multiplier and zero point per `group` consecutive non-zeros of a row
    (hwmodel.dequant); x: (tokens, kblk*16)."""
    n: int
    bits: int
    group: int
    q: np.ndarray
    index: np.ndarray
    m: np.ndarray
    z: np.ndarray
    x: np.ndarray

    @property
    def rows(self) -> int:
        return self.q.shape[0]

    @property
    def kblk(self) -> int:
        return self.q.shape[1]

    @property
    def tokens(self) -> int:
        return self.x.shape[0]

    def weights(self) -> np.ndarray:
        """The integer weights m * d (rows, kblk, n), as hwmodel.dequant defines them."""
        nnz = self.kblk * self.n
        g = np.arange(nnz) // self.group
        return scaled_weights(self.q.reshape(self.rows, nnz), self.z[:, g], self.m[:, g]).reshape(self.q.shape)


def record_tile(hw: HwConfig, record: np.ndarray, *, rows: int, kblk: int, n: int, bits: int, group: int,
                x: np.ndarray) -> SparseTile:
    """The tile a weight record (bytes as packed: values | indices | multipliers |
    zero points | requant, each padded to bursts) feeds, with activations `x`. Only
    fields are cut out; the dequantizer does the arithmetic."""
    f = decode_record(hw, np.asarray(record, np.uint8), rows=rows, kblk=kblk, n=n, bits=bits, group=group)
    return SparseTile(n=n, bits=bits, group=group, q=f.codes, index=f.index, m=f.scales.astype(np.int64),
                      z=f.zeros, x=np.asarray(x, np.int64))


def pack(layout, value) -> int:
    """The bits of `value` (nested dicts / lists / ints) laid out as `layout`."""
    if isinstance(layout, data.ArrayLayout):
        size = Shape.cast(layout.elem_shape).width if not isinstance(layout.elem_shape, data.Layout) \
            else layout.elem_shape.size
        out = 0
        for k, item in enumerate(value):
            out |= pack(layout.elem_shape, item) << (k * size)
        return out
    if isinstance(layout, data.StructLayout):
        out = 0
        for name, field in layout:
            if name in value:
                out |= pack(field.shape, value[name]) << field.offset
        return out
    width = Shape.cast(layout).width
    return int(value) & ((1 << width) - 1)


def unpack(layout, bits: int):
    """The inverse of `pack`, with signed fields sign-extended."""
    if isinstance(layout, data.ArrayLayout):
        elem = layout.elem_shape
        size = elem.size if isinstance(elem, data.Layout) else Shape.cast(elem).width
        return [unpack(elem, bits >> (k * size)) for k in range(layout.length)]
    if isinstance(layout, data.StructLayout):
        return {name: unpack(field.shape, bits >> field.offset) for name, field in layout}
    shape = Shape.cast(layout)
    value = bits & ((1 << shape.width) - 1)
    if shape.signed and value >> (shape.width - 1):
        value -= 1 << shape.width
    return value


def beats_per_row(tile: MatrixVectorTile, work: SparseTile) -> int:
    return row_cycles(work.kblk, work.n, tile.chain_length)


def tile_beats(tile: MatrixVectorTile, work: SparseTile) -> list[dict]:
    """Every beat of `work` on `tile`, as payload values. A beat's L non-zeros must lie in
    one scale group, so the group must be a multiple of the chain length."""
    L, C, blk = tile.chain_length, tile.chains, tile.block
    n, bits = work.n, work.bits
    if work.group % L:
        raise ValueError(f"scale groups of {work.group} non-zeros split the beats of a chain of {L}: "
                         f"a group must be a multiple of the chain length")
    if any(v.size and (v.min() < 0 or v.max() >> bits) for v in (work.q, work.z)):
        raise ValueError(f"codes and zero points must be unsigned {bits}-bit values")
    per_row = beats_per_row(tile, work)
    nnz = work.kblk * n
    steps = -(-work.rows // C)
    passes = -(-work.tokens // 2)
    padded_x = np.zeros((2 * passes, (work.kblk + tile.slots) * blk), dtype=np.int64)
    padded_x[:work.tokens, :work.kblk * blk] = work.x
    group_of = np.arange(per_row) * L // work.group                   # each beat's scale group
    params = {}
    for name in ("m", "z"):
        params[name] = np.zeros((steps * C, per_row), dtype=np.int64)   # padding rows: m = 0, weight 0
        params[name][:work.rows] = getattr(work, name)[:, group_of]
    q = np.repeat(params["z"], L, axis=1)                             # padding lanes: q = z, weight 0
    q[:work.rows, :nnz] = work.q.reshape(work.rows, nnz)
    index = np.zeros_like(q)
    index[:work.rows, :nnz] = work.index.reshape(work.rows, nnz)
    q_bits = [[int.from_bytes(pack_planes(q[r, t * L:(t + 1) * L][None], bits, L), "little")
               for t in range(per_row)] for r in range(steps * C)]
    out = []
    for p in range(passes):
        x0, x1 = padded_x[2 * p], padded_x[2 * p + 1]
        acts = [[[{"lo": int(x0[b * blk + c]), "hi": int(x1[b * blk + c])} for c in range(blk)]
                 for b in range(t * L // n, t * L // n + tile.slots)] for t in range(per_row)]
        for step in range(steps):
            for t in range(per_row):
                lanes = [{"q": q_bits[step * C + c][t], **{k: int(v[step * C + c, t]) for k, v in params.items()},
                          "index": [int(i) for i in index[step * C + c, t * L:(t + 1) * L]]} for c in range(C)]
                out.append({"acts": acts[t], "lanes": lanes, "last": int(t == per_row - 1)})
    return out


def expected_results(tile: MatrixVectorTile, work: SparseTile) -> np.ndarray:
    """Reference results in stream order: (passes * steps, chains, 2) with [..., 0] the pair's even token."""
    C = tile.chains
    y = sparse_mv(work.weights(), work.index, work.x, tile.block)   # (tokens, rows)
    steps = -(-work.rows // C)
    passes = -(-work.tokens // 2)
    full = np.zeros((2 * passes, steps * C), dtype=np.int64)
    full[:work.tokens, :work.rows] = y
    return full.reshape(passes, 2, steps, C).transpose(0, 2, 3, 1).reshape(passes * steps, C, 2)
