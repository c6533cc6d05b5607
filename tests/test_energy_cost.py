"""Energy = action counts x energy per action + static power; cost = tokens/s per dollar."""
from __future__ import annotations

import pytest
import yaml

from compiler.passes.place_hbm import spread

from compiler.model_config import load_model
from compiler.pipeline import compile_program
from compiler.weights.profile import load_compression
from hwmodel.energy_table import ACTIONS, load_energy_table
from hwmodel.errors import ConfigError
from hwmodel.gpu import all_gpus, load_gpu
from hwmodel.isa import QUEUES
from sim.cost import cost_report
from sim.energy import energy_report
from sim.stats import PhaseStats, Stats, simulate

SIMPLE_TABLE = {
    "name": "simple", "technology_scale": 1.0,
    "actions": {
        "int8_mac": {"pj": 1.0, "per": "MAC", "source": "test"},
        "int32_accumulate": {"pj": 0.5, "per": "MAC", "source": "test"},
        "dequant": {"pj": 2.0, "per": "weight", "source": "test"},
        "sfu_op": {"pj": 3.0, "per": "element-pass", "source": "test"},
        "buffer_byte": {"pj": 0.25, "per": "byte", "source": "test"},
        "hbm_byte": {"pj": 10.0, "per": "byte", "source": "test"},
        "slr_link_byte": {"pj": 4.0, "per": "byte", "source": "test"},
    },
}
# per core: 100 useful MACs of a 2:1-sparse matrix (200 dense), 50 weights dequantized, ...
HAND_WORK = {"macs": 100, "dense_macs": 200, "weights": 50, "sfu_ops": 10, "hbm_bytes": 1000,
             "buffer_bytes": 400, "link_bytes": 20}


