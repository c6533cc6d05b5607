"""Cross-level check: sparse tiles of the compiled program run on the RTL MV
tile (cocotb on Icarus Verilog and Verilator) from their packed weight records
and give the executor's integer sums in `matrix_cycles` cycles.

The seeded tiny model (tests/test_functional.py `tiny_dir`) is compressed with
PROFILE below (N:16 with N = 8, 4 and 2 at 4, 3 and 5 bits, scale groups of 32
kept weights), compiled for the VHK158 design, packed, and executed for a
PROMPT-token prompt (prefill: MM of PROMPT tokens, two passes of two; a chunk
must divide the attention block) and one decode step (MV). The
executor's `on_matrix` hook sees every MM/MV with a weight record; for each
tile class (N, bits, MM or MV) the smallest tile (fewest cycles, first in
execution order) is kept: the record's bytes exactly as they lie in the
core's weight buffer at the instruction's `wgt` line (values, 4-bit indices,
multiplier bytes, zero points, requant; `hwmodel.weight_record.record_parts`),
the INT8 activations and the executor's sums before requantization.

The record is cut into beats by `hwmodel.gateware.tile_stream.record_tile` and
`tile_beats` (the weight-buffer reader: bit fields only, no arithmetic; the
test checks every weight field of every beat of a token pass against the
record's bits, and the other passes repeat those beats) and streamed
through the exported MV tile, 2 chains of the design's 16 DSP48s: the sparse
MUX, the dequantizer's lanes, the chain and the group scaling (hwmodel.dequant's
arithmetic). A core has
96 chains; the 2-chain tile takes a whole instruction in ceil(rows / 2) steps
of 2 rows, as the hardware's 96 chains take it in steps of 96, so the cycles
are compared with `matrix_cycles` of the design with 2 chains. MM tiles go
through in passes of two tokens, packed in one DSP48 (as in the hardware).
Asserted per class, on both simulators: every 48-bit result equals the
executor's, and the cycles from the first beat to the last result equal
`matrix_cycles`.

Not covered here: SCORES and CONTEXT (attention) MM/MV, whose weights are
INT8 K/V rows without a record or dequantizer; the accumulation across
K-split parts (`acc`/`hold`, the executor's), and requantization.

This module is also the cocotb test module (`program_tile` runs inside the
simulator; it only drives the tile and records what came out).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np
import pytest
from rtl_tools import simulator, yosys  # noqa: F401 (fixtures)

from hwmodel.chain_timing import row_cycles
from hwmodel.costs import matrix_cycles
from hwmodel.dequant import MULT_MAX, SCALE_BYTES
from hwmodel.gateware.dsp48 import FAMILY_DSP
from hwmodel.gateware.mv_tile import MatrixVectorTile
from hwmodel.gateware.tile_stream import record_tile, tile_beats
from hwmodel.hwconfig import load_hw
from hwmodel.isa import MatMode, sparsity_n, weight_bits
from hwmodel.weight_record import record_parts
from rtl.export import tile_for, tile_hw, write_verilog
from rtl.runner import SIM_BUILD, bench_params, run_bench

pytestmark = pytest.mark.rtl

HW = "vhk158"
PROMPT = 4               # prefill tokens: the MM tiles take two passes
CHAINS = 2               # the tile instantiated: 2 chains of the design's chain length
PROFILE = """\
name: {path}
activation_bits: 8
kv_bits: 8
scale_group: 32
weights:
  default: {{n: 8, bits: 4}}
  ops:
    qkv: {{n: 8, bits: 4}}
    o: {{n: 4, bits: 3}}
    up: {{n: 2, bits: 5}}
    down: {{n: 8, bits: 4}}
    lm_head: {{n: 8, bits: 4}}
attention:
  block: 64
  density: 0.3
