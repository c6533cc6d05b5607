"""The weight record: how one tile's sparse, quantized weights lie in HBM and
in the weight buffer, defined once (like `program.py` for `.dfp` files).

Parts in order, each padded to whole HBM bursts: the non-zero codes (`bits`
each, as bit planes per beat: `pack_planes`), their columns inside the
M-wide block (`index_bits(M)` each, only when sparse), one scale
(`SCALE_BYTES`: the multiplier m of `hwmodel.dequant`) and one zero point
(`bits`) per `group` non-zeros of a row, and one FP32 requantization
multiplier per row (docs/numerics.md). `compiler.weights.pack` encodes
records, the functional executor and the RTL bench decode them, the cost
formulas size them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hwmodel.dequant import SCALE_BYTES
from hwmodel.hwconfig import HwConfig

PARTS = ("values", "indices", "scales", "zeros", "requant")
LINEAR_OPS = ("qkv", "o", "up", "down", "lm_head")    # the ops whose weights are records (q|k|v and gate|up stacked)


@dataclass(frozen=True)
class RecordFields:
    """A record's contents: `rows` rows of `kblk` blocks of `n` kept weights."""
    codes: np.ndarray       # (rows, kblk, n) unsigned `bits`-bit codes
    index: np.ndarray       # (rows, kblk, n) column of each code inside its block
    scales: np.ndarray      # (rows, groups) uint8: the multiplier m of each scale group
    zeros: np.ndarray       # (rows, groups) unsigned `bits`-bit zero points
    requant: np.ndarray     # (rows,) float32


def index_bits(m: int) -> int:
    """Bits of a column index inside an M-wide block."""
    return (m - 1).bit_length()


def scale_groups(kblk: int, n: int, group: int) -> int:
    """Scale groups of one row: `group` kept weights each, the last one partial."""
    return math.ceil(kblk * n / group)


@lru_cache(maxsize=65536)
def _parts(hw: HwConfig, rows: int, kblk: int, n: int, bits: int, group: int) -> tuple[tuple[str, int], ...]:
    burst = hw.hbm.burst_bytes
    nnz, groups = rows * kblk * n, rows * scale_groups(kblk, n, group)

    def padded(nbytes: float) -> int:
        return math.ceil(nbytes / burst) * burst

    return (("values", padded(nnz * bits / 8)),
            ("indices", padded(nnz * index_bits(hw.sparsity_m) / 8) if n < hw.sparsity_m else 0),
            ("scales", padded(groups * SCALE_BYTES)),
            ("zeros", padded(groups * bits / 8)),
            ("requant", padded(rows * 4)))


def record_parts(hw: HwConfig, rows: int, kblk: int, n: int, bits: int, group: int) -> dict[str, int]:
    """Bytes of each part of a record, in order, each padded to whole bursts."""
    return dict(_parts(hw, rows, kblk, n, bits, group))


@lru_cache(maxsize=65536)
def record_bytes(hw: HwConfig, rows: int, kblk: int, n: int, bits: int, group: int) -> int:
    """HBM and buffer bytes of a record (the sum of its parts)."""
    return sum(record_parts(hw, rows, kblk, n, bits, group).values())


