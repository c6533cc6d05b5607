"""Compiler: graph, passes, lowering, and the errors for what cannot be compiled."""
from __future__ import annotations

import json

import pytest
from conftest import density_profile, edited_config

from compiler.attention_mask import kept_blocks, kept_ranges
from compiler.graph import build_graph
from compiler.model_config import load_model
from compiler.passes.emit import R_KV
from compiler.pipeline import PIPELINE, Buckets, compile_program, new_step, run_passes
from compiler.weights.profile import load_compression
from hwmodel.costs import transfer_bytes
from hwmodel.errors import CompileError, ConfigError, ProgramFormatError
from hwmodel.hwconfig import COMPILER_BLIND, load_hw
from hwmodel.isa import MatMode, Op
from hwmodel.program import parts, schedule_for, to_bytes
from hwmodel.weight_record import record_bytes


@pytest.fixture(scope="module")
def llama():
    return load_model("llama2-7b")


@pytest.fixture(scope="module")
def flight(u280):
    return load_compression("flightllm", u280)


def lowered(model, comp, hw, phase, tokens, context, fusion=True):
    """The step's graph and state after every pass (contracts checked)."""
    g, st = new_step(model, comp, phase, tokens, context, fusion=fusion)
    run_passes(g, st, hw, check=True)
    return g, st


def test_frontend_has_every_layer_op(llama):
    g = build_graph(llama)
    kinds = [a["kind"] for _, a in g.nodes(data=True)]
    assert kinds.count("attention") == 32 and kinds.count("linear") == 4 * 32 + 1
    assert g.nodes["L0.up"]["out_features"] == 2 * 11008      # gate and up
    assert g.nodes["lm_head"]["out_features"] == 32000


