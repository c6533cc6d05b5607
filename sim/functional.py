"""Functional executor: runs a program's instructions on numpy images of HBM and
of every core's on-chip buffers, with the hardware's arithmetic.

It reads nothing but the program (.dfp) and the HBM image: base registers
from the schedule, addresses and shapes from the instruction fields, weights,
parameters and tables from HBM. The data layouts and the arithmetic of each
instruction are defined in docs/numerics.md: INT8 activations in 16-feature
panels and an FP16 residual stream, weights from their records as INT8 code
differences scaled per group, 48-bit accumulation, FP32 requantization, FP16 special functions (FP32 inside, reductions
accumulated exactly), SYS EXCHANGE as an in-place all-gather in the exchange
window. Within a core, instructions run in an order the dependency tokens
allow, always the first queue in a priority order that can go (loads first
by default, so they run as far ahead as their tokens let them; another order
runs compute as early as possible), so a missing token shows up as wrong
numbers; cores run in lockstep between exchanges.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from hwmodel.dequant import ACC_BITS, scaled_weights
from hwmodel.errors import SimulationError
from hwmodel.exact_products import exact_float
from hwmodel.hbm_image import HbmImage
from hwmodel.hwconfig import BLOCK, HwConfig
from hwmodel.isa import (BASE_REGISTERS, FP16_MAX, INT8_MAX, NUM_QUEUES, PARAM_HEADER_BYTES, R_IO, RESIDUAL_BYTES,
                         SCORE_DIVISOR, Instr, MatMode, MiscFunc, Op, SysKind, exchange_window, mask_to_queues,
                         sparsity_n, weight_bits)
from hwmodel.program import Program, Section, schedule_for, to_bytes
from hwmodel.weight_record import decode_record, record_parts

QMAX = INT8_MAX
LD_FIRST = (Op.LD, Op.ST, Op.MM, Op.MV, Op.MISC, Op.SYS)      # loads run as far ahead as their tokens allow


# ---- layouts -------------------------------------------------------------------
def read_panels(mem: np.ndarray, byte: int, rows: int, cols: int, dtype=np.int8) -> np.ndarray:
    """A [rows x cols] tensor stored as 16-column panels: (r, c) at ((c/16)*rows + r)*16 + c%16."""
    size = np.dtype(dtype).itemsize
    raw = mem[byte: byte + rows * cols * size].view(dtype)
    return raw.reshape(cols // BLOCK, rows, BLOCK).transpose(1, 0, 2).reshape(rows, cols)


def write_panels(mem: np.ndarray, byte: int, value: np.ndarray) -> None:
    rows, cols = value.shape
    data = np.ascontiguousarray(value.reshape(rows, cols // BLOCK, BLOCK).transpose(1, 0, 2))
    mem[byte: byte + data.nbytes] = data.view(np.uint8).ravel()


def _fp16(x: np.ndarray) -> np.ndarray:
    """Round to FP16 and back to FP32 (an SFU input or output)."""
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


def _rint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -QMAX, QMAX).astype(np.int8)


def sat16(x: np.ndarray) -> np.ndarray:
    """An FP16 result: rounded once from FP32, saturating at the largest finite value."""
    return np.clip(np.asarray(x, np.float32), -FP16_MAX, FP16_MAX).astype(np.float16)


# ---- one core ----------------------------------------------------------------------
@dataclass
class Core:
    """A core's on-chip memory (one array over the unified address map) and the
    MPE's accumulators for K-split parts and attention chunks."""
    index: int
    mem: np.ndarray
    acc: dict[int, np.ndarray] = field(default_factory=dict)    # out address -> pending sums


