"""The functional executor runs the program the cycle simulator times and agrees
with the numpy reference bit for bit (FP16 unit mirrored), on every core."""
from __future__ import annotations

import copy
import hashlib
from dataclasses import replace

import numpy as np
import pytest
from conftest import density_profile, edited_config

from compiler.model_config import load_model
from compiler.passes.allocate import layer_record_offsets
from compiler.pipeline import Buckets, compile_program
from compiler.weights.checkpoint import load_checkpoint, write_random_llama
from compiler.weights.compress import compress
from compiler.weights.pack import pack
from compiler.weights.profile import load_compression
from dspflight.api import execute
from dspflight.reference import Reference
from hwmodel.errors import CompileError, SimulationError
from hwmodel.hbm_image import HbmImage
from hwmodel.hwconfig import load_hw
from hwmodel.isa import Op, other_queues
from hwmodel.program import read_program, write_program
from sim.functional import LD_FIRST, Executor, read_panels, write_panels
from sim.stats import simulate

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_random_llama(tmp_path_factory.mktemp("ck") / "tiny", load_model("tiny"), seed=0)


@pytest.fixture(scope="module")
def vhk158_run(tiny_dir, tmp_path_factory):
    """Prefill 16 + 16 decode steps of the tiny model on the 4-core VHK158 design,
    from a .dfp file that the cycle simulator also times."""
    hw = load_hw("vhk158")
    path = tmp_path_factory.mktemp("prog") / "program.dfp"
    prog = compile_program(load_model("tiny"), load_compression("flightllm", hw), hw, 16, 16, Buckets(16, 1))
    write_program(prog, hw, path)
    stats = simulate(read_program(path, hw)[0], hw)
    return path, stats, execute(tiny_dir, "vhk158", prefill=16, decode=16, program=path)


def test_prefill_16_and_16_decode_steps_agree_bit_for_bit(vhk158_run):
    _, _, r = vhk158_run
    assert len(r.tokens) == 17                         # one from the prompt's logits, one per decode step
    assert r.tokens == r.ref_tokens
    assert len(set(r.tokens)) > 8                      # a real sequence, not a stuck argmax
    assert len(r.layers) == 2 * 17                     # every layer of the prefill and of each decode step
    assert [(a.phase, a.position) for a in r.layers[:2]] == [("prefill", 0)] * 2
    for a in r.layers:
        assert a.mismatches == 0 and a.max_abs == 0, a
    assert r.layers[0].elements == 16 * 256 and r.layers[-1].elements == 256


def test_the_executed_program_is_the_timed_file(vhk158_run):
    path, stats, r = vhk158_run
    assert r.program_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert stats.phases["decode"].tokens == 16 and stats.phases["prefill"].tokens == 16


def test_block_sparse_attention_skips_blocks_and_still_agrees(tiny_dir):
    # contexts up to 136 with 64-key blocks at flightllm's 0.30 for a 2-layer model: queries in block 2
    # skip block 1
    r = execute(tiny_dir, "vhk158", prefill=128, decode=8, chunk=64)
    assert r.tokens == r.ref_tokens
    assert all(a.mismatches == 0 for a in r.layers)
    assert {a.position for a in r.layers} == {0, 64, *range(128, 136)}


def test_per_layer_densities_run_bit_exact(tiny_dir, tmp_path):
    # layer 0 keeps every causal block, layer 1 a quarter: at contexts 129..136 layer 0 attends to
    # block 1 and layer 1 skips it, so the two layers run different sections
    profile = density_profile(tmp_path, "density: [1.0, 0.25]")
    hw = load_hw("vhk158")
    prog = compile_program(load_model("tiny"), load_compression(profile, hw), hw, 128, 8, Buckets(64, 1))
    decode = next(s for s in prog.steps if s.phase == "decode")
    assert len({c.section for c in decode.calls if c.layer >= 0}) == 2
    r = execute(tiny_dir, "vhk158", str(profile), prefill=128, decode=8, chunk=64)
    assert r.tokens == r.ref_tokens
    assert all(a.mismatches == 0 and a.max_abs == 0 for a in r.layers)
    assert len(r.layers) == 2 * (2 + 8)


