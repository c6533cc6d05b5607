"""The HBM model against the vendors' measurements, and what-ifs that must move decode the right way."""
from __future__ import annotations

import json

import pytest

from compiler.model_config import load_model
from compiler.pipeline import compile_program
from compiler.weights.profile import load_compression
from hwmodel.hwconfig import load_hw
from sim.hbm_bench import hbm_bench
from sim.stats import simulate

pytestmark = pytest.mark.sim


def test_every_u280_point_within_5_percent_of_the_vendor_figure():
    points = hbm_bench(load_hw("u280"))
    assert len(points) == 35 and sum(p["role"] == "calibration" for p in points) == 2
    for p in points:
        assert abs(p["error"]) <= 0.05, p


def test_versal_points_and_the_one_address_map_the_model_misses():
    points = {p["point"]: p for p in hbm_bench(load_hw("vhk158"))}
    for name, p in points.items():
        if name != "16R-2B-2BG-10C":
            assert abs(p["error"]) <= 0.05, p
    # bank-group-bound linear reads: DRAMsim3's HBM2 tCCD_L (2 ns) gives 59 %, a 4-clock HBM2E tCCD_L would
    # give 47 %; PG313 measured 54 %. The model keeps its cited value and misses by +9 % (docs/performance-model.md)
    miss = points["16R-2B-2BG-10C"]
    assert 0.05 < miss["error"] < 0.10
    assert miss["model"] < points["16R-2B-1BG-7C-1BG-3C"]["model"] * 0.7


def test_hbm_bench_cli_writes_the_points(tmp_path, capsys):
    from dspflight.cli import main
    assert main(["hbm-bench", "--hw", "u280", "-o", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "hbm-bench.json").read_text())
    assert {"experiment", "point", "published", "model", "error"} <= set(data[0])
    assert "35 points, worst" in capsys.readouterr().out


def test_64_byte_random_reads_are_slower_than_512_byte_ones_as_the_vendor_curve_says():
    h = load_hw("u280").hbm
    assert 64 / h.random_access_ns(64) < 0.4 * 512 / h.random_access_ns(512)


def decode_s(hw, plan="spread", fusion=True):
    prog = compile_program(load_model("llama2-7b"), load_compression("flightllm", hw), hw, 128, 64, fusion=fusion,
                           plan=plan)
    stats = simulate(prog, hw)
    dec = stats.phases["decode"]
    return stats.seconds(dec.cycles) / dec.tokens


def test_halving_the_pcs_at_fixed_per_pc_bandwidth_slows_decode_by_1_6x_or_more(tmp_path):
    u280 = load_hw("u280")
    half = load_hw(_write(tmp_path, u280.source))
    assert half.hbm.channels == 16 and half.hbm.pc_gbps == u280.hbm.pc_gbps
    assert decode_s(half) >= 1.6 * decode_s(u280)


def _write(tmp_path, source):
    text = open(source).read().replace("pcs_per_stack: 16", "pcs_per_stack: 8").replace(
        "address_map: 14R-2B-2BG-10C", "address_map: 15R-2B-2BG-10C")
    path = tmp_path / "half16.yaml"
    path.write_text(text)
    return path


def test_a_kv_cache_on_4_shared_pcs_is_slower_than_the_spread_plan():
    u280 = load_hw("u280")
    assert decode_s(u280, "kv-4pc") > 1.02 * decode_s(u280, "spread")


def layer_trace(hw, fusion):
    from sim.engine import time_section
    from sim.stats import program_placement
    prog = compile_program(load_model("llama2-7b"), load_compression("flightllm", hw), hw, 128, 1, fusion=fusion)
    sec = next(s for s in prog.sections if "decode" in s.name and "layer" in s.name)
    return time_section(hw, sec, program_placement(prog, hw), keep_trace=True).trace


