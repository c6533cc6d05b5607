"""The instruction set, defined once: opcodes, queues, field layouts, encode/decode.

Six classes as in FlightLLM, one hardware queue each. Every instruction starts
with a 4-bit opcode, a 5-bit *wait* mask and a 5-bit *release* mask over the
other five queues (dependency tokens), then its class's fields, packed LSB
first into little-endian 32-bit words. Address field widths are derived from
HwConfig: an on-chip address is as wide as the on-chip map needs, an HBM
offset as wide as the HBM capacity needs. A layout that no longer fits its
word count is an impossible hardware configuration.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache

from hwmodel.errors import CompileError, ConfigError, ProgramFormatError
from hwmodel.hwconfig import HwConfig


class Op(IntEnum):
    LD = 0
    ST = 1
    MM = 2
    MV = 3
    MISC = 4
    SYS = 5


QUEUES = tuple(op.name for op in Op)       # queue index == opcode
NUM_QUEUES = len(QUEUES)
WORD_BITS = 32                             # instructions are little-endian 32-bit words
WORDS = {Op.LD: 7, Op.ST: 3, Op.MM: 4, Op.MV: 4, Op.MISC: 3, Op.SYS: 1}
MAX_ENCODED = 1 << 20     # distinct instructions an Isa remembers encoded, a bound on memory


class MiscFunc(IntEnum):
    NONE = 0
    ADD = 1
    MUL = 2
    SOFTMAX = 3
    LAYERNORM = 4
    RMSNORM = 5
    SILU = 6
    ROPE = 7
    SILU_MUL = 8     # SiLU(a) * b, the gated FFN's activation
    GELU = 9
    RELU = 10
    TOKEN_MAJOR = 11  # reorder a feature-panel-major tensor token-major (for the KV cache)
    LAST_TOKEN = 12   # the last token of a feature-panel-major tensor, as one vector (for the LM head)


# Base registers of a call, per core (LD/ST `base` field): a call's base list holds
# BASE_REGISTERS values per core, core after core.
R_WEIGHTS, R_KV, R_IO, R_HEAD = range(4)   # layer weights + parameters, its KV cache, host I/O, LM-head region
BASE_REGISTERS = 4
BASE_REGIONS = ("weights", "kv", "io", "weights")   # the placement region (hwmodel.placement) each register points into

# Numeric conventions of the instructions (docs/numerics.md), shared by the
# compiler, the functional executor and the reference.
INT8_MAX = 127            # activations and dequantized weights saturate to [-127, 127]; P = rint(p * 127)
SCORE_DIVISOR = 128       # a SCORES MM writes FP16(q.k / 128), which FP16 holds for head_dim <= 256
PARAM_HEADER_BYTES = 64   # a norm's parameter block: eps (FP32) padded to this, then the FP16 gains
RESIDUAL_BYTES = 2        # the residual stream is FP16: embeddings, the o/down outputs and the adds between them
FP16_MAX = 65504.0        # FP16 results (residual stream, logits) saturate here rather than overflow to inf


class MatMode(IntEnum):
    """What the weight operand of an MM/MV is and what its output holds (docs/numerics.md)."""
    LINEAR = 0       # weight record (N:16 values, indices, scales); INT8 output, requantized per row
    SCORES = 1       # raw INT8 rows (K cache); FP16 scores out, masked entries -inf
    CONTEXT = 2      # raw INT8 rows read transposed (V cache); INT8 out = round(acc / 127)
    LINEAR_FP16 = 3  # weight record; FP16 output, requantized per row (o/down into the residual stream, logits)


class SysKind(IntEnum):
    BARRIER = 0      # all cores reach this point
    EXCHANGE = 1     # all-gather `lines` lines in place in the exchange window (see exchange_window)
    HOST = 2         # hand results to the host (end of a step)


def exchange_window(hw: HwConfig, lines: int) -> int:
    """First line of the window an EXCHANGE of `lines` lines gathers in: the top
    `lines` lines of the activation buffer. Every core has put its shard
    (lines / cores lines) at the window's start; afterwards every core holds
    the shards of cores 0, 1, ... one after another. SYS has no room for an
    address, so the window is fixed by the buffer and the size."""
    act = hw.buffers["act"]
    return (act.base + act.bytes) // hw.line_bytes - lines


@lru_cache(maxsize=None)
def other_queues(q: int) -> tuple[int, ...]:
    """The five queues a mask of queue `q` talks about, in bit order."""
    return tuple(i for i in range(NUM_QUEUES) if i != q)


def queues_to_mask(q: int, queues: set[int] | list[int]) -> int:
    order = other_queues(q)
    return sum(1 << order.index(p) for p in queues)


@lru_cache(maxsize=None)
def mask_to_queues(q: int, mask: int) -> tuple[int, ...]:
    order = other_queues(q)
    return tuple(order[i] for i in range(NUM_QUEUES - 1) if mask >> i & 1)


@dataclass(slots=True)
class Instr:
    """One decoded instruction: class, dependency masks and class fields."""
    op: Op
    wait: int = 0
    release: int = 0
    f: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, name: str) -> int:
        return self.f[name]


# MM/MV fields beyond the paper's: `mode` (MatMode), `hold` (1: a K-split part or
# attention chunk that is not the last; its sums stay in the MPE's
# accumulator and nothing is written), `aux` (SCORES: causal mask over the
# diagonal chunk, the query tokens per head; 0: no mask).
@dataclass(frozen=True)
class Layout:
    op: Op
    words: int
    fields: tuple[tuple[str, int], ...]   # (name, width), LSB first after the header

    @property
    def used_bits(self) -> int:
        return HEADER_BITS + sum(w for _, w in self.fields)


HEADER = (("op", 4), ("wait", 5), ("release", 5))     # the first bits of every instruction, LSB first
HEADER_BITS = sum(w for _, w in HEADER)
OP_BITS, MASK_BITS = HEADER[0][1], HEADER[1][1]        # opcode; wait and release masks (one bit per queue)

# Fields whose width does not depend on the design (address fields do: `Isa`).
N_LOG2_BITS = 2          # MM/MV `n_log2`: pattern N:16 with N = 2 << n_log2 (2, 4, 8, 16)
WBITS_BITS = 3           # MM/MV `wbits`: weight bit width - 1 (1..8)
AUX_BITS = 9             # MM/MV `aux`: SCORES causal mask, query tokens per head
SYS_LINES_BITS = 16      # SYS `lines`: buffer lines a HOST or EXCHANGE moves


def field_max(width: int) -> int:
    """Largest value a field of `width` bits holds."""
    return (1 << width) - 1


def n_code(n: int) -> int:
    """`n_log2` of pattern N:M."""
    return n.bit_length() - 2


def n_of(code: int) -> int:
    """N of an `n_log2` code."""
    return 2 << code


def wbits_code(bits: int) -> int:
    """`wbits` of a weight width."""
    return bits - 1


def bits_of(code: int) -> int:
    """Weight width of a `wbits` code."""
    return code + 1


def sparsity_n(ins: Instr) -> int:
    """N of an MM/MV's N:M pattern."""
    return n_of(ins.f["n_log2"])