"""                      # `name` is the file's path: compiler.weights.pack loads the profile by the program's name
CLASSES = [(n, bits, op) for n, bits in ((8, 4), (4, 3), (2, 5)) for op in ("MV", "MM")]


# ---- inside the simulator ------------------------------------------------------
@cocotb.test()
async def program_tile(dut):
    """Cut the captured record into beats and stream them through the MV tile, no idle
    cycles or back-pressure; record the results (stream order) and the edges of
    accepted beats and results."""
    from rtl.benches.tile_bench import TileTB

    params = bench_params()
    tb = TileTB(dut, params)
    await tb.start()
    with np.load(params["operands"]) as z:
        record, x = z["record"], z["x"]
    work = record_tile(tb.hw, record, rows=params["rows"], kblk=params["kblk"], n=params["n"],
                       bits=params["bits"], group=params["group"], x=x)
    got, ins, outs = await tb.run(work)
    Path(params["record"]).write_text(json.dumps({"results": got.tolist(), "in_edges": ins, "out_edges": outs}))


# ---- pytest ------------------------------------------------------------------------
def tile_class(ins) -> tuple[int, int, str]:
    return sparsity_n(ins), weight_bits(ins), ins.op.name


@pytest.fixture(scope="module")
def program_tiles(tmp_path_factory) -> dict:
    """Compress, compile, pack and execute the tiny model with PROFILE (prompt of PROMPT,
    one decode step); per tile class, the smallest tile's record bytes, activations and sums."""
    from compiler.model_config import load_model
    from compiler.pipeline import Buckets, compile_program
    from compiler.weights.checkpoint import load_checkpoint, write_random_llama
    from compiler.weights.compress import compress
    from compiler.weights.pack import pack
    from compiler.weights.profile import load_compression
    from sim.functional import Executor

    tmp = tmp_path_factory.mktemp("program_tile")
    profile = tmp / "rtl-tiles.yaml"
    profile.write_text(PROFILE.format(path=profile))
    hw = load_hw(HW)
    comp = load_compression(profile, hw)
    ck = load_checkpoint(write_random_llama(tmp / "tiny", load_model("tiny"), seed=0))
    cm = compress(ck, comp, np.random.default_rng(0).integers(0, ck.model.vocab, (2, 32)))
    prog = compile_program(ck.model, comp, hw, PROMPT, 1, Buckets(PROMPT, 1))
    image = pack(cm, prog, hw)
    small = tile_hw(hw, chains=CHAINS)
    group = image.meta["scale_group"]
    tiles: dict[tuple, dict] = {}

    def on_matrix(core, ins, act, w, sums):
        if MatMode(ins["mode"]) not in (MatMode.LINEAR, MatMode.LINEAR_FP16):
            return                                   # attention: INT8 K/V rows, no weight record
        key = tile_class(ins)
        cycles = matrix_cycles(small, ins)
        if key in tiles and tiles[key]["cycles"] <= cycles:
            return
        size = sum(record_parts(hw, ins["rows"], ins["kblk"], sparsity_n(ins), weight_bits(ins),
                                       group).values())
        at = ins["wgt"] * hw.line_bytes
        tiles[key] = {"ins": ins, "cycles": cycles, "record": ex.cores[core].mem[at: at + size].copy(),
                      "act": act.copy(), "w": w.copy(), "sums": sums.copy()}

    ex = Executor(prog, hw, image, on_matrix=on_matrix)
    ex.generate(list(range(PROMPT)), 1)
    return {"hw": hw, "group": group, "tiles": tiles}


@pytest.fixture(scope="module")
def exported_tile() -> tuple[MatrixVectorTile, str, Path]:
    """The tile, its module name and its Verilog, exported once for every case
    (Amaranth takes seconds to lower it)."""
    tile = tile_for(load_hw(HW), chains=CHAINS, geometry=FAMILY_DSP["xcup"])
    name = f"mv_tile_{CHAINS}x{tile.chain_length}_{HW}"
    return tile, name, write_verilog(tile, name, SIM_BUILD / "verilog")


def test_the_profile_gives_every_tile_class(program_tiles):
    """CLASSES is what the compiled program has: no class is left untested."""
    assert sorted(program_tiles["tiles"]) == sorted(CLASSES)


