"""Corrupt program files are refused in one line: seeded mutations of a compiled
program (bench/fuzz_programs.py), the issue's reproducers, and the CLI."""
from __future__ import annotations

import collections
import json
import os
import subprocess
import sys

import pytest

from bench.fuzz_programs import KINDS, SOURCE, base_program, case, cases, well_formed
from hwmodel.errors import ProgramFormatError, SimulationError
from hwmodel.isa import Op, isa_for
from hwmodel.program import assemble, from_bytes, parts
from sim.stats import simulate

CASES = 2400
SECONDS_PER_CASE = 5.0


def test_thousands_of_mutations_load_or_are_refused_in_one_line_naming_the_file():
    outcomes = list(cases(0, CASES))
    crashes = [o for o in outcomes if o.result == "crash"]
    assert not crashes, f"case {crashes[0].seed} ({crashes[0].kind}):\n{crashes[0].message}"
    malformed = [o for o in outcomes if not well_formed(o)]
    assert not malformed, f"case {malformed[0].seed} ({malformed[0].kind}): {malformed[0].message!r}"
    by = collections.Counter((o.kind, o.result) for o in outcomes)
    assert {k for k, _ in by} == set(KINDS)
    for result in ("ok", "format", "simulation"):       # the mutations reach every stage
        assert sum(n for (_, r), n in by.items() if r == result) >= 50, by
    assert max(o.seconds for o in outcomes) <= SECONDS_PER_CASE


def test_a_case_is_reproducible_from_its_seed():
    assert case(1234) == case(1234)
    assert case(1234) != case(1235)


def _with_header(edit) -> bytes:
    data, _ = base_program()
    header, words = parts(data)
    tree = json.loads(header)
    text = edit(tree)
    return assemble(text.encode() if isinstance(text, str) else json.dumps(tree).encode(), words)


@pytest.mark.parametrize("edit,message", [
    (lambda h: h["sections"][1].update(offset="8"), r"header field sections\[1\]\.offset: expected an integer"),
    (lambda h: h["steps"][0].pop("context"), r"header field steps\[0\]\.context: missing"),
    (lambda h: h.pop("schedule"), r"header field schedule: missing"),
    (lambda h: h["schedule"][0].__setitem__(1, float("inf")), r"malformed header: Infinity is not a number"),
    (lambda h: h["sections"][1]["labels"].append([2**31, "x"]),
     r"header field sections\[1\]\.labels\[\d+\]\[0\]: expected an integer in \d+\.\.\d+, got 2147483648"),
    (lambda h: json.dumps(h).replace('"schedule": ', '"schedule": ' + "[" * 100000 + "]" * 100000 + ","),
     r"malformed header: nested 100001 deep"),
    (lambda h: h["steps"][0]["calls"][0][2].pop(), r"header field steps\[0\]\.calls\[0\]\[2\]: expected a list of 12"),
    (lambda h: h["meta"].update(prefill_bucket=0), r"header field meta\.prefill_bucket: expected an integer in 1\.\."),
    (lambda h: h.update(hw_name="../../etc/u280"), r"header field hw_name: expected a name"),
    (lambda h: h["sections"][0].update(count=3), r"header field sections\[0\]\.count: 3, but its words hold 2"),
])
def test_a_malformed_header_names_the_file_and_the_field(u280, edit, message):
    with pytest.raises(ProgramFormatError, match=f"^prog.dfp: {message}") as err:
        from_bytes(_with_header(edit), u280, "prog.dfp")
    assert "\n" not in str(err.value)


def _with_field(index: int, **fields) -> bytes:
    """The base program with instruction `index` (counted over all sections) changed."""
    data, hw = base_program()
    isa = isa_for(hw)
    header, raw = parts(data)
    words = [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4)]
    pos = 0
    for _ in range(index):
        pos = isa.decode(words, pos)[1]
    ins, end = isa.decode(words, pos)
    for name, value in fields.items():
        if name in ("wait", "release"):
            setattr(ins, name, value)
        else:
            ins.f[name] = value
    words[pos:end] = isa.encode(ins)
    return assemble(header, b"".join(w.to_bytes(4, "little") for w in words))


def _first(op: Op, **where) -> int:
    prog = from_bytes(*base_program())
    flat = [ins for sec in prog.sections for ins in sec.instrs]
    return next(i for i, ins in enumerate(flat) if ins.op == op and all(ins.f[k] == v for k, v in where.items()))


@pytest.mark.parametrize("op,where,fields,message", [
    (Op.MM, {}, {"act": "max"}, r"act: \d+ bytes at on-chip byte \d+ overflow"),
    (Op.MISC, {}, {"dst": "max"}, r"dst: \d+ bytes at on-chip byte \d+ overflow"),
    (Op.MISC, {}, {"func": 15}, r"unknown func code 15"),
    (Op.SYS, {}, {"kind": 3}, r"unknown kind code 3"),
    (Op.LD, {}, {"base": 15}, r"base register 15 \(there are 4\)"),
    (Op.LD, {}, {"x_len": 0}, r"x_len=0: an empty operation"),
    (Op.ST, {}, {"len": 0}, r"len=0: an empty operation"),
])
def test_an_instruction_the_design_cannot_run_names_the_section_and_instruction(op, where, fields, message):
    data, hw = base_program()
    top = (1 << hw.onchip_addr_bits) - 1
    bad = _with_field(_first(op, **where), **{k: top if v == "max" else v for k, v in fields.items()})
    prog = from_bytes(bad, hw, "prog.dfp")
    with pytest.raises(SimulationError, match=rf"^prog.dfp: section \S+: instruction \d+ \({op.name}\): {message}"):
        simulate(prog, hw)


def test_a_dependency_deadlock_names_the_file_section_and_queue_heads():
    data, hw = base_program()
    bad = _with_field(_first(Op.LD), wait=0b11111)     # waits on every other queue before anything ran
    with pytest.raises(SimulationError, match=r"^prog.dfp: section \S+: dependency deadlock .*LD: #0"):
        simulate(from_bytes(bad, hw, "prog.dfp"), hw)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DSPFLIGHT_WORKERS="1")
    return subprocess.run([sys.executable, "-m", "dspflight.cli", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_the_cli_refuses_corrupt_programs_in_one_line_and_writes_nothing(tmp_path):
    picked = {}
    for o in cases(0, 200):
        picked.setdefault((o.result, o.kind in ("header", "header-text")), o.seed)
    chosen = [picked[k] for k in sorted(picked) if k[0] != "ok"]
    assert len(chosen) >= 3
    for seed in chosen:
        bad = tmp_path / f"case{seed}.dfp"
        bad.write_bytes(case(seed)[1])
        out = tmp_path / f"out{seed}"
        run = _cli("simulate", str(bad), "-o", str(out))
        assert run.returncode == 2, run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"dspflight: error: {bad}: "), run.stderr
        assert "Traceback" not in run.stderr
        assert not out.exists() or not any(out.iterdir())


def test_disasm_of_a_fifo_is_refused_instead_of_blocking(tmp_path):
    fifo = tmp_path / "pipe.dfp"
    os.mkfifo(fifo)
    run = _cli("disasm", str(fifo))
    assert run.returncode == 2
    assert run.stderr.strip() == f"dspflight: error: {fifo}: not a regular file"


def test_the_fuzz_source_name_is_what_the_errors_start_with():
    data, hw = base_program()
    with pytest.raises(ProgramFormatError, match=f"^{SOURCE}: "):
        from_bytes(data[:-1], hw, SOURCE)
