"""`dspflight rtl export`: Verilog files without source paths; bad input is
a ConfigError naming the field."""
from __future__ import annotations

import argparse
import json
from functools import partial

import pytest
from rtl_tools import yosys  # noqa: F401 (fixtures)

from hwmodel.errors import ConfigError
from hwmodel.resources import mpe_estimate
from rtl import cli
from rtl.synth import synth_report

pytestmark = pytest.mark.rtl


def parse(argv):
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_export_writes_portable_verilog(yosys, tmp_path):
    args = parse(["rtl", "export", "--hw", "u280", "-o", str(tmp_path)])
    assert args.func(args) == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["DSP48E2.v", "block_router_16.v", "block_skew_16.v", "dequantizer_16.v", "dsp48_slice.v",
                     "mv_tile_1x16.v", "sparse_dsp_chain_16.v", "sparse_dsp_chain_16_routed.v"]   # with the model of the primitive
    for name in files:
        text = (tmp_path / name).read_text()
        assert f"module {name[:-2]}" + (" #(" if name == "DSP48E2.v" else "(") in text
        assert "/work" not in text and str(tmp_path) not in text and "src =" not in text
    assert (tmp_path / "sparse_dsp_chain_16.v").read_text().count("DSP48E2 #(") == 16


def test_export_for_xc7_leaves_the_dsp48e1_to_yosys(yosys, tmp_path):
    """Yosys packs the whole slice into a DSP48E1, so nothing is instantiated and no model is written."""
    args = parse(["rtl", "export", "--family", "xc7", "-o", str(tmp_path)])
    assert args.func(args) == 0
    assert "DSP48E2.v" not in {p.name for p in tmp_path.iterdir()}
    assert "DSP48" not in (tmp_path / "sparse_dsp_chain_16.v").read_text()


def test_synth_says_per_design_what_it_does_on_stderr(yosys, tmp_path, capsys, monkeypatch):
    # the chains only (the MV tile takes minutes to synthesize); the chains of 4 on xc7 are test_rtl_synth's too
    monkeypatch.setattr(cli, "synth_report", partial(synth_report, which=("sparse_dsp_chain",)))
    args = parse(["rtl", "synth", "--family", "xc7", "--chain-length", "4", "-o", str(tmp_path)])
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    done = [line for line in err.splitlines() if " in " in line]
    assert [line.split(":")[0] for line in done] == ["synth 1/2 xc7 sparse_dsp_chain_4",
                                                     "synth 2/2 xc7 sparse_dsp_chain_4_routed"]
    assert all(line.endswith(" s)") and ("done" in line or "from the cache" in line) for line in done)
    assert "sparse_dsp_chain_4" in out and (tmp_path / "resources.json").is_file()
    assert json.loads((tmp_path / "resources.json").read_text())["chains"] == 16     # the default tile's
    core = mpe_estimate("xc7", chains=128, chain_length=4, cores=1)      # a u280 core, beside the synthesized designs
    estimate = next(line for line in out.splitlines() if "core of 128 chains (est.)" in line).split()
    assert [float(v) for v in estimate[-2:]] == [round(core["lut"] / 512, 1), round(core["ff"] / 512, 1)]


@pytest.mark.parametrize("argv,field", [
    (["rtl", "synth", "--family", "ecp5"], "field family"),
    (["rtl", "synth", "--chain-length", "12"], "field chain_length"),
    (["rtl", "export", "--chains", "0"], "field chains"),
    (["rtl", "synth", "--chains", "0"], "field chains: expected 1..128"),
    (["rtl", "synth", "--chains", "129"], "field chains: expected 1..128"),
    (["rtl", "export", "--chains", "100000"], "field chains: expected 1..128"),
    (["rtl", "synth", "--chain-length", "1048576"], "field chain_length: expected at most 256"),
])
def test_bad_input_names_the_field(tmp_path, argv, field):
    args = parse(argv + ["-o", str(tmp_path)])
    with pytest.raises(ConfigError, match=field):
        args.func(args)
    assert not any(tmp_path.iterdir())