def write_table(tmp_path, data, name="table.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def hand_stats(u280):
    """One decode token, 10 ms on 3 cores, with the work above."""
    cycles = 2_250_000                                    # 10 ms at 225 MHz
    op = {"cycles": cycles, "busy": [0] * len(QUEUES), "work": dict(HAND_WORK)}
    ph = PhaseStats(cycles=cycles, steps=1, tokens=1, work=dict(HAND_WORK), ops={"mv": op})
    return Stats("u280", "hand", 3, u280.clock_hz, {"decode": ph}, [], 0, 0, {}, spread(u280))


def test_energy_matches_hand_computation(u280, hand_stats, tmp_path):
    table = load_energy_table(write_table(tmp_path, SIMPLE_TABLE))
    rep = energy_report(hand_stats, u280, table, [load_gpu("v100s")])
    d = rep["phases"]["decode"]
    # per core: 100x1 + 100x0.5 + 50x2 + 10x3 + 400x0.25 + 1000x10 + 20x4 = 10460 pJ; 3 cores
    assert d["dynamic_j"] == pytest.approx(31380e-12, rel=1e-12)
    assert d["static_j"] == pytest.approx(35.0 * 0.010)                  # u280 static 35 W x 10 ms
    assert d["total_j"] == pytest.approx(0.35 + 31380e-12, rel=1e-12)
    assert d["actions"]["hbm_byte"]["count"] == 3000
    assert rep["power_w"] == pytest.approx(d["total_j"] / 0.010)
    assert rep["tokens_per_joule"] == pytest.approx(1 / d["total_j"])
    # V100S: 2 bytes x 100 dense weights x 3 cores = 600 B/token at 42.5 % of 1134 GB/s, over 250 W
    v = rep["gpus"]["v100s"]
    assert v["bytes_per_token"] == 600
    assert v["decode_tokens_per_s"]["naive"] == pytest.approx(0.425 * 1134e9 / 600)
    assert v["tokens_per_joule"]["naive"] == pytest.approx(0.425 * 1134e9 / 600 / 250)
    assert rep["vs_v100s"]["naive"] == pytest.approx(rep["tokens_per_joule"] / v["tokens_per_joule"]["naive"])


def test_cost_matches_hand_computation(u280, hand_stats):
    rep = cost_report(hand_stats, u280, all_gpus())
    assert rep["fpga"]["tokens_per_s"] == pytest.approx(100.0)             # 1 token in 10 ms
    assert rep["fpga"]["tokens_per_s_per_dollar"] == pytest.approx(100.0 / 8000)
    assert set(rep["gpus"]) == {"v100s", "a100"}                           # H100 has no price
    v100s = 0.425 * 1134e9 / 600 / 12000
    assert rep["vs_v100s"]["naive"] == pytest.approx(100.0 / 8000 / v100s)


@pytest.fixture(scope="module")
def llama_reports(u280):
    prog = compile_program(load_model("llama2-7b"), load_compression("flightllm", u280), u280, 128, 512)
    stats = simulate(prog, u280)
    gpus = all_gpus()
    return stats, energy_report(stats, u280, load_energy_table("fpga-16nm"), gpus), cost_report(stats, u280, gpus)


def test_u280_power_and_tokens_per_joule_vs_v100s(u280, llama_reports):
    stats, energy, _ = llama_reports
    dec = energy["phases"]["decode"]
    # HBM at ~373 GB/s x 56 pJ/B is ~21 W of dynamic power on top of 35 W static
    assert 35.0 < energy["power_w"] < 70.0
    assert dec["actions"]["hbm_byte"]["joules"] > 0.9 * dec["dynamic_j"]
    # V100S naive, computed another way: batch-1 decode reads one FP16 weight or K/V element per dense MAC
    ph = stats.phases["decode"]
    fp16_bytes_per_token = 2 * ph.work["dense_macs"] * u280.slrs / ph.tokens
    v100s_tpj = 0.425 * 1134e9 / fp16_bytes_per_token / 250
    assert energy["gpus"]["v100s"]["tokens_per_joule"]["naive"] == pytest.approx(v100s_tpj, rel=1e-6)
    ratio = energy["tokens_per_joule"] / v100s_tpj
    assert energy["vs_v100s"]["naive"] == pytest.approx(ratio)
    # FlightLLM published 6.0x; ours is higher by about what our decode rate is above the board's 55 tokens/s
    speed_gap = ph.tokens / (ph.cycles / stats.clock_hz) / 55
    assert 2.0 < speed_gap < 2.5 and 3.0 < ratio < 6.0 * 1.3 * speed_gap
    assert energy["published"]["tokens_per_joule_vs_v100s"]["naive"] == 6.0
    assert energy["vs_v100s"]["vllm"] < energy["vs_v100s"]["naive"]


def test_u280_cost_vs_v100s(u280, llama_reports):
    stats, _, cost = llama_reports
    ph = stats.phases["decode"]
    tps = ph.tokens / stats.seconds(ph.cycles)
    assert cost["fpga"]["tokens_per_s_per_dollar"] == pytest.approx(tps / 8000)
    assert cost["vs_v100s_mean"] == pytest.approx((cost["vs_v100s"]["naive"] + cost["vs_v100s"]["vllm"]) / 2)
    assert 1.0 < cost["vs_v100s_mean"] < 6.0                    # FlightLLM published 1.8x; we predict 2.3x its speed


def test_shipped_energy_table_has_every_action_with_a_source():
    table = load_energy_table("fpga-16nm")
    assert set(table.actions) == set(ACTIONS)
    assert all(len(e.source) > 20 for e in table.actions.values())
    assert table.actions["hbm_byte"].pj == 56.0                 # 7 pJ/bit (AMD, FACTS.md)


def _broken(mutate):
    data = yaml.safe_load(yaml.safe_dump(SIMPLE_TABLE))
    mutate(data)
    return data


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["actions"].pop("hbm_byte"), "actions.hbm_byte"),
    (lambda d: d["actions"].update(dram_byte={"pj": 1, "per": "byte", "source": "x"}), "actions.dram_byte"),
    (lambda d: d["actions"]["int8_mac"].update(per="byte"), "actions.int8_mac.per"),
    (lambda d: d["actions"]["sfu_op"].update(pj=-1), "actions.sfu_op.pj"),
    (lambda d: d["actions"]["sfu_op"].update(pj="0.5 pJ"), "actions.sfu_op.pj"),
    (lambda d: d["actions"]["dequant"].pop("source"), "actions.dequant.source"),
    (lambda d: d["actions"]["dequant"].update(source=" "), "actions.dequant.source"),
    (lambda d: d.pop("technology_scale"), "technology_scale"),
])
def test_malformed_energy_table_names_file_and_field(tmp_path, mutate, field):
    path = write_table(tmp_path, _broken(mutate))
    with pytest.raises(ConfigError) as err:
        load_energy_table(path)
    assert str(path) in str(err.value) and f"field {field}:" in str(err.value)
    assert "\n" not in str(err.value)


def test_malformed_energy_yaml_syntax(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("actions: {int8_mac: [\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_energy_table(path)