def check_beats_are_record_fields(tile, work, beats, record: np.ndarray, parts: dict) -> None:
    """Every beat field is the record's bits: codes and indices at the non-zero's
    position in the row-major stream, m the scale byte and z the zero point of
    the beat's group; lanes past a row's last non-zero carry q = z (weight 0)."""
    L, C = tile.chain_length, tile.chains
    nnz, per_row = work.kblk * work.n, row_cycles(work.kblk, work.n, L)
    groups = -(-nnz // work.group)
    offsets = np.cumsum([0, *parts.values()])
    stream = {name: int.from_bytes(record[a:b].tobytes(), "little") for name, a, b in
              zip(parts, offsets, offsets[1:])}
    field = lambda name, k, width: (stream[name] >> (k * width)) & ((1 << width) - 1)
    sparse = work.n < tile.block
    for k, beat in enumerate(beats[:-(-work.rows // C) * per_row]):      # the first pass holds every row
        step, t = divmod(k, per_row)
        for c, lane in enumerate(beat["lanes"]):
            r = step * C + c
            if r >= work.rows:
                continue
            g = t * L // work.group
            assert lane["m"] == field("scales", r * groups + g, 8 * SCALE_BYTES)
            assert lane["z"] == field("zeros", r * groups + g, work.bits)
            for j in range(L):
                code = (lane["q"] >> (j * work.bits)) & ((1 << work.bits) - 1)
                pos = t * L + j
                if pos >= nnz:
                    assert code == lane["z"]
                    continue
                assert code == field("values", r * nnz + pos, work.bits)
                assert lane["index"][j] == (field("indices", r * nnz + pos, 4) if sparse else pos % tile.block)


@pytest.mark.parametrize("cls", CLASSES, ids=[f"N{n}_b{b}_{op}" for n, b, op in CLASSES])
def test_program_tile_on_rtl_equals_executor(simulator, program_tiles, exported_tile, cls, tmp_path, monkeypatch):
    hw, group = program_tiles["hw"], program_tiles["group"]
    got = program_tiles["tiles"][cls]
    ins, record, act, w, sums = got["ins"], got["record"], got["act"], got["w"], got["sums"]
    rows, kblk, n, bits = ins["rows"], ins["kblk"], sparsity_n(ins), weight_bits(ins)
    tokens = ins["tokens"]
    assert (n, bits, ins.op.name) == cls and n < 16
    assert act.shape == (tokens, kblk * 16) and w.shape == (rows, kblk * 16) and sums.shape == (tokens, rows)
    assert 0 < np.abs(act).max() <= 127 and np.abs(w).max() <= MULT_MAX * 127    # m * d
    assert np.count_nonzero(sums) > sums.size // 2                      # real data, not zeros

    small = tile_hw(load_hw(HW), chains=CHAINS)
    tile, name, verilog = exported_tile
    work = record_tile(hw, record, rows=rows, kblk=kblk, n=n, bits=bits, group=group, x=act)
    # the fields cut from the record are what the executor dequantized, and the beats carry them bit for bit
    dense = np.zeros((rows, kblk, 16), np.int64)
    np.put_along_axis(dense, work.index, work.weights(), axis=2)
    assert np.array_equal(dense.reshape(rows, kblk * 16), w)
    check_beats_are_record_fields(tile, work, tile_beats(tile, work), record,
                                  record_parts(hw, rows, kblk, n, bits, group))

    operands, out = tmp_path / "program_tile.npz", tmp_path / "program_tile.json"
    np.savez(operands, record=record, x=act)
    params = {"hw": HW, "chains": CHAINS, "chain_length": small.chain_length, "family": "xcup", "seed": 0,
              "operands": str(operands), "record": str(out), "rows": rows, "kblk": kblk, "n": n, "bits": bits,
              "group": group}
    # the simulator imports this file as its cocotb test module (and rtl_tools with it)
    here = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    ran, failed = run_bench(sim=simulator, verilog=verilog, toplevel=name, test_module=Path(__file__).stem,
                            params=params, testcase="program_tile")
    assert (ran, failed) == (1, 0)
    rtl = json.loads(out.read_text())

    # results leave per pass of two tokens, per step of CHAINS rows, each a (even, odd token) pair
    steps, passes = -(-rows // CHAINS), -(-tokens // 2)
    results = np.array(rtl["results"], dtype=np.int64)              # (passes * steps, chains, 2)
    assert results.shape == (passes * steps, CHAINS, 2)
    rtl_sums = results.reshape(passes, steps * CHAINS, 2).transpose(0, 2, 1).reshape(2 * passes, -1)
    assert not rtl_sums[tokens:].any() and not rtl_sums[:, rows:].any()   # padding token / rows
    rtl_sums = rtl_sums[:tokens, :rows]
    bad = np.argwhere(rtl_sums != sums)
    assert bad.size == 0, f"{len(bad)} of {sums.size} sums differ (token, row {bad[:4].tolist()}): " \
                          f"RTL {rtl_sums[tuple(bad[:4].T)].tolist()}, executor {sums[tuple(bad[:4].T)].tolist()}"

    measured = rtl["out_edges"][-1] - rtl["in_edges"][0] + 1
    formula = matrix_cycles(small, ins)
    assert len(rtl["in_edges"]) == passes * steps * row_cycles(kblk, n, small.chain_length)
    assert measured == formula, f"RTL took {measured} cycles, matrix_cycles says {formula}"