def _beat_planes(code_bits: np.ndarray, beat: int) -> np.ndarray:
    """(rows, nnz, bits) code bits in the values part's order (`pack_planes`)."""
    rows, nnz, bits = code_bits.shape
    full = nnz // beat * beat
    head = code_bits[:, :full].reshape(rows, full // beat, beat, bits).transpose(0, 1, 3, 2).reshape(rows, -1)
    return np.concatenate([head, code_bits[:, full:].transpose(0, 2, 1).reshape(rows, -1)], axis=1)


def pack_planes(codes: np.ndarray, bits: int, beat: int) -> bytes:
    """The values part: each row's codes in beats of `beat` (the chain length; a
    row's last beat may be short), each beat as `bits` planes, plane p holding
    bit p of the beat's codes in order, LSB first. A lane's bit p then sits at
    one place of the tile's bus for every width, so the dequantizer needs no
    per-width unpacking; the part is as long as a plain bit stream."""
    rows = codes.shape[0]
    v = np.asarray(codes).astype(np.uint16).reshape(rows, -1)
    code_bits = ((v[:, :, None] >> np.arange(bits, dtype=np.uint16)) & 1).astype(np.uint8)
    return np.packbits(_beat_planes(code_bits, beat).ravel(), bitorder="little").tobytes()


def unpack_planes(raw: np.ndarray, rows: int, nnz: int, bits: int, beat: int) -> np.ndarray:
    """The inverse of `pack_planes`: (rows, nnz) codes (int64)."""
    stream = np.unpackbits(np.asarray(raw, np.uint8), bitorder="little")[:rows * nnz * bits].reshape(rows, -1)
    code_bits = np.empty((rows, nnz, bits), np.uint8)
    full = nnz // beat * beat
    code_bits[:, :full] = stream[:, :full * bits].reshape(rows, full // beat, bits, beat).transpose(0, 1, 3, 2) \
        .reshape(rows, full, bits)
    code_bits[:, full:] = stream[:, full * bits:].reshape(rows, bits, nnz - full).transpose(0, 2, 1)
    return code_bits.astype(np.int64) @ (1 << np.arange(bits, dtype=np.int64))


def pack_bits(values: np.ndarray, width: int) -> bytes:
    """Unsigned values LSB-first into a little-endian bit stream."""
    v = np.asarray(values).astype(np.uint16).ravel()
    bits = (v[:, None] >> np.arange(width, dtype=np.uint16)) & 1
    return np.packbits(bits.astype(np.uint8).ravel(), bitorder="little").tobytes()


def unpack_bits(raw: np.ndarray, count: int, width: int) -> np.ndarray:
    """`count` unsigned `width`-bit values of an LSB-first bit stream (int64)."""
    bits = np.unpackbits(np.asarray(raw, np.uint8), bitorder="little")[:count * width].reshape(count, width)
    return bits.astype(np.int64) @ (1 << np.arange(width, dtype=np.int64))


def encode_record(hw: HwConfig, f: RecordFields, bits: int, group: int) -> bytes:
    """The record's bytes."""
    rows, kblk, n = f.codes.shape
    parts = record_parts(hw, rows, kblk, n, bits, group)
    data = {"values": pack_planes(f.codes, bits, hw.chain_length),
            "indices": pack_bits(f.index, index_bits(hw.sparsity_m)) if n < hw.sparsity_m else b"",
            "scales": np.ascontiguousarray(f.scales, np.uint8).tobytes(),
            "zeros": pack_bits(f.zeros, bits),
            "requant": np.ascontiguousarray(f.requant, np.float32).tobytes()}
    return b"".join(data[name] + bytes(parts[name] - len(data[name])) for name in PARTS)


def decode_record(hw: HwConfig, raw: np.ndarray, *, rows: int, kblk: int, n: int, bits: int,
                  group: int) -> RecordFields:
    """The fields of the record at the start of `raw` (bytes); a dense record's
    indices are the columns in order. ValueError if `raw` is too short."""
    parts = record_parts(hw, rows, kblk, n, bits, group)
    need = sum(parts.values())
    if len(raw) < need:
        raise ValueError(f"a record of {rows} rows x {kblk} blocks N={n} at {bits} bits needs {need} bytes, "
                         f"got {len(raw)}")
    at, cut = 0, {}
    for name, size in parts.items():
        cut[name] = np.asarray(raw[at: at + size], np.uint8)
        at += size
    count, groups = rows * kblk * n, scale_groups(kblk, n, group)
    if n < hw.sparsity_m:
        index = unpack_bits(cut["indices"], count, index_bits(hw.sparsity_m)).reshape(rows, kblk, n)
    else:
        index = np.broadcast_to(np.arange(n, dtype=np.int64), (rows, kblk, n)).copy()
    codes = unpack_planes(cut["values"], rows, kblk * n, bits, hw.chain_length)
    return RecordFields(codes=codes.reshape(rows, kblk, n), index=index,
                        scales=cut["scales"][:rows * groups * SCALE_BYTES].reshape(rows, groups),
                        zeros=unpack_bits(cut["zeros"], rows * groups, bits).reshape(rows, groups),
                        requant=cut["requant"][:rows * 4].view(np.float32))
