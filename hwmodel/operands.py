"""Where each instruction's on-chip operands lie: (field, first byte, bytes).

The extents follow the instruction semantics of docs/numerics.md (and the
functional executor that implements them): INT8 activations in 16-column
panels, the FP16 residual stream (ADD, the norms' input), FP16 scores and
logits, norm parameter blocks. A weight record is
given by its packed values only (its scale groups belong to the compression
profile, which the program does not carry), so its extent is a lower bound;
a MISC function the executor does not implement is taken as t x n INT8 in
and out. Used to check a program before it runs.
"""
from __future__ import annotations

import math

from hwmodel.hwconfig import HwConfig
from hwmodel.isa import (PARAM_HEADER_BYTES, RESIDUAL_BYTES, Instr, MatMode, MiscFunc, Op, SysKind, exchange_window,
                         sparsity_n, weight_bits)
from hwmodel.transfer import transfer_bytes

Span = tuple[str, int, int]


def _matrix(hw: HwConfig, ins: Instr) -> list[Span]:
    f, line = ins.f, hw.line_bytes
    t, rows, k = f["tokens"], f["rows"], f["kblk"] * hw.sparsity_m
    mode = MatMode(f["mode"])
    if mode in (MatMode.LINEAR, MatMode.LINEAR_FP16):
        weights = math.ceil(rows * f["kblk"] * sparsity_n(ins) * weight_bits(ins) / 8)
    else:
        weights = rows * k          # raw INT8 K rows, or V rows read transposed
    spans = [("act", f["act"] * line, t * k), ("wgt", f["wgt"] * line, weights)]
    if not f["hold"]:
        out = {MatMode.SCORES: t * math.ceil(rows / 16) * 16 * 2, MatMode.CONTEXT: t * rows,
               MatMode.LINEAR_FP16: t * rows * 2}.get(mode, t * rows // (2 if f["fuse"] == MiscFunc.SILU_MUL else 1))
        spans.append(("out", f["out"] * line, out))
    return spans


def _misc(hw: HwConfig, ins: Instr) -> list[Span]:
    f, line = ins.f, hw.line_bytes
    func, t, n = f["func"], f["rows"], f["len16"] * 16
    second = {MiscFunc.ADD: t * n * RESIDUAL_BYTES, MiscFunc.RMSNORM: PARAM_HEADER_BYTES + 2 * n,
              MiscFunc.SOFTMAX: 4, MiscFunc.ROPE: n // 32 * t * 64}.get(func, 0)
    wide_in = {MiscFunc.SOFTMAX: 2, MiscFunc.ADD: RESIDUAL_BYTES, MiscFunc.RMSNORM: RESIDUAL_BYTES}.get(func, 1)
    spans = [("src", f["src"] * line, t * n * wide_in),
             ("dst", f["dst"] * line, n if func == MiscFunc.LAST_TOKEN else
              t * n * (RESIDUAL_BYTES if func == MiscFunc.ADD else 1))]
    if second:
        spans.append(("src2", f["src2"] * line, second))
    return spans


def operand_spans(hw: HwConfig, ins: Instr) -> list[Span]:
    """The on-chip bytes an instruction reads or writes, per address field."""
    if ins.op in (Op.LD, Op.ST):
        return [("addr", ins.f["addr"] * hw.line_bytes, transfer_bytes(hw, ins))]
    if ins.op in (Op.MM, Op.MV):
        return _matrix(hw, ins)
    if ins.op == Op.MISC:
        return _misc(hw, ins)
    if ins.f["kind"] == SysKind.EXCHANGE:
        lines = ins.f["lines"]
        return [("lines", exchange_window(hw, lines) * hw.line_bytes, lines * hw.line_bytes)]
    return []