def test_shards_of_part_lines_are_refused_clearly(tmp_path):
    # head dimension 80: one core's two heads are 160 bytes, not whole 64-byte lines
    cfg = edited_config(tmp_path, "configs/models/tiny.yaml", "odd.yaml", "hidden: 256", "hidden: 320")
    ck = write_random_llama(tmp_path / "odd", load_model(cfg), seed=1)
    with pytest.raises(CompileError, match=r"cannot run numerically: attn.gather: a core's shard of 160 bytes is not "
                                           r"whole 64-byte lines"):
        execute(ck, "u280", prefill=16, decode=2)


def test_u280_three_cores_agree(tiny_dir):
    r = execute(tiny_dir, "u280", prefill=16, decode=4)
    assert r.tokens == r.ref_tokens and all(a.mismatches == 0 for a in r.layers)


def compressed_tiny(tiny_dir, decode: int):
    """The tiny checkpoint compressed for VHK158 and a program of 16 + `decode` tokens."""
    hw = load_hw("vhk158")
    comp = load_compression("flightllm", hw)
    ck = load_checkpoint(tiny_dir)
    cm = compress(ck, comp, np.random.default_rng(0).integers(0, 512, (2, 32)))
    return hw, ck, cm, compile_program(ck.model, comp, hw, 16, decode, Buckets(16, 1))


