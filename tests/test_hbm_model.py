"""The HBM model against the vendors' measurements, and what-ifs that must move decode the right way."""
from __future__ import annotations

import json

import pytest

from compiler.compression import load_compression
from compiler.model_config import load_model
from compiler.pipeline import compile_program
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
