"""The .dfp header schema: every field checked for type and range before use.

The checksum proves only that a file is what some writer wrote, not that the
writer was dspflight, so the header JSON is parsed with bounded nesting and no
NaN or infinity, and each field is checked before anything reads it: a number
that sizes a list, a loop or an allocation is bounded by the design or by the
instruction words the file holds. Each error is one line naming the file and
the field (`sections[3].labels[0]`).
"""
from __future__ import annotations

import json
import re

import numpy as np

from hwmodel.errors import ProgramFormatError
from hwmodel.hwconfig import HwConfig
from hwmodel.isa import BASE_REGISTERS
from hwmodel.placement import Placement
from hwmodel.weight_record import LINEAR_OPS

MAX_DEPTH = 16            # the writer nests 6 deep (steps[].calls[][2][]); room for growth, not for recursion
MAX_TOKENS = 1 << 24      # prompt, bucket, context and step lengths
MAX_REPEAT = 1 << 32      # real steps one schedule entry stands for
MAX_LAYER = 1 << 16
MAX_TEXT = 256            # names
PHASES = ("prefill", "logits", "decode")
HW_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")     # a built-in design, never a path
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)


def nesting_depth(raw: bytes) -> int:
    """Deepest bracket nesting of JSON text, strings left out (measured before parsing,
    which would recurse once per level)."""
    bare = np.frombuffer(_STRING.sub(b'""', raw), np.uint8)
    step = np.isin(bare, (ord("["), ord("{"))).astype(np.int64) - np.isin(bare, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number a program holds")


def parse_header(raw: bytes, source: str) -> dict:
    """The header mapping, parsed with bounded nesting and finite numbers only."""
    depth = nesting_depth(raw)
    if depth > MAX_DEPTH:
        raise ProgramFormatError(f"{source}: malformed header: nested {depth} deep (at most {MAX_DEPTH})")
    try:
        header = json.loads(raw, parse_constant=_no_constant)
    except ValueError as exc:        # also bad UTF-8 and integers of more than 4300 digits
        raise ProgramFormatError(f"{source}: malformed header: {str(exc).splitlines()[0]}") from None
    if not isinstance(header, dict):
        raise ProgramFormatError(f"{source}: malformed header: not a mapping")
    return header


class _Fields:
    """Typed reads of one header; each failure names the field's path."""

    def __init__(self, source: str):
        self.source = source

    def error(self, field: str, expected: str, value: object) -> ProgramFormatError:
        """One header field is wrong; `field` is its path."""
        text = repr(value)
        text = text if len(text) <= 40 else text[:37] + "..."
        return ProgramFormatError(f"{self.source}: header field {field}: expected {expected}, got {text}")

    def get(self, obj: dict, key: str, field: str) -> object:
        if key not in obj:
            raise ProgramFormatError(f"{self.source}: header field {field}: missing")
        return obj[key]

    def integer(self, value: object, field: str, lo: int, hi: int) -> int:
        if type(value) is not int or not lo <= value <= hi:
            raise self.error(field, f"an integer in {lo}..{hi}", value)
        return value

    def text(self, value: object, field: str, pattern: re.Pattern | None = None) -> str:
        if not isinstance(value, str) or len(value) > MAX_TEXT or pattern and not pattern.fullmatch(value):
            raise self.error(field, "a name" if pattern else f"a string of at most {MAX_TEXT} characters", value)
        return value

    def seq(self, value: object, field: str, length: int | None = None) -> list:
        if not isinstance(value, list) or length is not None and len(value) != length:
            raise self.error(field, "a list" if length is None else f"a list of {length}", value)
        return value

    def mapping(self, value: object, field: str) -> dict:
        if not isinstance(value, dict):
            raise self.error(field, "a mapping", value)
        return value


def check_names(header: dict, source: str) -> tuple[str, str]:
    """The fingerprint and design name, checked (read before the design is known)."""
    f = _Fields(source)
    fp = f.text(f.get(header, "hw_fingerprint", "hw_fingerprint"), "hw_fingerprint")
    return fp, f.text(f.get(header, "hw_name", "hw_name"), "hw_name", HW_NAME)


def check_header(header: dict, hw: HwConfig, words: int, source: str) -> None:
    """Every field of a header whose fingerprint matched `hw`; `words` is how many
    instruction words the file holds (section offsets and lengths stay inside)."""
    f = _Fields(source)
    f.text(f.get(header, "model", "model"), "model")
    _check_meta(f, f.mapping(f.get(header, "meta", "meta"), "meta"), hw)
    sections = f.seq(f.get(header, "sections", "sections"), "sections")
    for i, ent in enumerate(sections):
        _check_section(f, f.mapping(ent, f"sections[{i}]"), f"sections[{i}]", words)
    steps = f.seq(f.get(header, "steps", "steps"), "steps")
    for i, step in enumerate(steps):
        _check_step(f, f.mapping(step, f"steps[{i}]"), f"steps[{i}]", len(sections), hw)
    for i, entry in enumerate(f.seq(f.get(header, "schedule", "schedule"), "schedule")):
        where = f"schedule[{i}]"
        step, repeat = f.seq(entry, where, 2)
        f.integer(step, f"{where}[0]", 0, len(steps) - 1)
        f.integer(repeat, f"{where}[1]", 1, MAX_REPEAT)


def _check_meta(f: _Fields, meta: dict, hw: HwConfig) -> None:
    for key in ("prefill", "decode"):
        f.integer(f.get(meta, key, f"meta.{key}"), f"meta.{key}", 0, MAX_TOKENS)
    for key in ("prefill_bucket", "decode_bucket", "max_context"):
        f.integer(f.get(meta, key, f"meta.{key}"), f"meta.{key}", 1, MAX_TOKENS)
    f.integer(f.get(meta, "slrs", "meta.slrs"), "meta.slrs", hw.slrs, hw.slrs)
    for key in ("compression", "plan"):
        f.text(f.get(meta, key, f"meta.{key}"), f"meta.{key}")
    if "cover" in meta:
        for i, v in enumerate(f.seq(meta["cover"], "meta.cover", 2)):
            f.integer(v, f"meta.cover[{i}]", 0, MAX_TOKENS)
    if "min_prompt" in meta:
        f.integer(meta["min_prompt"], "meta.min_prompt", 1, MAX_TOKENS)
    if "fusion" in meta and not isinstance(meta["fusion"], bool):
        raise f.error("meta.fusion", "true or false", meta["fusion"])
    Placement.from_json(f.get(meta, "placement", "meta.placement"), hw, f"{f.source}: header field meta")
    if "weight_tiles" in meta:                 # what the packer reads (programs for timing only may lack them)
        _check_tiles(f, f.mapping(meta["weight_tiles"], "meta.weight_tiles"), hw)
        layout = f.mapping(f.get(meta, "hbm_layout", "meta.hbm_layout"), "meta.hbm_layout")
        f.integer(f.get(layout, "rope_bursts", "meta.hbm_layout.rope_bursts"), "meta.hbm_layout.rope_bursts", 0,
                  (1 << hw.hbm_addr_bits) - 1)
        for i, why in enumerate(f.seq(f.get(meta, "numerics_blockers", "meta.numerics_blockers"),
                                      "meta.numerics_blockers")):
            f.text(why, f"meta.numerics_blockers[{i}]")


def _check_tiles(f: _Fields, table: dict, hw: HwConfig) -> None:
    """The weight tile table: layouts of [rows, k0, kblk, offset, bursts], ops of [layer, op, layout]."""
    top = (1 << hw.hbm_addr_bits) - 1
    layouts = f.seq(f.get(table, "layouts", "meta.weight_tiles.layouts"), "meta.weight_tiles.layouts")
    for i, tiles in enumerate(layouts):
        where = f"meta.weight_tiles.layouts[{i}]"
        if not f.seq(tiles, where):
            raise f.error(where, "at least one tile", tiles)
        for j, tile in enumerate(tiles):
            at = f"{where}[{j}]"
            rows, k0, kblk, offset, bursts = f.seq(tile, at, 5)
            f.integer(rows, f"{at}[0]", 1, MAX_TOKENS)
            f.integer(k0, f"{at}[1]", 0, MAX_TOKENS)
            f.integer(kblk, f"{at}[2]", 1, MAX_TOKENS)
            f.integer(offset, f"{at}[3]", 0, top)
            f.integer(bursts, f"{at}[4]", 1, top)
    for i, entry in enumerate(f.seq(f.get(table, "ops", "meta.weight_tiles.ops"), "meta.weight_tiles.ops")):
        at = f"meta.weight_tiles.ops[{i}]"
        layer, op, index = f.seq(entry, at, 3)
        f.integer(layer, f"{at}[0]", -1, MAX_LAYER)
        if op not in LINEAR_OPS:
            raise f.error(f"{at}[1]", " or ".join(LINEAR_OPS), op)
        f.integer(index, f"{at}[2]", 0, len(layouts) - 1)


def _check_section(f: _Fields, ent: dict, where: str, words: int) -> None:
    f.text(f.get(ent, "name", f"{where}.name"), f"{where}.name")
    offset = f.integer(f.get(ent, "offset", f"{where}.offset"), f"{where}.offset", 0, words)
    f.integer(f.get(ent, "words", f"{where}.words"), f"{where}.words", 0, words - offset)
    count = f.integer(f.get(ent, "count", f"{where}.count"), f"{where}.count", 0, words)
    start = 0
    for i, label in enumerate(f.seq(f.get(ent, "labels", f"{where}.labels"), f"{where}.labels")):
        at, name = f.seq(label, f"{where}.labels[{i}]", 2)
        start = f.integer(at, f"{where}.labels[{i}][0]", start, count)   # in order, inside the section
        f.text(name, f"{where}.labels[{i}][1]")


def _check_step(f: _Fields, step: dict, where: str, sections: int, hw: HwConfig) -> None:
    phase = f.get(step, "phase", f"{where}.phase")
    if phase not in PHASES:
        raise f.error(f"{where}.phase", " or ".join(PHASES), phase)
    f.integer(f.get(step, "tokens", f"{where}.tokens"), f"{where}.tokens", 1, MAX_TOKENS)
    f.integer(f.get(step, "context", f"{where}.context"), f"{where}.context", 1, MAX_TOKENS)
    top = (1 << hw.hbm_addr_bits) - 1
    for i, call in enumerate(f.seq(f.get(step, "calls", f"{where}.calls"), f"{where}.calls")):
        at = f"{where}.calls[{i}]"
        section, layer, base = f.seq(call, at, 3)
        f.integer(section, f"{at}[0]", 0, sections - 1)
        f.integer(layer, f"{at}[1]", -2, MAX_LAYER)
        for k, b in enumerate(f.seq(base, f"{at}[2]", BASE_REGISTERS * hw.slrs)):
            f.integer(b, f"{at}[2][{k}]", 0, top)