def test_hf_config_json_is_a_model(tmp_path):
    cfg = {"model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
           "num_key_value_heads": 32, "intermediate_size": 11008, "vocab_size": 32000,
           "max_position_embeddings": 4096, "hidden_act": "silu", "_name_or_path": "meta-llama/Llama-2-7b-hf"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    m = load_model(path)
    ours = load_model("llama2-7b")
    assert (m.layers, m.hidden, m.heads, m.ffn, m.vocab, m.norm, m.positional) == \
           (ours.layers, ours.hidden, ours.heads, ours.ffn, ours.vocab, ours.norm, ours.positional)
    assert m.linear_params == ours.linear_params


def test_fusion_keeps_activations_on_chip(llama, flight, u280):
    fused, fused_st = lowered(llama, flight, u280, "decode", 1, 256)
    assert "L0.rope" not in fused and "L0.act" not in fused
    assert fused.nodes["L0.qkv"]["fuse"] == "rope" and fused.nodes["L0.up"]["fuse"] == "silu_mul"
    spilled, spilled_st = lowered(llama, flight, u280, "decode", 1, 256, fusion=False)
    assert "L0.rope" in spilled and "L0.act" in spilled

    def st_count(st):
        return sum(1 for sec in st.sections for i in sec.instrs if i.op == Op.ST)
    assert st_count(spilled_st) > st_count(fused_st) + 10


def test_partition_shards_heads_and_rows_and_gathers(llama, flight, u280):
    g, _ = lowered(llama, flight, u280, "decode", 1, 256)
    assert g.nodes["L0.attn"]["kv_heads_core"] == 11                 # ceil(32 / 3)
    assert g.nodes["L0.qkv"]["rows_core"] == 11 * 3 * 128
    assert g.nodes["L0.o"]["rows_core"] * 3 >= 4096
    gathers = [n for n in g if n.startswith("L0.") and n.endswith(".gather")]
    assert sorted(gathers) == ["L0.attn.gather", "L0.down.gather", "L0.o.gather", "L0.up.gather"]


def test_weight_tiles_fit_half_the_weight_buffer_and_fill_the_chains(llama, flight, u280):
    g, _ = lowered(llama, flight, u280, "decode", 1, 256)
    half = u280.buffers["wgt"].bytes // 2
    for name, a in g.nodes(data=True):
        if a["kind"] != "linear":
            continue
        for rows, k0, kblk in a["tiles"]:
            assert rows % u280.chains == 0 or rows == a["tiles"][-1][0]
            assert record_bytes(u280, rows, kblk, a["n"], a["bits"], 128) <= half
        assert sum(r for r, k0, _ in a["tiles"] if k0 == 0) == a["rows_core"]
        assert sum(k for _, _, k in a["tiles"]) * a["tiles"][0][0] >= a["kblk"] * a["tiles"][0][0]
    down = g.nodes["L5.down"]["tiles"]
    assert down[0][2] < g.nodes["L5.down"]["kblk"]         # 128 rows of 8:16 down need a K split


def test_prefill_lowers_to_mm_and_decode_to_mv(llama, flight, u280):
    _, pre = lowered(llama, flight, u280, "prefill", 128, 128)
    _, dec = lowered(llama, flight, u280, "decode", 1, 256)
    ops = lambda st: {i.op for sec in st.sections for i in sec.instrs}
    assert Op.MM in ops(pre)
    assert Op.MV in ops(dec) and Op.MM not in ops(dec)   # MHA: one query per KV head


def layer_section(lowered_step, layer=0):
    _, st = lowered_step
    return st.sections[st.layer_section[layer]]


def kv_load_bytes(lowered_step, hw, layer=0):
    return sum(transfer_bytes(hw, i) for i in layer_section(lowered_step, layer).instrs if i.op == Op.LD and i.f["base"] == R_KV)


def scored_keys(lowered_step, layer):
    """Keys the layer's score MVs/MMs cover (the SCORES mode's `rows` are keys)."""
    return sum(i.f["rows"] for i in layer_section(lowered_step, layer).instrs
               if i.op in (Op.MV, Op.MM) and i.f["mode"] == MatMode.SCORES)


def test_kv_reads_grow_with_context(llama, flight, u280):
    sizes = [kv_load_bytes(lowered(llama, flight, u280, "decode", 1, c), u280) for c in (128, 512, 1024, 2048)]
    assert sizes == sorted(sizes) and sizes[-1] > 4 * sizes[0]


def test_each_layer_loads_and_scores_only_the_blocks_its_density_keeps(llama, flight, u280):
    ctx = 2048
    sparse = lowered(llama, flight, u280, "decode", 1, ctx)
    full_bytes = kv_load_bytes(lowered(llama, load_compression("dense-int8", u280), u280, "decode", 1, ctx), u280)
    densities = flight.attn_densities(llama)
    assert densities[0] == 0.45 and densities[31] == 0.60          # FlightLLM's released masks, per layer
    kept = [len(kept_blocks((ctx - 1) // 64, d)) for d in densities]
    assert kept[:3] == [15, 13, 8] and kept[31] == 20
    for layer in range(32):
        assert kv_load_bytes(sparse, u280, layer) / full_bytes == pytest.approx(kept[layer] / 32, rel=1e-9)
        assert scored_keys(sparse, layer) == 11 * 64 * kept[layer]   # 11 KV heads per core


def test_mask_keeps_sink_and_recent_blocks():
    assert kept_blocks(0, 0.5) == [0]
    assert kept_blocks(7, 0.5) == [0, 5, 6, 7]
    assert kept_ranges(7, 0.5, 64, 500) == [(0, 64), (320, 500)]
    assert kept_blocks(9, 1.0) == list(range(10))


def test_identical_layers_share_a_section(u280, llama, flight):
    prog = compile_program(llama, flight, u280, 128, 16)
    decode = next(s for s in prog.steps if s.phase == "decode")
    layer_sections = [c.section for c in decode.calls if c.layer >= 0]
    # at context 144 every layer's density keeps 2 of the 3 causal blocks; layers 0, 1, 30, 31
    # keep a dense 5-bit down projection: two distinct layer sections
    assert len(set(layer_sections)) == 2
    assert layer_sections[2:30] == [layer_sections[2]] * 28
    bases = [c.base[0] for c in decode.calls if c.layer >= 0]
    assert len(set(bases)) == 32                         # each layer's own weights through r0


def test_decode_steps_are_bucketed(u280, flight):
    prog = compile_program(load_model("tiny"), flight, u280, 100, 40, Buckets(128, 16))
    decode = [(prog.steps[i].context, n) for i, n in prog.schedule if prog.steps[i].phase == "decode"]
    assert decode == [(112, 12), (128, 16), (144, 12)]
    assert [(s.tokens, s.context) for s in prog.steps if s.phase == "prefill"] == [(128, 128)]
    long = compile_program(load_model("tiny"), flight, u280, 300, 1, Buckets(128, 16))
    run = [long.steps[i] for i, _ in long.schedule]
    assert [(s.phase, s.context) for s in run] == [("prefill", 128), ("prefill", 256), ("prefill", 384),
                                                   ("logits", 128), ("decode", 304)]
    assert [s.phase for s in long.steps].count("logits") == 1


def test_cases_program_leaves_out_contexts_no_case_reaches(u280, flight):
    tiny = load_model("tiny")
    full = compile_program(tiny, flight, u280, 200, 40, Buckets(128, 16), cover=(200, 240))
    cases = compile_program(tiny, flight, u280, 200, 40, Buckets(128, 16), cover=(200, 240), min_prompt=200)
    decode = [s.context for s in cases.steps if s.phase == "decode"]
    assert decode == list(range(208, 241, 16)) and cases.meta["min_prompt"] == 200
    assert [s.context for s in full.steps if s.phase == "decode"] == list(range(16, 241, 16))
    step_of = {(s.phase, s.context): s for s in full.steps}
    for i, n in cases.schedule:                 # the same steps, instruction for instruction
        s = cases.steps[i]
        words = [cases.sections[c.section].words for c in s.calls]
        assert words == [full.sections[c.section].words for c in step_of[(s.phase, s.context)].calls]
    with pytest.raises(ProgramFormatError, match=r"no decode step for context 112 \(it covers decode contexts "
                                                  r"208\.\.240\)"):
        schedule_for(cases, 100, 10)
    with pytest.raises(CompileError, match="min_prompt must be in 1..200"):
        compile_program(tiny, flight, u280, 200, 40, cover=(200, 240), min_prompt=201)


@pytest.mark.parametrize("field, old, new", [("clock_mhz", "clock_mhz: 225", "clock_mhz: 300"),
                                             ("static_power_w", "static_w: 35", "static_w: 50"),
                                             ("price_usd", "price_usd: 8000", "price_usd: 9000")])
def test_compiler_blind_fields_leave_the_program_unchanged(tmp_path, u280, flight, field, old, new):
    assert field in COMPILER_BLIND
    other = load_hw(edited_config(tmp_path, u280.source, "other.yaml", old, new))
    assert other.fingerprint != u280.fingerprint and other.program_key == u280.program_key
    tiny = load_model("tiny")
    a = compile_program(tiny, flight, u280, 130, 20, Buckets(128, 16))
    b = compile_program(tiny, load_compression("flightllm", other), other, 130, 20, Buckets(128, 16))
    assert a.hw_fingerprint != b.hw_fingerprint
    head_a, words_a = parts(to_bytes(a, u280))
    head_b, words_b = parts(to_bytes(b, other))
    assert words_a == words_b
    assert head_a.replace(a.hw_fingerprint.encode(), b.hw_fingerprint.encode()) == head_b


def test_model_that_does_not_fit_in_hbm(tmp_path, u280):
    big = tmp_path / "big.yaml"
    big.write_text("name: big\nlayers: 80\nhidden: 8192\nheads: 64\nkv_heads: 8\nffn: 28672\nvocab: 32000\n"
                   "max_context: 4096\nnorm: rmsnorm\nactivation: silu\ngated_ffn: true\npositional: rope\n")
    with pytest.raises(CompileError, match=r"big.yaml: field layers: big needs at least 65.04 GiB of HBM with dense-int8 "
                                           r"\(80 layers of .* GiB\), u280 has 8 GiB \(.*u280.yaml: field "
                                           r"hbm.capacity_gb\)$"):
        compile_program(load_model(big), load_compression("dense-int8", u280), u280, 128, 16)


def test_tile_that_does_not_fit_its_buffer(tmp_path, llama, u280):
    hw = load_hw(edited_config(tmp_path, u280.source, "small.yaml", "wgt: {kind: bram36, bytes: 1048576}",
                               "wgt: {kind: bram36, bytes: 1024}"))
    with pytest.raises(CompileError, match=r"small.yaml: field buffers.wgt.bytes: op L0.qkv: a tile of 128 rows and one 16-column block"):
        compile_program(llama, load_compression("flightllm", hw), hw, 128, 16)


def test_unsupported_sparsity_is_a_config_error(tmp_path, u280):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nactivation_bits: 8\nkv_bits: 8\nscale_group: 128\n"
                   "weights:\n  default: {n: 3, bits: 4}\nattention: {block: 64, density: 1.0}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: field weights.default.n: N=3 is not supported"):
        load_compression(bad, u280)


def test_pipeline_names_and_dump(tmp_path, u280, flight):
    assert [n for n, _, _ in PIPELINE][:3] == ["annotate_compression", "onchip_fusion", "partition"]
    compile_program(load_model("tiny"), flight, u280, 16, 1, dump_after="tile", dump_dir=tmp_path)
    dumps = sorted(p.name for p in tmp_path.iterdir())
    assert dumps and all("-tile" in d for d in dumps)
    assert "tiles" in (tmp_path / dumps[0]).read_text()


def test_layers_that_keep_different_blocks_get_their_own_sections(u280, llama, flight):
    _, st = lowered(llama, flight, u280, "decode", 1, 2048)
    kept = [len(kept_blocks(31, d)) for d in flight.attn_densities(llama)]
    down = [flight.weight_format("down", layer) for layer in range(32)]
    sections = st.layer_section
    for a in range(32):
        for b in range(32):
            assert (sections[a] == sections[b]) == ((kept[a], down[a]) == (kept[b], down[b])), (a, b)


def test_a_density_list_holds_for_its_depth_and_the_default_for_others(tmp_path, u280):
    comp = load_compression(density_profile(tmp_path, "density: [0.5, 0.25]"), u280)
    tiny = load_model("tiny")
    assert comp.attn_densities(tiny) == (0.5, 0.25)
    g, _ = lowered(tiny, comp, u280, "decode", 1, 2048)
    assert [g.nodes[f"L{i}.attn"]["density"] for i in range(2)] == [0.5, 0.25]
    with pytest.raises(ConfigError, match=r"per-layer.yaml: field attention.density: 2 values, one per decoder "
                                          r"layer, but llama2-7b has 32 layers"):
        comp.attn_densities(load_model("llama2-7b"))
    flight = load_compression("flightllm", u280)
    assert flight.attn_densities(tiny) == (0.30, 0.30)
    assert load_compression("dense-int8", u280).attn_densities(tiny) == (1.0, 1.0)


def test_a_wrong_length_density_list_fails_before_the_passes(tmp_path, u280, llama):
    comp = load_compression(density_profile(tmp_path, "density: [0.5, 0.25, 0.3]"), u280)
    with pytest.raises(ConfigError, match=r"field attention.density: 3 values, .* but llama2-7b has 32 layers"):
        compile_program(llama, comp, u280, 128, 16)


@pytest.mark.parametrize("density, message", [
    ("density: .nan", r"field attention.density: expected a finite number, got nan"),
    ("density: [0.5, .inf]", r"field attention.density\[1\]: expected a finite number, got inf"),
    ("density: [0.5, .nan]", r"field attention.density\[1\]: expected a finite number, got nan"),
    ("density: [0.5, 0]", r"field attention.density\[1\]: expected >= 0.01, got 0"),
    ("density: [1.5, 0.5]", r"field attention.density\[0\]: expected <= 1.0, got 1.5"),
    ("density: -0.2", r"field attention.density: expected >= 0.01, got -0.2"),
    ("density: []", r"field attention.density: expected a non-empty list of numbers"),
    ("density: [0.5, half]", r"field attention.density\[1\]: expected a finite number, got 'half'"),
    ("density: 0.5\n  density_default: 0.3", r"field attention.density_default: applies only when density is a "
                                              r"per-layer list"),
    ("density: [0.5]\n  density_default: 2", r"field attention.density_default: expected <= 1.0, got 2"),
])
def test_bad_attention_densities_are_refused(tmp_path, u280, density, message):
    with pytest.raises(ConfigError, match=r"per-layer.yaml: " + message):
        load_compression(density_profile(tmp_path, density), u280)