def test_unfused_decode_fetches_no_weights_before_the_previous_op_is_back_from_hbm():
    """Without always-on-chip decode an op's input round-trips through HBM, and its weight
    loads queue behind that reload: prefetch stops at every op boundary. Fused, the next
    op's weights stream while the previous op computes."""
    hw = load_hw("u280")
    ld, st, mv = 0, 1, 3
    unfused = layer_trace(hw, False)
    for op in ("qkv", "o", "up", "down"):
        first_ld = min(s for q, s, e, lab in unfused if q == ld and lab == op)
        spill = max((s, e) for q, s, e, lab in unfused if q == st and s < first_ld)   # the previous op's output
        assert first_ld >= spill[1], op
    fused = layer_trace(hw, True)
    up_ld = min(s for q, s, e, lab in fused if q == ld and lab == "up")
    o_mv_end = max(e for q, s, e, lab in fused if q == mv and lab == "o")
    assert up_ld < o_mv_end                     # the FFN's weights arrive while o still computes


def test_fusion_ablation_direction():
    """FlightLLM reports HBM utilization 35.6 % unfused and 65.9 % fused; the model predicts a much
    smaller gap (docs/performance-model.md), but in the same direction."""
    hw = load_hw("u280")
    fused, unfused = decode_s(hw), decode_s(hw, fusion=False)
    assert 1.02 * fused < unfused < 1.5 * fused


def test_lockstep_timing_equals_timing_each_core_on_its_own_pcs():
    """Under the spread plan no PC serves two cores, so timing one core alone on its own PCs gives
    the lockstep figure for every core; with the KV cache on 4 PCs shared by all cores, KV loads
    are slower in lockstep than alone and the rest is unchanged."""
    from dataclasses import replace

    from compiler.passes.place_hbm import plan_placement
    from hwmodel.transfer import transfer_timing
    hw = load_hw("u280")
    for name in ("spread", "kv-4pc"):
        plan = plan_placement(name, hw)
        prog = compile_program(load_model("llama2-7b"), load_compression("flightllm", hw), hw, 128, 1, plan=name)
        loads = [i for s in prog.sections for i in s.instrs if i.op in (0, 1)]
        shared_kv = 0
        for core in range(hw.slrs):
            alone = replace(plan, core_pcs=(plan.core_pcs[core],))
            for ins in loads:
                both = transfer_timing(hw, plan, ins).data_cycles
                own = transfer_timing(hw, alone, ins).data_cycles
                on_kv = (ins.f["ch_first"], ins.f["ch_count"]) == plan.group("kv") and name == "kv-4pc"
                assert both >= 2 * own if on_kv and own > 8 else both == own or on_kv
                shared_kv += on_kv
        assert (shared_kv > 0) == (name == "kv-4pc")


@pytest.mark.parametrize("old,new,message", [
    ("address_map: 14R-2B-2BG-10C", "address_map: 14R-2X-10C", r"field hbm.address_map: expected fields like"),
    ("address_map: 14R-2B-2BG-10C", "address_map: 13R-2B-2BG-10C", r"field hbm.capacity_gb: 32 PCs of 134217728"),
    ("pcs_per_stack: 16", "pcs_per_stack: 12", r"field hbm.pcs_per_stack: .* power of two"),
    ("tRFC: 260", "tRFC: 5000", r"field hbm.timing_ns.tRFC: expected less than tREFI"),
    ("tRFC: 260", "tRFC: .nan", r"field hbm.timing_ns.tRFC: expected a finite number"),
    ("burst_bytes: 64", "burst_bytes: 48", r"field hbm.burst_bytes: expected a power of two"),
    ("kind: axi_switch", "kind: crossbar", r"field hbm.interconnect.kind: expected one of"),
    ("row_miss_ns: 11.16", "row_miss_ns: -1", r"field hbm.row_miss_ns: expected >= 0.0"),
])
def test_a_bad_hbm_section_is_one_line_naming_the_field(tmp_path, old, new, message):
    from hwmodel.errors import ConfigError
    from conftest import edited_config
    path = edited_config(tmp_path, load_hw("u280").source, "bad.yaml", old, new)
    with pytest.raises(ConfigError, match=r"bad.yaml: " + message) as err:
        load_hw(path)
    assert "\n" not in str(err.value)
