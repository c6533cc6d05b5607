"""The command line: the user's flow, and one-line errors with exit 2 and no output."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import density_profile, edited_config
from dspflight.cli import main

SUMMARY_KEYS = {"model", "hardware", "prefill_tokens", "decode_tokens", "prefill_ms", "decode_ms_per_token",
                "decode_tokens_per_s", "total_ms", "hbm_bandwidth_utilization", "instructions", "program_bytes",
                "power_w", "tokens_per_joule", "compile_s", "simulate_s"}
U280 = Path("configs/hardware/u280.yaml")
TINY = ["--model", "tiny", "--prefill", "32", "--decode", "8"]


def test_compile_simulate_report_disasm(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compile", *TINY, "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["compile.json", "program.asm", "program.dfp"]
    assert main(["simulate", str(out / "program.dfp"), "-o", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["model"] == "tiny" and summary["hardware"] == "u280"
    assert summary["decode_tokens"] == 8 and summary["prefill_tokens"] == 32
    assert 0 < summary["hbm_bandwidth_utilization"] < 1
    assert summary["decode_tokens_per_s"] == pytest.approx(1e3 / summary["decode_ms_per_token"])
    assert summary["program_bytes"] == (out / "program.dfp").stat().st_size
    assert summary["compile_s"] > 0
    assert main(["report", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"roofline.json", "roofline.png", "energy.json", "trace.json", "report.html"} <= names
    assert (out / "roofline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(["disasm", str(out / "program.dfp")]) == 0
    asm = capsys.readouterr().out
    assert asm == (out / "program.asm").read_text()


def test_program_file_is_reproducible(tmp_path):
    for name in ("a", "b"):
        assert main(["compile", *TINY, "-o", str(tmp_path / name)]) == 0
    assert (tmp_path / "a/program.dfp").read_bytes() == (tmp_path / "b/program.dfp").read_bytes()


def test_run_writes_every_output(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *TINY, "-o", str(out)]) == 0
    expected = {"program.dfp", "program.asm", "stats.json", "summary.json", "roofline.json", "roofline.png",
                "energy.json", "trace.json", "report.html"}
    assert {p.name for p in out.iterdir()} == expected      # no temporary files left behind
    table = capsys.readouterr().out
    assert "decode (tokens/s)" in table and "v100s" in table


def test_disasm_into_head_does_not_traceback(tmp_path):
    out = tmp_path / "o"
    assert main(["compile", *TINY, "-o", str(out)]) == 0
    cmd = f"{sys.executable} -m dspflight.cli disasm {out / 'program.dfp'} | head -3"
    res = subprocess.run(cmd, shell=True, capture_output=True, text=True, check=True)
    assert res.stdout.startswith("; dspflight program: model tiny on u280")
    assert res.stderr == ""


def _bad(tmp_path, capsys, argv, pattern):
    out = tmp_path / "out"
    code = main([*argv, "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("dspflight: error: ")
    import re
    assert re.search(pattern, err), err
    assert not out.exists()
    return err


def test_malformed_yaml(tmp_path, capsys):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\nlayers: [1, 2\n")
    _bad(tmp_path, capsys, ["run", "--model", str(bad)], r"broken.yaml: line \d+: malformed YAML")


def test_wrong_field_type(tmp_path, capsys):
    bad = edited_config(tmp_path, "configs/models/tiny.yaml", "m.yaml", "layers: 2", "layers: two")
    _bad(tmp_path, capsys, ["compile", "--model", str(bad)], r"m.yaml: field layers: expected an integer")


def test_unknown_model(tmp_path, capsys):
    _bad(tmp_path, capsys, ["compile", "--model", "gpt-9"], r"models 'gpt-9': unknown \(built-in: .*llama2-7b")


def test_impossible_hardware(tmp_path, capsys):
    bad = edited_config(tmp_path, U280, "hw.yaml", "chains: 128", "chains: 512")
    _bad(tmp_path, capsys, ["compile", *TINY, "--hw", str(bad)], r"hw.yaml: field mpe.chains: .* more than fabric.dsp")


def test_model_that_does_not_fit(tmp_path, capsys):
    big = tmp_path / "big.yaml"
    big.write_text("name: big\nlayers: 80\nhidden: 8192\nheads: 64\nkv_heads: 8\nffn: 28672\nvocab: 32000\n"
                   "max_context: 4096\nnorm: rmsnorm\nactivation: silu\ngated_ffn: true\npositional: rope\n")
    _bad(tmp_path, capsys, ["run", "--model", str(big), "--compression", "dense-int8"],
         r"big.yaml: field layers: big needs at least .* GiB of HBM with dense-int8 .*u280.yaml: field hbm.capacity_gb")


def test_tile_that_does_not_fit(tmp_path, capsys):
    bad = edited_config(tmp_path, U280, "hw.yaml", "wgt: {kind: bram36, bytes: 1048576}",
                        "wgt: {kind: bram36, bytes: 1024}")
    _bad(tmp_path, capsys, ["run", *TINY, "--hw", str(bad)], r"hw.yaml: field buffers.wgt.bytes: op L0.qkv")


def test_corrupt_program(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["compile", *TINY, "-o", str(out)]) == 0
    prog = out / "program.dfp"
    data = bytearray(prog.read_bytes())
    data[len(data) // 2] ^= 1
    prog.write_bytes(bytes(data))
    capsys.readouterr()
    _bad(tmp_path, capsys, ["simulate", str(prog)], r"program.dfp: checksum mismatch")


def test_context_beyond_the_model(tmp_path, capsys):
    _bad(tmp_path, capsys, ["compile", "--model", "opt-6.7b", "--prefill", "1024", "--decode", "1500"],
         r"opt-6.7b.yaml: field max_context: .* supports 2048")


def test_density_list_of_another_depth(tmp_path, capsys):
    bad = density_profile(tmp_path, "density: [0.5, 0.3, 0.2]", "bad.yaml")
    _bad(tmp_path, capsys, ["compile", *TINY, "--compression", str(bad)],
         r"bad.yaml: field attention.density: 3 values, one per decoder layer, but tiny has 2 layers")


def test_density_that_is_not_a_number(tmp_path, capsys):
    bad = density_profile(tmp_path, "density: [0.5, .nan]", "bad.yaml")
    _bad(tmp_path, capsys, ["compile", *TINY, "--compression", str(bad)],
         r"bad.yaml: field attention.density\[1\]: expected a finite number, got nan")
