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
    from compiler.model_config import load_model
    from compiler.pipeline import Buckets, compile_program
    from compiler.weights.profile import load_compression
    from hwmodel.program import schedule_for
    prog = compile_program(load_model("tiny"), load_compression("flightllm", u280), u280, 16, 4,
                           Buckets(16, 16), cover=(64, 128))
    run = schedule_for(prog, 40, 50)           # chunks 16, 32, 48; contexts 41..90 in buckets 48..96
    phases = [(prog.steps[i].phase, prog.steps[i].context, n) for i, n in run]
    assert phases == [("prefill", 16, 1), ("prefill", 32, 1), ("prefill", 48, 1), ("logits", 16, 1),
                      ("decode", 48, 8), ("decode", 64, 16), ("decode", 80, 16), ("decode", 96, 10)]
    with pytest.raises(ProgramFormatError, match=r"no decode step for context 144 .*contexts 16\.\.128\)"):
        schedule_for(prog, 64, 80)


@pytest.mark.parametrize("edit,message", [
    (lambda p: p.pop("spaces"), "malformed"),
    (lambda p: p.update(core_pcs=[[0, 1]]), "one PC list per core"),
    (lambda p: p["core_pcs"][0].__setitem__(0, 99), "a PC outside 0..31"),
    (lambda p: p.update(groups=[["weights", 0, 99], ["kv", 0, 1], ["io", 0, 1]]), "group weights"),
    (lambda p: p.update(groups=[["weights", 0, 1]]), "one group for each of weights, kv, io"),
    (lambda p: p["spaces"].append([[0, 11], 0, 64]), "PC 0 belongs to two spaces"),
    (lambda p: p["spaces"][0].__setitem__(2, 1 << 40), "larger than its PCs"),
    (lambda p: p.update(core_pcs="x"), "malformed"),
])
def test_a_bad_placement_in_the_header_is_one_line_naming_the_placement(tiny_program, u280, edit, message):
    import copy

    bad = copy.deepcopy(tiny_program)
    edit(bad.meta["placement"])
    with pytest.raises(ProgramFormatError, match=f"prog.dfp: header field meta: placement: .*{message}") as err:
        from_bytes(to_bytes(bad, u280), u280, "prog.dfp")
    assert "\n" not in str(err.value)


def test_a_base_register_outside_its_space_is_refused(tiny_program, u280):
    import copy

    from hwmodel.errors import SimulationError
    from sim.stats import simulate
    bad = copy.deepcopy(tiny_program)
    bad.steps[0].calls[1].base[1] += 1           # core 0's KV base off its row
    with pytest.raises(SimulationError, match="base register 1 .* not a row-aligned address of its kv space"):
        simulate(bad, u280)