def weight_bits(ins: Instr) -> int:
    """Bits per stored weight of an MM/MV."""
    return bits_of(ins.f["wbits"])


class Isa:
    """The layouts of one hardware design, with encode/decode."""

    def __init__(self, hw: HwConfig):
        self.hw = hw
        a, h, c = hw.onchip_addr_bits, hw.hbm_addr_bits, hw.hbm_channel_bits
        n = hw.hbm.channels.bit_length()           # ch_count: 1 .. channels PCs
        spec = {
            Op.LD: [("base", 4), ("hbm", h), ("ch_first", c), ("ch_count", n), ("addr", a), ("x_len", 16),
                    ("y_len", 12), ("y_stride", 24), ("z_len", 10), ("z_stride", 28), ("zero", 1)],
            Op.ST: [("base", 4), ("hbm", h), ("ch_first", c), ("ch_count", n), ("addr", a), ("len", 20)],
            Op.MM: [("rows", 14), ("kblk", 11), ("tokens", 12), ("n_log2", N_LOG2_BITS), ("wbits", WBITS_BITS),
                    ("act", a), ("wgt", a), ("out", a), ("acc", 1), ("bias", 1), ("fuse", 4), ("mode", 2),
                    ("hold", 1), ("aux", AUX_BITS)],
            Op.MISC: [("func", 4), ("len16", 12), ("rows", 12), ("src", a), ("src2", a), ("dst", a)],
            Op.SYS: [("kind", 2), ("lines", SYS_LINES_BITS)],
        }
        spec[Op.MV] = spec[Op.MM]
        self.layouts: dict[Op, Layout] = {}
        for op, fields in spec.items():
            layout = Layout(op, WORDS[op], tuple(fields))
            if layout.used_bits > WORD_BITS * layout.words:
                cause = "buffers" if op not in (Op.LD, Op.ST) else "buffers or hbm.capacity_gb"
                raise ConfigError(
                    f"{hw.source}: field {cause}: the {op.name} instruction needs "
                    f"{layout.used_bits} bits with on-chip addresses of {a} bits and HBM offsets of {h} bits, "
                    f"but has {WORD_BITS * layout.words} ({layout.words} words)")
            self.layouts[op] = layout
        self._shifts = {op: self._shift_table(lay) for op, lay in self.layouts.items()}
        self._used = {op: lay.used_bits for op, lay in self.layouts.items()}
        self._names = {op: frozenset(name for name, _ in lay.fields) for op, lay in self.layouts.items()}
        self._encoded: dict[tuple, tuple[int, ...]] = {}

    @staticmethod
    def _shift_table(layout: Layout) -> tuple[tuple[str, int, int], ...]:
        table, pos = [], HEADER_BITS
        for name, width in layout.fields:
            table.append((name, pos, (1 << width) - 1))
            pos += width
        return tuple(table)

    def width(self, op: Op, name: str) -> int:
        return dict(self.layouts[op].fields)[name]

    def max_value(self, op: Op, name: str) -> int:
        """Largest value field `name` of `op` holds on this design."""
        return field_max(self.width(op, name))

    def full_fields(self, ins: Instr) -> dict[str, int]:
        """An instruction's fields as it decodes: every field of its layout, unset ones 0."""
        return dict.fromkeys(self._names[ins.op], 0) | ins.f

    def encode(self, ins: Instr, index: int | None = None) -> list[int]:
        """Pack an instruction into its words; a value too wide is a CompileError.
        Programs repeat most instructions (layers, steps), so each distinct one
        is packed once."""
        key = (ins.op, ins.wait, ins.release, tuple(ins.f.items()))
        words = self._encoded.get(key)
        if words is None:
            words = self._encode(ins, index)
            if len(self._encoded) >= MAX_ENCODED:
                self._encoded.clear()
            self._encoded[key] = words
        return list(words)

    def _encode(self, ins: Instr, index: int | None) -> tuple[int, ...]:
        if not 0 <= ins.wait <= field_max(MASK_BITS) or not 0 <= ins.release <= field_max(MASK_BITS):
            raise CompileError(f"instruction {index}: {ins.op.name} wait/release masks must be {MASK_BITS}-bit")
        value = int(ins.op) | ins.wait << OP_BITS | ins.release << (OP_BITS + MASK_BITS)
        f = ins.f
        for name, pos, mask in self._shifts[ins.op]:
            v = f.get(name, 0)
            if not 0 <= v <= mask:
                raise CompileError(f"instruction {index}: {ins.op.name} field {name}={v} does not fit "
                                   f"{mask.bit_length()} bits")
            value |= v << pos
        if not f.keys() <= self._names[ins.op]:
            extra = sorted(set(f) - self._names[ins.op])
            raise CompileError(f"instruction {index}: {ins.op.name} has no field {extra[0]}")
        return tuple((value >> (32 * i)) & 0xFFFFFFFF for i in range(WORDS[ins.op]))

    def decode(self, words, pos: int, index: int | None = None) -> tuple[Instr, int]:
        """Unpack the instruction starting at word `pos`; returns it and the next position."""
        try:
            first = int(words[pos])
        except IndexError:
            raise ProgramFormatError(f"instruction {index}: truncated (no word at {pos})") from None
        code = first & field_max(OP_BITS)
        if code >= NUM_QUEUES:
            raise ProgramFormatError(f"instruction {index}: unknown opcode {code} at word {pos}")
        op = Op(code)
        n = WORDS[op]
        if pos + n > len(words):
            raise ProgramFormatError(f"instruction {index}: {op.name} truncated: needs {n} words at {pos}, "
                                     f"{len(words) - pos} left")
        value = 0
        for i in range(n):
            value |= int(words[pos + i]) << (32 * i)
        if value >> self._used[op]:
            raise ProgramFormatError(f"instruction {index}: {op.name} has bits set beyond its fields")
        mask = field_max(MASK_BITS)
        ins = Instr(op, value >> OP_BITS & mask, value >> (OP_BITS + MASK_BITS) & mask,
                    {name: value >> p & m for name, p, m in self._shifts[op]})
        return ins, pos + n

    def decode_all(self, words, start: int = 0, end: int | None = None, first_index: int = 0) -> list[Instr]:
        end = len(words) if end is None else end
        out, pos = [], start
        while pos < end:
            ins, pos = self.decode(words, pos, first_index + len(out))
            out.append(ins)
        if pos != end:
            raise ProgramFormatError(f"instruction {first_index + len(out) - 1}: runs past its section end")
        return out


_ISAS: dict[str, Isa] = {}


def isa_for(hw: HwConfig) -> Isa:
    """The (cached) ISA of a design; designs with one fingerprint share it."""
    if hw.fingerprint not in _ISAS:
        _ISAS[hw.fingerprint] = Isa(hw)
    return _ISAS[hw.fingerprint]