class Executor:
    """Runs a program's schedule on an HBM image, all cores, with a host that
    embeds tokens, reads logits and picks the next token greedily."""

    def __init__(self, prog: Program, hw: HwConfig, image: HbmImage, priority: tuple[Op, ...] = LD_FIRST, *,
                 on_matrix: Callable[[int, Instr, np.ndarray, np.ndarray, np.ndarray], None] | None = None):
        """`on_matrix(core, ins, act, w, sums)`, if given, sees every MM/MV as the MPE runs it:
        its INT8 activations [tokens, kblk*16], its integer weights [rows, kblk*16] (m * d of
        hwmodel.dequant, zeros where pruned; INT8 K or V rows for SCORES / CONTEXT) and its integer sums [tokens, rows],
        this instruction's own (before pending K-split sums are added and before requantization)."""
        if prog.hw_fingerprint != hw.fingerprint:
            raise SimulationError(f"program for {prog.hw_name} run on {hw.name}")
        if image.meta.get("program_sha256") != hashlib.sha256(to_bytes(prog, hw)).hexdigest():
            raise SimulationError(f"HBM image of {image.meta.get('model')!r} was packed for another program than "
                                  f"this {prog.model} program; pack it for this one")
        if prog.meta.get("decode_bucket", 1) != 1:
            raise SimulationError(f"program for {prog.model}: decode bucket {prog.meta['decode_bucket']} shares one "
                                  f"section among contexts; compile with a decode bucket of 1 to execute it")
        self.prog, self.hw, self.image, self.priority = prog, hw, image, priority
        self.on_matrix = on_matrix
        self.hbm = image.hbm
        self.group = image.meta["scale_group"]
        self._decoded: dict[tuple, tuple] = {}     # weight records by content: (raw bytes, dequantized)
        self.line = hw.line_bytes
        self.burst = hw.hbm.burst_bytes
        self.cores = [Core(c, np.zeros(hw.onchip_bytes, np.uint8)) for c in range(hw.slrs)]
        self.hidden, self.vocab = image.meta["hidden"], image.meta["vocab"]
        self.instructions = 0
        self.host_lines = 0          # set by SYS HOST: lines of logits in each core's I/O area

    # ---- the host ------------------------------------------------------------------
    def generate(self, prompt: list[int], steps: int,
                 on_layer: Callable[[str, int, int, np.ndarray], None] | None = None,
                 forced: list[int] = ()) -> list[int]:
        """Prefill `prompt`, then `steps` greedy decode steps; returns the 1 + steps
        ids chosen. Decode step i is fed forced[i] where given (the rest of a prompt
        that is not whole prefill chunks), else the previous choice.
        `on_layer(phase, position of the first token, layer, x)` sees the residual
        stream (FP16 [tokens, hidden]) after every layer."""
        chunk = self.prog.meta["prefill_bucket"]
        if len(prompt) % chunk:
            raise SimulationError(f"prompt of {len(prompt)} tokens: the executor needs whole prefill chunks of "
                                  f"{chunk} (the last token's logits come from a chunk's last row)")
        out: list[int] = []
        tokens = list(prompt)
        for si, repeat in schedule_for(self.prog, len(prompt), steps):
            step = self.prog.steps[si]
            for _ in range(repeat):
                if step.phase == "logits":
                    logits = self.run_step(step, [], on_layer)
                else:
                    first = step.context - step.tokens
                    logits = self.run_step(step, tokens[first:step.context], on_layer)
                if step.phase != "prefill":
                    out.append(int(np.argmax(logits)))
                    tokens.append(forced[len(out) - 1] if len(out) <= len(forced) else out[-1])
        return out

    def run_step(self, step, tokens: list[int],
                 on_layer: Callable[[str, int, int, np.ndarray], None] | None = None) -> np.ndarray | None:
        """One step: the host writes the embedded tokens, the calls run, the host reads the logits."""
        t = step.tokens
        if tokens:
            x = self.image.embed[np.asarray(tokens)]
            for c in range(len(self.cores)):
                io = step.calls[0].base[BASE_REGISTERS * c + R_IO] * self.burst
                write_panels(self.hbm, io, x)
        logits = None
        for call in step.calls:
            self.run_section(self.prog.sections[call.section], call.base)
            if call.layer >= 0 and on_layer is not None:
                xs = [read_panels(core.mem, 0, t, self.hidden, np.float16) for core in self.cores]
                if any(xs[0].tobytes() != other.tobytes() for other in xs[1:]):
                    raise SimulationError(f"step {step.phase} at context {step.context}: the cores disagree on "
                                          f"the residual stream after layer {call.layer}")
                on_layer(step.phase, step.context - t, call.layer, xs[0].copy())
            if self.host_lines:
                parts = []
                for c in range(len(self.cores)):
                    io = call.base[BASE_REGISTERS * c + R_IO] * self.burst
                    parts.append(self.hbm[io: io + self.host_lines * self.line].view(np.float16))
                logits = np.concatenate(parts)[: self.vocab].astype(np.float32)
                self.host_lines = 0
        return logits

    # ---- sections: all cores, token-ordered within a core, lockstep at exchanges ------
    def run_section(self, sec: Section, base: list[int]) -> None:
        n = BASE_REGISTERS
        runs = [self._core_run(core, sec, base[n * core.index: n * core.index + n]) for core in self.cores]
        while True:
            pending = [next(r, None) for r in runs]
            if all(p is None for p in pending):
                return
            if any(p is None for p in pending) or len({p for p in pending}) != 1:
                raise SimulationError(f"section {sec.name}: cores reach different exchanges")
            self._exchange(pending[0])

    def _core_run(self, core: Core, sec: Section, base: list[int]) -> Iterator[int]:
        """Execute one core's copy of a section, always the head of the first queue in
        priority order whose tokens are there; yields the line count of each EXCHANGE."""
        queues: list[list[int]] = [[] for _ in range(NUM_QUEUES)]
        for i, ins in enumerate(sec.instrs):
            queues[int(ins.op)].append(i)
        head = [0] * NUM_QUEUES
        tokens = [[0] * NUM_QUEUES for _ in range(NUM_QUEUES)]
        order = [int(op) for op in self.priority]
        for _ in range(len(sec.instrs)):
            for q in order:
                if head[q] < len(queues[q]):
                    i = queues[q][head[q]]
                    waits = mask_to_queues(q, sec.instrs[i].wait)
                    if all(tokens[p][q] for p in waits):
                        break
            else:
                raise SimulationError(f"section {sec.name}: dependency deadlock on core {core.index}")
            ins = sec.instrs[i]
            for p in waits:
                tokens[p][q] -= 1
            try:
                if ins.op == Op.SYS and ins["kind"] == SysKind.EXCHANGE:
                    yield ins["lines"]
                else:
                    self._execute(core, ins, base)
            except (ValueError, IndexError) as exc:
                raise SimulationError(f"section {sec.name}: instruction {i} ({ins.op.name}) on core "
                                      f"{core.index}: {exc}") from None
            for c in mask_to_queues(q, ins.release):
                tokens[q][c] += 1
            head[q] += 1
            self.instructions += 1
        if any(any(row) for row in tokens):
            raise SimulationError(f"section {sec.name}: ends with unconsumed dependency tokens on core {core.index}")

    def _exchange(self, lines: int) -> None:
        cores = len(self.cores)
        if lines % cores:
            raise SimulationError(f"EXCHANGE of {lines} lines does not split among {cores} cores")
        start = exchange_window(self.hw, lines) * self.line
        shard = lines // cores * self.line
        gathered = np.concatenate([c.mem[start: start + shard] for c in self.cores])
        for c in self.cores:
            c.mem[start: start + len(gathered)] = gathered

    # ---- one instruction -----------------------------------------------------------
    def _execute(self, core: Core, ins: Instr, base: list[int]) -> None:
        f, mem, line = ins.f, core.mem, self.line
        if ins.op == Op.LD:
            src = (base[f["base"]] + f["hbm"]) * self.burst
            dst = f["addr"] * line
            x = f["x_len"] * self.burst
            for z in range(f["z_len"]):
                for y in range(f["y_len"]):
                    s = src + (z * f["z_stride"] + y * f["y_stride"]) * self.burst
                    d = dst + (z * f["y_len"] + y) * x
                    mem[d: d + x] = 0 if f["zero"] else self.hbm[s: s + x]
        elif ins.op == Op.ST:
            n = f["len"] * self.burst
            dst = (base[f["base"]] + f["hbm"]) * self.burst
            self.hbm[dst: dst + n] = mem[f["addr"] * line: f["addr"] * line + n]
        elif ins.op in (Op.MM, Op.MV):
            self._matrix(core, ins)
        elif ins.op == Op.MISC:
            self._misc(mem, ins)
        elif f["kind"] == SysKind.HOST:
            self.host_lines = f["lines"]

    def _weights(self, mem: np.ndarray, ins: Instr) -> np.ndarray:
        """The weight record at `wgt` as the integer weights m * d [rows, kblk*16]
        (hwmodel.dequant; zeros where pruned). Records are decoded once per distinct content (decode steps load
        the same ones again and again)."""
        rows, kblk, n, bits = ins["rows"], ins["kblk"], sparsity_n(ins), weight_bits(ins)
        at = ins["wgt"] * self.line
        size = sum(record_parts(self.hw, rows, kblk, n, bits, self.group).values())
        raw = mem[at:at + size]
        key = (rows, kblk, n, bits, raw[::max(1, size // 256)].tobytes())     # a sample, then the whole compared
        hit = self._decoded.get(key)
        if hit is not None and np.array_equal(hit[0], raw):
            return hit[1]
        w = exact_float(self._decode_weights(mem[at:], rows, kblk, n, bits))
        self._decoded[key] = (raw.copy(), w)
        return w

    def _decode_weights(self, raw: np.ndarray, rows: int, kblk: int, n: int, bits: int) -> np.ndarray:
        m = self.hw.sparsity_m
        rec = decode_record(self.hw, raw, rows=rows, kblk=kblk, n=n, bits=bits, group=self.group)
        codes, zeros, scales, index = rec.codes.reshape(rows, kblk * n), rec.zeros, rec.scales, rec.index
        g = np.arange(kblk * n) // self.group
        w = scaled_weights(codes, zeros[:, g], scales[:, g])
        if n == m:
            return w
        dense = np.zeros((rows, kblk, m), np.int64)
        np.put_along_axis(dense, index, w.reshape(rows, kblk, n), axis=2)
        return dense.reshape(rows, kblk * m)

    def _requant(self, mem: np.ndarray, ins: Instr) -> np.ndarray:
        parts = record_parts(self.hw, ins["rows"], ins["kblk"], sparsity_n(ins), weight_bits(ins), self.group)
        at = ins["wgt"] * self.line + sum(parts.values()) - parts["requant"]
        return mem[at: at + 4 * ins["rows"]].view(np.float32)

    def _matrix(self, core: Core, ins: Instr) -> None:
        mem, line = core.mem, self.line
        t, rows, k = ins["tokens"], ins["rows"], ins["kblk"] * BLOCK
        mode = MatMode(ins["mode"])
        act = read_panels(mem, ins["act"] * line, t, k).astype(np.int64)
        if mode in (MatMode.LINEAR, MatMode.LINEAR_FP16):
            w = self._weights(mem, ins)         # decoded once per record, already in its exact type
        else:
            raw = mem[ins["wgt"] * line:].view(np.int8)
            if mode == MatMode.SCORES:          # K rows: [rows keys][k dims]
                w = raw[: rows * k].reshape(rows, k).astype(np.int64)
            else:                               # V rows read transposed: [k keys][rows dims]
                w = raw[: k * rows].reshape(k, rows).astype(np.int64).T
            w = exact_float(w)
        part = np.rint(act.astype(w.dtype) @ w.T).astype(np.int64)
        if self.on_matrix is not None:
            self.on_matrix(core.index, ins, act, w.astype(np.int64), part)
        out = ins["out"]
        if ins["acc"]:
            if out not in core.acc or core.acc[out].shape != part.shape:
                raise ValueError(f"accumulates into {out}, which has no pending sums of shape {part.shape}")
            part = core.acc.pop(out) + part
        if np.abs(part).max(initial=0) >= 1 << (ACC_BITS - 1):
            raise ValueError(f"{ACC_BITS}-bit accumulator overflow")
        if ins["hold"]:
            core.acc[out] = part
            return
        core.acc.pop(out, None)
        byte = out * line
        if mode == MatMode.SCORES:
            s = (part.astype(np.float32) / np.float32(SCORE_DIVISOR)).astype(np.float16)
            cols = math.ceil(rows / BLOCK) * BLOCK
            full = np.full((t, cols), -np.inf, np.float16)
            full[:, :rows] = s
            if ins["aux"]:
                r = np.arange(t)[:, None] % ins["aux"]
                full[np.arange(cols)[None, :] > r] = -np.inf
            write_panels(mem, byte, full)
            return
        if mode == MatMode.CONTEXT:
            write_panels(mem, byte, _rint8(part.astype(np.float64) / QMAX))
            return
        m = self._requant(mem, ins)
        y = part.astype(np.float32) * m[None, :]
        if mode == MatMode.LINEAR_FP16:
            write_panels(mem, byte, sat16(y))
        elif ins["fuse"] == MiscFunc.SILU_MUL:
            half = rows // 2
            gate = _fp16(y[:, :half])
            silu = _fp16(gate / (np.float32(1) + np.exp(-gate)))
            write_panels(mem, byte, _rint8(silu * y[:, half:]))
        elif ins["fuse"] == MiscFunc.NONE:
            write_panels(mem, byte, _rint8(y))
        else:
            raise ValueError(f"fused function {MiscFunc(ins['fuse']).name} is not executable")

    def _misc(self, mem: np.ndarray, ins: Instr) -> None:
        func, t, n = MiscFunc(ins["func"]), ins["rows"], ins["len16"] * BLOCK
        line = self.line
        src, src2, dst = ins["src"] * line, ins["src2"] * line, ins["dst"] * line
        if func == MiscFunc.NONE:
            mem[dst: dst + t * n] = mem[src: src + t * n].copy()
        elif func == MiscFunc.ADD:               # the FP16 residual stream, elementwise (layout-free)
            size = t * n * RESIDUAL_BYTES
            a = mem[src: src + size].view(np.float16).astype(np.float32)
            b = mem[src2: src2 + size].view(np.float16).astype(np.float32)
            mem[dst: dst + size] = sat16(a + b).view(np.uint8)
        elif func == MiscFunc.RMSNORM:
            x = read_panels(mem, src, t, n, np.float16).astype(np.float32)
            eps = mem[src2: src2 + 4].view(np.float32)[0]
            at = src2 + PARAM_HEADER_BYTES
            gain = mem[at: at + 2 * n].view(np.float16).astype(np.float32)
            x64 = x.astype(np.float64)
            ms = ((x64 * x64).sum(axis=1) / n).astype(np.float32)
            r = (np.float32(1) / np.sqrt(ms + eps)).astype(np.float32)
            write_panels(mem, dst, _rint8(x * r[:, None] * gain[None, :]))
        elif func == MiscFunc.SOFTMAX:
            s = read_panels(mem, src, t, n, np.float16).astype(np.float32)
            scale = mem[src2: src2 + 4].view(np.float32)[0]
            x = s * scale
            e = np.exp(x - x.max(axis=1, keepdims=True)).astype(np.float32)
            total = e.astype(np.float64).sum(axis=1, keepdims=True).astype(np.float32)
            write_panels(mem, dst, _rint8(e / total * np.float32(QMAX)))
        elif func == MiscFunc.ROPE:          # features 2i, 2i+1 rotate by lane i of the table
            x = read_panels(mem, src, t, n).astype(np.float32)
            lanes = n // 2
            table = mem[src2: src2 + lanes // 16 * t * 64].view(np.float16).reshape(lanes // 16, t, 2, 16)
            cos = table[:, :, 0].transpose(1, 0, 2).reshape(t, lanes).astype(np.float32)
            sin = table[:, :, 1].transpose(1, 0, 2).reshape(t, lanes).astype(np.float32)
            a, b = x[:, 0::2], x[:, 1::2]
            y = np.empty_like(x)
            y[:, 0::2], y[:, 1::2] = a * cos - b * sin, b * cos + a * sin
            write_panels(mem, dst, _rint8(y))
        elif func == MiscFunc.TOKEN_MAJOR:
            x = read_panels(mem, src, t, n)
            mem[dst: dst + t * n] = x.view(np.uint8).ravel()
        elif func == MiscFunc.LAST_TOKEN:
            x = read_panels(mem, src, t, n)
            mem[dst: dst + n] = x[-1].view(np.uint8)
        else:
            raise ValueError(f"MISC {func.name} is not executable")