def test_a_corrupted_weight_record_shows_up_in_the_numbers(tiny_dir):
    hw, ck, cm, prog = compressed_tiny(tiny_dir, 0)
    image = pack(cm, prog, hw)
    layer0 = next(c for c in prog.steps[0].calls if c.layer == 0)
    hbm = image.hbm.copy()
    first_tile = layer_record_offsets(ck.model)["bytes"]          # the parameter record comes first
    first_tile = -(-first_tile // hw.hbm.burst_bytes) * hw.hbm.burst_bytes
    hbm[layer0.base[0] * hw.hbm.burst_bytes + first_tile] ^= 0xFF  # L0's first qkv weights, core 0
    prompt = list(range(16))
    states = {}
    Executor(prog, hw, replace(image, hbm=hbm)).generate(
        prompt, 0, lambda ph, p, layer, x: states.setdefault(layer, x))
    ref = {}
    Reference(cm).generate(prompt, 0, 16, lambda ph, p, layer, x: ref.setdefault(layer, x))
    assert not np.array_equal(states[0], ref[0])


def test_pack_follows_the_programs_tile_table_and_refuses_one_that_does_not_fit(tiny_dir):
    hw, ck, cm, prog = compressed_tiny(tiny_dir, 0)
    table = prog.meta["weight_tiles"]
    assert len(table["ops"]) == 4 * ck.model.layers + 1
    good = pack(cm, prog, hw)
    moved = copy.deepcopy(prog)                   # the packer reads the offsets from the header, not the passes
    head = next(i for i, (layer, op, _) in enumerate(table["ops"]) if op == "lm_head")
    tiles = moved.meta["weight_tiles"]["layouts"][table["ops"][head][2]]
    tiles[0][3] += 1                              # the LM head's first record one burst further on
    at = next(c for s in prog.steps for c in s.calls if c.layer == -2).base[3] * hw.hbm.burst_bytes
    assert not np.array_equal(pack(cm, moved, hw).hbm[at:at + 4096], good.hbm[at:at + 4096])
    for change, message in ((lambda t: t["ops"].pop(), r"\.ops names 8 ops, not the 9 linear ops of tiny$"),
                            (lambda t: t["layouts"][0][0].__setitem__(0, 10 ** 6), r"\.layouts\[0\]: a tile exceeds op ")):
        bad = copy.deepcopy(prog)
        change(bad.meta["weight_tiles"])
        with pytest.raises(CompileError, match=r"^program for tiny: header field meta\.weight_tiles" + message):
            pack(cm, bad, hw)
    del bad.meta["weight_tiles"]
    with pytest.raises(CompileError, match=r"has no weight tile table \(meta.weight_tiles\): recompile it"):
        pack(cm, bad, hw)


def test_panel_layout_makes_column_blocks_contiguous():
    x = np.arange(4 * 48, dtype=np.int64).reshape(4, 48).astype(np.int8)
    mem = np.zeros(4096, np.uint8)
    write_panels(mem, 64, x)
    assert np.array_equal(read_panels(mem, 64, 4, 48), x)
    assert np.array_equal(read_panels(mem, 64 + 16 * 4, 4, 32), x[:, 16:])   # features 16.. start 16*T bytes on


def test_execute_subcommand_prints_tokens_and_per_layer_agreement(tiny_dir, capsys, tmp_path):
    import json

    from dspflight.cli import main
    out_dir = tmp_path / "out"
    hw = load_hw("u280")
    assert main(["execute", "--checkpoint", str(tiny_dir), "--decode", "2", "-o", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert ("tokens identical; FP16 residual stream max |diff| 0 (0.00e+00 of the layer's largest value; bound 0) "
            "over 6 layer outputs") in out
    assert out.count("\nprefill ") == 2 and out.count("\ndecode ") == 4
    report = json.loads((out_dir / "agreement.json").read_text())
    again = execute(tiny_dir, "u280", prefill=16, decode=2, program=out_dir / "program.dfp")
    assert again.tokens == report["tokens"] and again.program_sha256 == report["program_sha256"]
    image = HbmImage.load(out_dir / "hbm.npz", hw)
    assert image.meta["program_sha256"] == report["program_sha256"]


def test_an_image_runs_only_the_program_it_was_packed_for(tiny_dir):
    hw = load_hw("vhk158")
    comp = load_compression("flightllm", hw)
    ck = load_checkpoint(tiny_dir)
    cm = compress(ck, comp, np.random.default_rng(0).integers(0, 512, (2, 32)))
    image = pack(cm, compile_program(ck.model, comp, hw, 16, 0, Buckets(16, 1)), hw)
    other = compile_program(ck.model, comp, hw, 16, 2, Buckets(16, 1))
    with pytest.raises(SimulationError, match="packed for another program"):
        Executor(other, hw, image)


def test_saved_per_channel_image_loads_back_to_the_same_bytes(tiny_dir, tmp_path):
    hw = load_hw("vhk158")
    comp = load_compression("flightllm", hw)
    ck = load_checkpoint(tiny_dir)
    cm = compress(ck, comp, np.random.default_rng(0).integers(0, 512, (2, 32)))
    image = pack(cm, compile_program(ck.model, comp, hw, 16, 0, Buckets(16, 1)), hw)
    channels = image.channel_images(hw)
    assert channels.shape[0] == hw.hbm.channels == 32
    assert np.array_equal(channels[1][:64], image.hbm[64:128])          # burst 1 lives in channel 1
    back = HbmImage.load(image.save(tmp_path / "tiny.hbm.npz", hw), hw)
    assert np.array_equal(back.hbm[: len(image.hbm)], image.hbm) and not back.hbm[len(image.hbm):].any()
    assert np.array_equal(back.embed, image.embed) and back.meta["program_sha256"] == image.meta["program_sha256"]


def test_results_do_not_depend_on_which_queue_runs_ahead_but_on_every_token(tiny_dir):
    hw, ck, cm, prog = compressed_tiny(tiny_dir, 2)
    prompt = list(range(16))

    def run(program, priority):
        states = []
        packed = pack(cm, program, hw)
        ex = Executor(program, hw, packed, priority)
        tokens = ex.generate(prompt, 2, lambda ph, p, layer, x: states.append(x))
        return tokens, states

    ld_first = run(prog, LD_FIRST)
    sys_first = run(prog, tuple(reversed(LD_FIRST)))
    assert ld_first[0] == sys_first[0]
    assert all(np.array_equal(a, b) for a, b in zip(ld_first[1], sys_first[1]))
    # drop the token pair between the first weight LD and its MV: the MV then runs on stale weights
    section = prog.sections[prog.steps[-1].calls[1].section]
    to_mv = 1 << other_queues(int(Op.LD)).index(int(Op.MV))
    from_ld = 1 << other_queues(int(Op.MV)).index(int(Op.LD))
    ld = next(i for i in section.instrs if i.op == Op.LD and i.release & to_mv)
    mv = next(i for i in section.instrs if i.op == Op.MV and i.wait & from_ld)
    ld.release &= ~to_mv
    mv.wait &= ~from_ld
    broken = run(prog, tuple(reversed(LD_FIRST)))
    assert any(not np.array_equal(a, b) for a, b in zip(broken[1], sys_first[1]))
