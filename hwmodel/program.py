"""The program file (.dfp) and its listing (.asm).

Layout (little-endian):
    magic b"DSPF" | u16 format version | u16 0 | u32 header length | header (UTF-8 JSON)
    | u32 instruction words, section after section | 32-byte SHA-256 of all that precedes

The header names the HwConfig fingerprint and model, the length buckets, the
section table (word offset and length of each section, op labels for
reports), the step library (each prefill chunk and decode bucket as a list of
section calls with their base registers) and the schedule of the compiled
case (which steps run, how often). Sections are shared across layers, cores
and steps through base registers; the timing needs nothing but the words.
`schedule_for` derives the schedule of any other prompt/generation length
the library covers, as the host runtime does.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from hwmodel.errors import ConfigError, ProgramFormatError
from hwmodel.hwconfig import HwConfig, load_hw
from hwmodel.isa import QUEUES, WORDS, Instr, isa_for, mask_to_queues
from hwmodel.program_header import check_header, check_names, parse_header

MAGIC = b"DSPF"
VERSION = 1
_PRE = struct.Struct("<4sHHI")
DIGEST = 32


@dataclass
class Section:
    """A block of instructions run as a unit; starts and ends with every queue idle."""
    name: str
    instrs: list[Instr]
    labels: list[tuple[int, str]] = field(default_factory=list)   # (first instruction, op label)
    words: list[int] | None = field(default=None, repr=False, compare=False)   # set by section_words

    def label_of(self) -> list[str]:
        """The op label of every instruction."""
        out, bounds = [], [(0, "")] + self.labels + [(len(self.instrs), "")]
        for (start, name), (end, _) in zip(bounds, bounds[1:]):
            out.extend([name] * (end - start))
        return out


@dataclass
class Call:
    """Run `section` with these base registers; `layer` is a label for reports."""
    section: int
    base: list[int]
    layer: int = -1


@dataclass
class Step:
    """One prefill chunk, the prefill's logits, or one decode step (per context bucket)."""
    phase: str          # "prefill" | "logits" | "decode"
    tokens: int
    context: int        # KV length after the step (its bucket's upper end)
    calls: list[Call]


@dataclass
class Program:
    hw_fingerprint: str
    hw_name: str
    model: str
    meta: dict
    sections: list[Section]
    steps: list[Step]
    schedule: list[tuple[int, int]]     # (step index, how many real steps it stands for)
    source: str = field(default="", compare=False)      # the file it was read from, for error messages

    @property
    def where(self) -> str:
        """How errors name the program: its file, or its model if it was compiled in memory."""
        return self.source or f"program for {self.model}"

    @property
    def instruction_count(self) -> int:
        return sum(len(s.instrs) for s in self.sections)


def schedule_for(prog: Program, prefill: int, decode: int) -> list[tuple[int, int]]:
    """The steps a prompt of `prefill` tokens generating `decode` tokens runs:
    prefill chunks up to the prompt's bucket, its logits, then one decode step
    per token, each at the bucket of its context."""
    chunk, dbucket = prog.meta["prefill_bucket"], prog.meta["decode_bucket"]
    index = {(s.phase, s.context): i for i, s in enumerate(prog.steps)}
    prefill_end = math.ceil(prefill / chunk) * chunk
    out: list[tuple[int, int]] = []

    def need(phase: str, ctx: int) -> int:
        if (phase, ctx) not in index:
            have = sorted(c for p, c in index if p == phase)
            span = f"{have[0]}..{have[-1]}" if have else "none"
            raise ProgramFormatError(f"program for {prog.model}: no {phase} step for context {ctx} "
                                     f"(it covers {phase} contexts {span}); compile with a larger cover")
        return index[(phase, ctx)]

    for end in range(chunk, prefill_end + 1, chunk):
        out.append((need("prefill", end), 1))
    out.append((need("logits", chunk), 1))
    counts: dict[int, int] = {}
    for ctx in range(prefill + 1, prefill + decode + 1):
        b = math.ceil(ctx / dbucket) * dbucket
        counts[b] = counts.get(b, 0) + 1
    out.extend((need("decode", b), n) for b, n in sorted(counts.items()))
    return out


