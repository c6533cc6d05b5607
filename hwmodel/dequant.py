"""Weight dequantization, defined once: the arithmetic of the dequantizer.

A group of stored weights shares a zero point z (as wide as a code) and an
8-bit multiplier m; a row shares one power-of-two exponent, which the
compiler folds into the row's real scale (and so into its FP32
requantization multiplier). A b-bit code q enters the DSP as the INT8

    d = wrap8(q - z)          (an 8-bit subtract: two's complement, no saturation)

and the group's integer sum is scaled by m on its way into the accumulator:

    acc = wrap48(sum over groups g of m_g * sum over j in g of d_j * x_j)

In hardware that is an 8-bit subtractor per lane, the chain's INT8 x INT8
products as before, and one multiply by m per chain and beat (every beat lies
in one group), in `SCALE_DSPS` DSP48s beside the chain: no per-weight
multiplier, no rounding, no floating point. The
quantizer keeps |q - z| <= 127 (b <= 7 always; 8-bit codes are symmetric,
z = 128), so the wrap never acts on a compiled model. The packer stores m as
one byte per group, and the functional executor, the reference and the RTL
compute exactly this (docs/numerics.md).
"""
from __future__ import annotations

import numpy as np

MULT_BITS = 8                     # m: 0 .. 255
MULT_MAX = (1 << MULT_BITS) - 1
SCALE_BYTES = 1                   # a group's scale in a weight record: m
ACC_BITS = 48                     # the accumulator: a DSP48's P register
SCALE_DSPS = 2                    # per chain: the group scale, one DSP48 multiply (by m) per token
SYMMETRIC_ZERO = 128              # the zero point of 8-bit codes


def row_multipliers(scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For real group scales [rows, groups]: the 8-bit multipliers m (uint8, >= 1)
    and each row's exponent e (int64) with scale ~ m / 2^e, e the largest that
    keeps the row's largest scale within 8 bits."""
    s = np.asarray(scale, np.float64)
    top = np.maximum(s.max(axis=-1, keepdims=True), 1e-30)
    e = np.floor(np.log2(MULT_MAX / top)).clip(-64, 64)
    e = np.where(np.rint(top * 2.0 ** e) > MULT_MAX, e - 1, e)      # rint rounded past 8 bits
    m = np.clip(np.rint(s * 2.0 ** e), 1, MULT_MAX)
    return m.astype(np.uint8), e[..., 0].astype(np.int64)


def code_diff(q: np.ndarray, z: np.ndarray) -> np.ndarray:
    """d = wrap8(q - z) (int64), what a lane feeds its DSP."""
    return (np.asarray(q, np.int64) - np.asarray(z, np.int64) + 128) % 256 - 128


def scaled_weights(q: np.ndarray, z: np.ndarray, m: np.ndarray) -> np.ndarray:
    """m * d (int64), all broadcast: the integer weight each activation meets, so that
    a product with it sums to the accumulator (acc is linear in the groups' sums)."""
    return np.asarray(m, np.int64) * code_diff(q, z)


def wrap_acc(acc: np.ndarray) -> np.ndarray:
    """The accumulator's value: two's complement in ACC_BITS."""
    half = 1 << (ACC_BITS - 1)
    return (np.asarray(acc, np.int64) + half) % (2 * half) - half
