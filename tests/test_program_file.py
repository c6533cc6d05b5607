"""The .dfp file: round trip, and every kind of damage is a ProgramFormatError."""
from __future__ import annotations

import pytest

from hwmodel.errors import ProgramFormatError
from hwmodel.program import from_bytes, listing, to_bytes


def test_round_trip_keeps_every_instruction_and_the_schedule(tiny_program, u280):
    data = to_bytes(tiny_program, u280)
    back = from_bytes(data, u280)
    assert [s.instrs for s in back.sections] == [s.instrs for s in tiny_program.sections]
    def steps(p):
        return [(s.phase, s.tokens, s.context, [(c.section, c.layer, c.base) for c in s.calls]) for s in p.steps]
    assert steps(back) == steps(tiny_program)
    assert back.schedule == tiny_program.schedule
    assert to_bytes(back, u280) == data
    assert listing(back) == listing(tiny_program)


@pytest.mark.parametrize("cut", [0, 10, 100, -1, -33])
def test_truncated_program(tiny_program, u280, cut):
    data = to_bytes(tiny_program, u280)
    with pytest.raises(ProgramFormatError, match="prog.dfp: (truncated|checksum mismatch)"):
        from_bytes(data[:cut], u280, "prog.dfp")


@pytest.mark.parametrize("where", [5, 200, 0.5, -40])
def test_corrupted_byte(tiny_program, u280, where):
    data = bytearray(to_bytes(tiny_program, u280))
    pos = int(len(data) * where) if isinstance(where, float) else where
    data[pos] ^= 0x5A
    with pytest.raises(ProgramFormatError, match="prog.dfp: "):
        from_bytes(bytes(data), u280, "prog.dfp")


def test_wrong_magic_and_wrong_hardware(tiny_program, u280, vhk158):
    data = to_bytes(tiny_program, u280)
    with pytest.raises(ProgramFormatError, match="not a dspflight program"):
        from_bytes(b"ELF!" + data[4:], u280, "x")
    with pytest.raises(ProgramFormatError, match="compiled for hardware 'u280'"):
        from_bytes(data, vhk158, "x")


def test_schedule_for_other_lengths_and_outside_the_cover(u280):
    from compiler.compression import load_compression
    from compiler.model_config import load_model
    from compiler.pipeline import Buckets, compile_program
    from hwmodel.program import schedule_for
    prog = compile_program(load_model("tiny"), load_compression("flightllm", u280), u280, 16, 4,
                           Buckets(16, 16), cover=(64, 128))
    run = schedule_for(prog, 40, 50)           # chunks 16, 32, 48; contexts 41..90 in buckets 48..96
    phases = [(prog.steps[i].phase, prog.steps[i].context, n) for i, n in run]
    assert phases == [("prefill", 16, 1), ("prefill", 32, 1), ("prefill", 48, 1), ("logits", 16, 1),
                      ("decode", 48, 8), ("decode", 64, 16), ("decode", 80, 16), ("decode", 96, 10)]
    with pytest.raises(ProgramFormatError, match="no decode step for context 144 .*up to 128"):
        schedule_for(prog, 64, 80)
