"""Roofline of LLaMA2-7B on the U280 design, GPU presets, plot and HTML report."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from compiler.model_config import load_model
from compiler.pipeline import compile_program
from compiler.weights.profile import load_compression
from hwmodel.energy_table import load_energy_table
from hwmodel.errors import ConfigError
from hwmodel.gpu import all_gpus, load_gpu
from sim.cost import cost_report
from sim.energy import energy_report
from sim.headline import format_table
from sim.report_html import write_report
from sim.roofline import fpga_peak_ops, roofline
from sim.roofline_plot import plot_roofline, roofline_figure
from sim.stats import simulate

GEMV = ("qkv", "o", "up", "down")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# 30 PCs (plan spread: 10 per core) x 14.4 GB/s x (1 - tRFC/tREFI)
EFFECTIVE = 30 * 14.4e9 * (1 - 260 / 3900)


@pytest.fixture(scope="module")
def llama(u280):
    prog = compile_program(load_model("llama2-7b"), load_compression("flightllm", u280), u280, 128, 512)
    stats = simulate(prog, u280)
    return stats, roofline(stats, u280, all_gpus())


def test_decode_gemv_ops_are_memory_bound(u280, llama):
    _, data = llama
    ridge = data["fpga"]["ridge_ops_per_byte"]["decode"]
    assert ridge == pytest.approx(2 * 2048 * 3 * 225e6 / EFFECTIVE)   # MV peak / effective bandwidth
    for label in GEMV:
        o = data["ops"]["decode"][label]
        assert o["intensity"] < ridge, label                # 2..6 ops/byte against a ridge of ~6.9
        assert o["bound"] == "memory"
        assert o["roof_ops_per_s"] == pytest.approx(o["intensity"] * EFFECTIVE)
        # the simulated op runs within 15 % of its bandwidth roof and never above it
        assert 0.85 * o["roof_ops_per_s"] <= o["attained_ops_per_s"] <= o["roof_ops_per_s"] * 1.001, label


def test_prefill_gemms_are_compute_bound(u280, llama):
    _, data = llama
    peak = fpga_peak_ops(u280, "prefill")
    assert peak == 2 * 4096 * 3 * 225e6
    for label in GEMV:
        o = data["ops"]["prefill"][label]
        assert o["intensity"] > 5 * data["fpga"]["ridge_ops_per_byte"]["prefill"], label
        assert o["bound"] == "compute"
        assert o["roof_ops_per_s"] == peak
        assert 0.75 * peak <= o["attained_ops_per_s"] <= peak * 1.001, label


def test_every_decoder_layer_is_a_roofline_point(llama):
    stats, data = llama
    for phase, bound in (("decode", "memory"), ("prefill", "compute")):
        layers = data["layers"][phase]
        decoder = [layers[str(i)] for i in range(32)]
        assert all(lay["bound"] == bound for lay in decoder), phase
        assert sum(lay["share"] for lay in layers.values()) == pytest.approx(1.0)
        ops = sum(lay["ops"] for lay in layers.values())
        assert ops == pytest.approx(2 * stats.phases[phase].work["macs"] * 3)


def test_gpu_ops_are_dense_fp16(u280, llama):
    stats, data = llama
    prefill_tokens = stats.phases["prefill"].tokens
    for label in GEMV:
        for name, g in data["ops"]["decode"][label]["gpus"].items():
            assert g["intensity"] == pytest.approx(1.0)          # 2 ops per MAC, 2 bytes per weight, batch 1
            assert g["bound"] == "memory", name
        w = stats.phases["decode"].ops[label]["work"]
        assert data["ops"]["decode"][label]["gpus"]["v100s"]["ops"] == 2 * w["dense_macs"] * u280.slrs
        # prefill reuses each weight for every token: intensity = tokens
        assert data["ops"]["prefill"][label]["gpus"]["v100s"]["intensity"] == pytest.approx(prefill_tokens)


def test_phase_breakdown_explains_decode(u280, llama):
    stats, data = llama
    d = data["phases"]["decode"]
    ph = stats.phases["decode"]
    assert d["bytes_per_token"] == ph.work["hbm_bytes"] * 3 / ph.tokens
    assert 2.5e9 < d["bytes_per_token"] < 3.5e9
    assert d["bandwidth_effective_bytes_per_s"] == pytest.approx(EFFECTIVE)
    assert d["memory_floor_s"] <= d["time_s"]
    assert d["hbm_utilization"] == pytest.approx(d["bytes_per_token"] * d["tokens_per_s"] / 460.8e9)
    assert d["tokens_per_s"] * d["time_per_token_s"] == pytest.approx(1.0)
    assert 0.0 <= d["overlap"] <= 1.0
    assert sum(o["hbm_bytes"] for o in data["ops"]["decode"].values()) == d["hbm_bytes"]
    assert sum(v["share"] for v in data["layers"]["decode"].values()) == pytest.approx(1.0)
    assert sorted(int(k) for k in data["layers"]["decode"] if int(k) >= 0) == list(range(32))
    json.dumps(data, allow_nan=False)


def test_plot_is_a_png(llama, tmp_path):
    _, data = llama
    path = tmp_path / "roofline.png"
    plot_roofline(data, path)
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir()] == ["roofline.png"]


def test_roofline_labels_do_not_overlap(llama):
    import matplotlib.pyplot as plt
    from matplotlib.text import Text
    _, data = llama
    fig, labels = roofline_figure(data)
    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(t, renderer) for t in labels]
    plt.close(fig)
    assert len(boxes) >= 8
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)


def test_report_html_and_table(u280, llama, tmp_path):
    stats, data = llama
    energy = energy_report(stats, u280, load_energy_table("fpga-16nm"), all_gpus())
    cost = cost_report(stats, u280, all_gpus())
    dec = data["phases"]["decode"]
    summary = {"model": "llama2-7b", "hardware": "u280", "prefill_tokens": 128, "decode_tokens": 512,
               "prefill_ms": data["phases"]["prefill"]["time_s"] * 1e3,
               "decode_ms_per_token": dec["time_per_token_s"] * 1e3, "decode_tokens_per_s": dec["tokens_per_s"],
               "hbm_bandwidth_utilization": dec["hbm_utilization"], "power_w": energy["power_w"],
               "tokens_per_joule": energy["tokens_per_joule"]}
    text = format_table(summary, data, energy, cost)
    readme = Path("README.md").read_text()
    assert text + "\noutputs in out/" in readme                       # the README's sample is the real output
    assert f"{dec['tokens_per_s']:.4g}" in text and "memory floor per token" in text
    assert "55" in text and "65.9%" in text                         # FlightLLM's published figures
    path = tmp_path / "report.html"
    write_report(summary, data, energy, cost, path)
    page = path.read_text()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "data:image/png;base64,iVBORw0KGgo" in page               # the PNG magic, base64-encoded
    assert "How the decode figure arises" in page and "v100s" in page


def test_gpu_presets_from_facts():
    gpus = {g.name: g for g in all_gpus()}
    assert set(gpus) == {"v100s", "a100", "h100"}
    v = load_gpu("v100s")
    assert (v.peak_fp16_tflops, v.memory_gbps, v.tdp_w, v.price_usd) == (130, 1134, 250, 12000)
    assert v.peak_int8_tops is None and v.decode_hbm_utilization == {"naive": 0.425, "vllm": 0.655}
    assert gpus["a100"].decode_hbm_utilization == {"naive": 0.286, "vllm": 0.574}
    assert gpus["h100"].price_usd is None and gpus["h100"].decode_hbm_utilization == {}


@pytest.mark.parametrize("text, field", [
    ("memory_gbps: 1134\n", "peak_fp16_tflops"),                                       # missing
    ("peak_fp16_tflops: 130\nmemory_gbps: fast\ntdp_w: 250\n", "memory_gbps"),          # wrong type
    ("peak_fp16_tflops: 130\nmemory_gbps: 1134\ntdp_w: 250\nprice: 1\n", "price"),      # unknown
    ("peak_fp16_tflops: 130\nmemory_gbps: 1134\ntdp_w: 250\ndecode_hbm_utilization: {naive: 42.5}\n",
     "decode_hbm_utilization.naive"),                                                   # percent, not fraction
])
def test_malformed_gpu_yaml_names_file_and_field(tmp_path, text, field):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\n" + text)
    with pytest.raises(ConfigError) as err:
        load_gpu(path)
    assert str(path) in str(err.value) and f"field {field}:" in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_gpu_name_lists_builtins():
    with pytest.raises(ConfigError, match="v100s"):
        load_gpu("no-such-gpu")


def test_roofs_are_finite(llama):
    _, data = llama
    for phase, ops in data["ops"].items():
        for label, o in ops.items():
            if o["roof_ops_per_s"] is not None:
                assert math.isfinite(o["roof_ops_per_s"]) and o["roof_ops_per_s"] > 0, (phase, label)