def section_words(isa, sec: Section) -> list[int]:
    """The section's instruction words, encoded once (its instructions are final by then)."""
    if sec.words is None:
        words: list[int] = []
        for i, ins in enumerate(sec.instrs):
            words.extend(isa.encode(ins, i))
        sec.words = words
    return sec.words


def to_bytes(prog: Program, hw: HwConfig) -> bytes:
    isa = isa_for(hw)
    words: list[int] = []
    table = []
    for sec in prog.sections:
        w = section_words(isa, sec)
        table.append({"name": sec.name, "offset": len(words), "words": len(w), "count": len(sec.instrs),
                      "labels": [list(x) for x in sec.labels]})
        words.extend(w)
    header = {
        "hw_fingerprint": prog.hw_fingerprint, "hw_name": prog.hw_name, "model": prog.model,
        "meta": prog.meta, "sections": table,
        "steps": [{"phase": s.phase, "tokens": s.tokens, "context": s.context,
                   "calls": [[c.section, c.layer, c.base] for c in s.calls]} for s in prog.steps],
        "schedule": [list(e) for e in prog.schedule],
    }
    hbytes = json.dumps(header, separators=(",", ":")).encode()
    return assemble(hbytes, np.asarray(words, dtype="<u4").tobytes())


def checksum(body: bytes) -> bytes:
    """The digest that ends a program file, over everything before it."""
    return hashlib.sha256(body).digest()


def assemble(header: bytes, words: bytes) -> bytes:
    """A program file from its header JSON and its instruction words."""
    body = _PRE.pack(MAGIC, VERSION, 0, len(header)) + header + words
    return body + checksum(body)


def parts(data: bytes) -> tuple[bytes, bytes]:
    """The header JSON and the instruction words of a well-formed file (inverse of assemble)."""
    end = _PRE.size + _PRE.unpack_from(data)[3]
    return data[_PRE.size:end], data[end:-DIGEST]


def instruction_bytes(prog: Program) -> int:
    """Bytes of instruction words in a program (what the hardware fetches)."""
    return 4 * sum(WORDS[i.op] for s in prog.sections for i in s.instrs)


def write_program(prog: Program, hw: HwConfig, path: str | Path) -> int:
    """Write atomically (temporary name, then rename); returns the file size."""
    data = to_bytes(prog, hw)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return len(data)


