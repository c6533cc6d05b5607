"""End to end: models on designs, compared with the published figures."""
from __future__ import annotations

import pytest
from conftest import edited_config

from compiler.attention_mask import kept_ranges
from compiler.compression import load_compression
from compiler.model_config import load_model
from compiler.pipeline import compile_decode_step, compile_program
from hwmodel.hwconfig import load_hw
from sim.stats import simulate

pytestmark = pytest.mark.sim

FLIGHTLLM_U280_DECODE_TOKENS_PER_S = 55.0     # FACTS: measured on the board, LLaMA2-7B, batch 1


def run(model: str, hw_name: str, prefill: int, decode: int, compression: str = "flightllm"):
    hw = load_hw(hw_name)
    prog = compile_program(load_model(model), load_compression(compression, hw), hw, prefill, decode)
    stats = simulate(prog, hw)
    dec = stats.phases["decode"]
    per_token_s = stats.seconds(dec.cycles) / dec.tokens
    return hw, prog, stats, per_token_s


@pytest.fixture(scope="module")
def default_run():
    return run("llama2-7b", "u280", 128, 512)


def test_llama2_7b_decode_on_u280_within_10_percent_of_the_board(default_run):
    _, _, _, per_token_s = default_run
    assert 1 / per_token_s == pytest.approx(FLIGHTLLM_U280_DECODE_TOKENS_PER_S, rel=0.10)


def test_decode_is_memory_bound_and_explained_by_bytes_over_bandwidth(default_run):
    hw, _, stats, per_token_s = default_run
    dec = stats.phases["decode"]
    bytes_per_token = dec.work["hbm_bytes"] * hw.slrs / dec.tokens
    eff_bw = hw.hbm.peak_gbps * 1e9 * hw.hbm.efficiency_cross_channel
    memory_s = bytes_per_token / eff_bw
    assert 2.9e9 < bytes_per_token < 3.3e9          # ~3.6 bits per weight of 6.6 B weights, plus KV
    assert memory_s <= per_token_s < 1.05 * memory_s  # the LD queue is the critical path, <5 % exposed
    assert dec.busy[0] / dec.cycles > 0.95             # LD queue busy


@pytest.mark.parametrize("model,hw_name,prefill,decode", [
    ("opt-6.7b", "u280", 128, 512),
    ("llama2-7b", "vhk158", 128, 512),
    ("llama2-7b", "u280", 512, 1536),
])
def test_other_models_designs_and_workloads(model, hw_name, prefill, decode):
    hw, prog, stats, per_token_s = run(model, hw_name, prefill, decode)
    assert stats.phases["prefill"].tokens == prefill
    assert stats.phases["decode"].tokens == decode
    # every design is memory-bound in decode: within 15 % of bytes / effective bandwidth
    dec = stats.phases["decode"]
    memory_s = dec.work["hbm_bytes"] * hw.slrs / dec.tokens / (hw.hbm.peak_gbps * 1e9 *
                                                              hw.hbm.efficiency_cross_channel)
    assert memory_s <= per_token_s < 1.15 * memory_s


def test_vhk158_is_faster_by_its_bandwidth():
    _, _, _, u280 = run("llama2-7b", "u280", 128, 64)
    _, _, _, vhk = run("llama2-7b", "vhk158", 128, 64)
    assert u280 / vhk == pytest.approx(819.2 / 460, rel=0.05)


def test_decode_time_per_token_grows_with_context():
    hw, _, stats, _ = run("llama2-7b", "u280", 128, 1536)
    decode = [s for s in stats.steps if s["phase"] == "decode"]
    # the block-sparse mask keeps a sink block and a sliding window, each layer its own
    # fraction, so the keys read (and the time) follow the kept keys of all 32 layers,
    # which grow with the context in steps
    densities = load_compression("flightllm", hw).attn_densities(load_model("llama2-7b"))
    keys = [sum(kept_keys(s["context"], d) for d in densities) for s in decode]
    assert keys[-1] > 4 * keys[0]
    assert decode[-1]["cycles"] > decode[0]["cycles"]
    for step, k in zip(decode, keys):
        lo, hi = attention_growth_s(hw, k - keys[0])
        assert lo <= stats.seconds(step["cycles"] - decode[0]["cycles"]) <= hi, step["context"]


def kept_keys(context: int, density: float) -> int:
    """Keys one decode query at `context` attends to."""
    return sum(e - s for s, e in kept_ranges((context - 1) // 64, density, 64, context))


def attention_growth_s(hw, extra_keys: int) -> tuple[float, float]:
    """Bounds on the LLaMA2-7B decode time that `extra_keys` more keys (summed over
    layers) cost: at least the extra KV traffic (K and V, 11 heads x 128 per core, INT8),
    at most that plus the attention compute between K and V loads (scores MV, two-pass
    softmax, output MV), which sits on the critical path."""
    per_core_bw = hw.hbm.peak_gbps * 1e9 * hw.hbm.efficiency_cross_channel / hw.slrs
    kv_s = 2 * 11 * 128 * extra_keys / per_core_bw
    softmax_cycles = 11 * extra_keys * hw.sfu_passes_softmax / hw.sfu_lanes
    scores_cycles = 11 * extra_keys / hw.chains * (128 // 16) * 16 / hw.chain_length
    output_cycles = 11 * (extra_keys / 16) * 16 / hw.chain_length    # 128 rows on 128 chains
    return kv_s, kv_s + (softmax_cycles + scores_cycles + output_cycles) / hw.clock_hz


def test_a_denser_layer_costs_decode_time_in_that_layer_only(tmp_path):
    hw, model = load_hw("u280"), load_model("llama2-7b")
    # layer 5 of the released masks keeps 24 %; make it keep every causal block
    denser = edited_config(tmp_path, "configs/compression/flightllm.yaml", "denser.yaml",
                           "0.23, 0.24, 0.28", "0.23, 1.0, 0.28")
    ctx = 2048
    base, dense5 = (simulate(compile_decode_step(model, load_compression(c, hw), hw, ctx), hw).phases["decode"]
                    for c in ("flightllm", denser))
    grew = {layer: dense5.layers[layer]["cycles"] - base.layers[layer]["cycles"] for layer in range(32)}
    assert all(g == 0 for layer, g in grew.items() if layer != 5)
    assert dense5.cycles - base.cycles == grew[5] > 0
    lo, hi = attention_growth_s(hw, kept_keys(ctx, 1.0) - kept_keys(ctx, 0.24))
    assert lo <= grew[5] / hw.clock_hz <= hi
