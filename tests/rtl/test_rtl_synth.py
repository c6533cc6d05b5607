"""Yosys synth_xilinx: a chain of L DSP48s is L DSP cells on xc7 and xcup,
each doing two INT8 MACs."""
from __future__ import annotations

import json

import pytest
from rtl_tools import yosys  # noqa: F401 (fixtures)

from hwmodel.hwconfig import load_hw
from rtl.synth import FAMILIES, resources, synth_report

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("length", [4, 8])
def test_chain_is_one_dsp48_per_position(yosys, tmp_path, length):
    report = synth_report(load_hw("u280"), chain_length=length, out_dir=tmp_path, which=("sparse_dsp_chain",))
    assert json.loads((tmp_path / "resources.json").read_text()) == report
    for family in FAMILIES:
        chain = report["families"][family][f"sparse_dsp_chain_{length}"]
        dsp_cell = {"xc7": "DSP48E1", "xcup": "DSP48E2"}[family]
        assert chain["dsp"] == chain["cells"][dsp_cell] == length
        assert chain["macs_per_dsp"] == 2
        assert chain["bram"] == 0 and chain["lut"] > 0 and chain["ff"] > 0
        assert chain["lut_per_mac_dsp"] == chain["lut_per_dsp"]     # every DSP of a chain does MACs


def test_fabric_per_mac_dsp_leaves_out_the_scale_dsps():
    """A one-chain tile of 16: 18 DSP48s, 16 of them MACs."""
    r = resources({"DSP48E2": 18, "LUT6": 3200, "SRLC32E": 400, "FDRE": 2880}, macs_per_dsp=2, mac_dsps=16)
    assert (r["lut_per_dsp"], r["ff_per_dsp"]) == (200.0, 160.0)
    assert (r["lut_per_mac_dsp"], r["ff_per_mac_dsp"]) == (225.0, 180.0)
    assert "lut_per_mac_dsp" not in resources({"LUT6": 10}, macs_per_dsp=2)


def test_second_run_comes_from_the_cache(yosys, tmp_path, monkeypatch):
    hw, lines = load_hw("u280"), []
    kwargs = dict(families=("xc7",), which=("dsp48_slice",), cache=tmp_path / "cache")   # the quickest synthesis
    cold = synth_report(hw, out_dir=tmp_path / "cold", log=lines.append, **kwargs)
    assert [line.split(": ", 1)[1].split(" in ")[0] for line in lines] == ["synth_xilinx ...", "done"]

    def no_yosys(*args):
        raise AssertionError("Yosys ran although the result was cached")
    monkeypatch.setattr("rtl.synth.run_yosys", no_yosys)
    monkeypatch.setattr("rtl.export.run_yosys", no_yosys)
    lines.clear()
    warm = synth_report(hw, out_dir=tmp_path / "warm", log=lines.append, **kwargs)
    assert warm == cold and len(lines) == 1 and "dsp48_slice: from the cache" in lines[0]
    for out in ("cold", "warm"):
        assert sorted(p.name for p in (tmp_path / out).rglob("*")) == ["dsp48_slice.v", "resources.json", "xc7"]
    assert (tmp_path / "warm/xc7/dsp48_slice.v").read_text() == (tmp_path / "cold/xc7/dsp48_slice.v").read_text()