def _verified_header(data: bytes, source: str) -> tuple[dict, bytes, int]:
    """Check magic, version and checksum; returns the header, the body and where the words start."""
    def bad(msg: str) -> ProgramFormatError:
        return ProgramFormatError(f"{source}: {msg}")

    if len(data) < _PRE.size + DIGEST:
        raise bad(f"truncated: {len(data)} bytes is shorter than the smallest program")
    magic, version, _, hlen = _PRE.unpack_from(data)
    if magic != MAGIC:
        raise bad(f"not a dspflight program (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise bad(f"format version {version}, this dspflight reads version {VERSION}")
    body, digest = data[:-DIGEST], data[-DIGEST:]
    if checksum(body) != digest:
        raise bad("checksum mismatch: the file is truncated or corrupted")
    end = _PRE.size + hlen
    if end > len(body) or (len(body) - end) % 4:
        raise bad("header length does not match the file size")
    return parse_header(body[_PRE.size:end], source), body, end


def from_bytes(data: bytes, hw: HwConfig, source: str = "<program>") -> Program:
    """Parse and verify a program; anything wrong is a ProgramFormatError naming `source`."""
    def bad(msg: str) -> ProgramFormatError:
        return ProgramFormatError(f"{source}: {msg}")

    header, body, end = _verified_header(data, source)
    fp, hw_name = check_names(header, source)
    if fp != hw.fingerprint:
        raise bad(f"compiled for hardware {hw_name!r} (fingerprint {fp!r}), "
                  f"not for {hw.name!r} ({hw.fingerprint}); pass --hw {hw_name}")
    words = np.frombuffer(body, dtype="<u4", offset=end)
    check_header(header, hw, len(words), source)
    isa = isa_for(hw)
    sections, first = [], 0
    for i, ent in enumerate(header["sections"]):
        off = ent["offset"]
        try:
            instrs = isa.decode_all(words, off, off + ent["words"], first)
        except ProgramFormatError as exc:
            raise bad(f"section {i} ({ent['name']}): {exc}") from None
        if len(instrs) != ent["count"]:
            raise bad(f"header field sections[{i}].count: {ent['count']}, but its words hold {len(instrs)} "
                      f"instructions")
        sections.append(Section(ent["name"], instrs, [tuple(x) for x in ent["labels"]]))
        first += len(instrs)
    steps = [Step(s["phase"], s["tokens"], s["context"], [Call(c[0], list(c[2]), c[1]) for c in s["calls"]])
             for s in header["steps"]]
    schedule = [(i, n) for i, n in header["schedule"]]
    return Program(fp, hw_name, header["model"], header["meta"], sections, steps, schedule, source)


def read_bytes(path: str | Path) -> bytes:
    """A program file's bytes; anything but a readable regular file (a FIFO would block) is refused."""
    path = Path(path)
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as fh:   # opening a FIFO does not wait
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise ProgramFormatError(f"{path}: not a regular file")
            return fh.read()
    except OSError as exc:
        raise ProgramFormatError(f"{path}: cannot read: {exc.strerror}") from None


def read_program(path: str | Path, hw: HwConfig | None = None) -> tuple[Program, HwConfig]:
    """Read and verify a .dfp; without `hw`, the design its header names."""
    data = read_bytes(path)
    if hw is None:
        name = check_names(_verified_header(data, str(path))[0], str(path))[1]
        try:
            hw = load_hw(name)
        except ConfigError as exc:
            raise ProgramFormatError(f"{path}: header field hw_name: {exc}; pass --hw") from None
    return from_bytes(data, hw, str(path)), hw


@lru_cache(maxsize=None)
def _head(q: int, wait: int, release: int) -> str:
    w = ",".join(QUEUES[p] for p in mask_to_queues(q, wait)) or "-"
    r = ",".join(QUEUES[p] for p in mask_to_queues(q, release)) or "-"
    return f"{QUEUES[q]:<4} wait={w:<14} rel={r:<14} "


def format_instr(ins: Instr) -> str:
    """One .asm line: mnemonic, dependency queues, fields."""
    return _head(int(ins.op), ins.wait, ins.release) + " ".join(f"{k}={v}" for k, v in ins.f.items())


def listing(prog: Program) -> str:
    """The human-readable .asm of a whole program."""
    lines = [f"; dspflight program: model {prog.model} on {prog.hw_name} (hw {prog.hw_fingerprint})",
             f"; meta {json.dumps(prog.meta, sort_keys=True)}"]
    for si, step in enumerate(prog.steps):
        calls = " ".join(f"s{c.section}" + (f"@L{c.layer}" if c.layer >= 0 else "") for c in step.calls[:6])
        more = f" ... ({len(step.calls)} calls)" if len(step.calls) > 6 else ""
        lines.append(f"; step {si}: {step.phase} tokens={step.tokens} context={step.context}: {calls}{more}")
    lines.append("; schedule: " + " ".join(f"step{i}x{n}" for i, n in prog.schedule))
    for si, sec in enumerate(prog.sections):
        lines.append(f"\n.section s{si} {sec.name}")
        labels = dict(sec.labels)
        for i, ins in enumerate(sec.instrs):
            if i in labels:
                lines.append(f"  ; {labels[i]}")
            lines.append(f"  {i:5d}  {format_instr(ins)}")
    return "\n".join(lines) + "\n"
