"""Weight dequantization, defined once: the arithmetic of the dequantizer.

A group of stored weights shares a zero point z (as wide as a code) and a
fixed-point scale m / 2^sh (m an 8-bit multiplier, sh a shift). A b-bit
code q expands to

    w8 = sat127((m * (q - z) + r) >> sh),   r = 2^(sh-1) (0 when sh = 0)

with an arithmetic shift, so the result rounds half up, and saturation to
[-127, 127]. In hardware that is a (b+1) x 8-bit multiply, an add and a
shift per lane: no floating point. The compiler's quantizer produces (m, sh),
the packer stores them as two bytes per group (m, then sh) where a record
keeps its scales, and the functional executor and the RTL dequantizer
compute exactly this (docs/numerics.md).
"""
from __future__ import annotations

import numpy as np

from hwmodel.isa import INT8_MAX

MULT_BITS = 8                     # m: 0 .. 255
SHIFT_MAX = 15                    # sh: 0 .. 15
SHIFT_BITS = SHIFT_MAX.bit_length()   # sh's field in hardware: 4 bits
SCALE_BYTES = 2                   # a group's scale in a weight record: m, sh


def fixed_scale(scale: np.ndarray) -> np.ndarray:
    """(m, sh) pairs [..., 2] (uint8) nearest to each real scale: the largest
    shift whose multiplier still fits 8 bits, so the relative error is at most
    1/2 / 128 for scales that are not tiny."""
    s = np.asarray(scale, np.float64)
    top = (1 << MULT_BITS) - 1
    sh = np.floor(np.log2(top / np.maximum(s, 1e-30))).clip(0, SHIFT_MAX)
    m = np.rint(s * 2.0 ** sh)
    over = m > top                     # rint rounded up past 8 bits: one shift less
    sh = np.where(over & (sh > 0), sh - 1, sh)
    m = np.minimum(np.rint(s * 2.0 ** sh), top)
    return np.stack([m, sh], axis=-1).astype(np.uint8)


def scale_value(ms: np.ndarray) -> np.ndarray:
    """The real scale m / 2^sh a pair stands for."""
    ms = np.asarray(ms)
    return ms[..., 0].astype(np.float64) / 2.0 ** ms[..., 1].astype(np.float64)


def dequantize_codes(q: np.ndarray, z: np.ndarray, ms: np.ndarray) -> np.ndarray:
    """INT8 weights (int64) from codes q, zero points z and (m, sh) pairs, all broadcast."""
    m = np.asarray(ms)[..., 0].astype(np.int64)
    sh = np.asarray(ms)[..., 1].astype(np.int64)
    prod = m * (np.asarray(q, np.int64) - np.asarray(z, np.int64))
    rounded = (prod + ((1 << sh) >> 1)) >> sh
    return np.clip(rounded, -INT8_MAX, INT8_MAX)
