"""Every bad config input of issue 11 is refused with one line naming file and field,
and impossible sizes are refused by the budget check in well under a second."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from compiler.model_config import load_model
from compiler.pipeline import Buckets, compile_program
from compiler.weights.checkpoint import hf_constants
from compiler.weights.profile import load_compression
from conftest import edited_config
from dspflight.fuzz_configs import hf_config_text
from hwmodel.configio import MAX_DEPTH, config_root
from hwmodel.energy_table import load_energy_table
from hwmodel.errors import CompileError, ConfigError
from hwmodel.gpu import load_gpu
from hwmodel.hwconfig import load_hw

SHIPPED = {"hardware": ("hardware/u280.yaml", load_hw), "gpu": ("hardware/gpu/a100.yaml", load_gpu),
           "model": ("models/tiny.yaml", load_model), "energy": ("energy/fpga-16nm.yaml", load_energy_table)}


def copy_with(tmp_path: Path, rel: str, extra: bytes, name: str | None = None) -> Path:
    path = tmp_path / (name or Path(rel).name)
    path.write_bytes((config_root() / rel).read_bytes() + extra)
    return path


def one_line(exc: pytest.ExceptionInfo, path: Path) -> str:
    message = str(exc.value)
    assert "\n" not in message and str(path) in message, message
    return message


@pytest.mark.parametrize("kind", sorted(SHIPPED))
def test_non_utf8_bytes_name_the_file_and_line(tmp_path, kind):
    rel, load = SHIPPED[kind]
    path = copy_with(tmp_path, rel, b"name2: caf\xe9\n")
    with pytest.raises(ConfigError, match=r": line \d+: not UTF-8 text \(byte 0xe9 at offset \d+\)$") as exc:
        load(path)
    one_line(exc, path)


def test_non_utf8_compression_and_hf_config(tmp_path, u280):
    path = copy_with(tmp_path, "compression/flightllm.yaml", b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_compression(path, u280)
    hf = tmp_path / "config.json"
    hf.write_bytes(hf_config_text().encode().replace(b'"tiny"', b'"caf\xe9"'))
    with pytest.raises(ConfigError, match=r"config.json: line 3: not UTF-8"):
        load_model(hf)


@pytest.mark.parametrize("old, new, field", [
    ("clock_mhz: 225", "clock_mhz: .nan", "clock_mhz"),
    ("capacity_gb: 8 ", "capacity_gb: .inf ", "hbm.capacity_gb"),
    ("static_w: 35", "static_w: .nan", "power.static_w"),
    ("price_usd: 8000", "price_usd: -.inf", "price_usd"),
    ("burst_bytes: 64 ", "burst_bytes: 1.0e+30 ", "hbm.burst_bytes"),
    ("burst_bytes: 64 ", "burst_bytes: 1000000000000000000000000000000 ", "hbm.burst_bytes"),
    ("chains: 128", "chains: 1000000000000000000000000000000", "mpe.chains"),
    ("peak_gbps: 38", "peak_gbps: 1.0e+300", "ddr.peak_gbps"),
])
def test_nan_infinite_and_absurd_hardware_numbers(tmp_path, u280, old, new, field):
    path = edited_config(tmp_path, u280.source, "bad.yaml", old, new)
    with pytest.raises(ConfigError, match=rf"bad.yaml: field {field}: expected ") as exc:
        load_hw(path)
    one_line(exc, path)


@pytest.mark.parametrize("m", [8, 32])
def test_sparsity_m_other_than_the_isa_block_is_refused(tmp_path, u280, m):
    path = edited_config(tmp_path, u280.source, "m.yaml", "sparsity_m: 16", f"sparsity_m: {m}")
    with pytest.raises(ConfigError, match=rf"m.yaml: field mpe.sparsity_m: expected 16: the ISA's K blocks, the "
                                          rf"activation panels and the executor's layouts are 16 columns wide, "
                                          rf"got {m}$") as exc:
        load_hw(path)
    one_line(exc, path)


def test_nan_in_energy_gpu_and_compression(tmp_path, u280):
    energy = copy_with(tmp_path, "energy/fpga-16nm.yaml", b"")
    energy.write_text(energy.read_text().replace("pj: 0.074", "pj: .nan", 1))
    with pytest.raises(ConfigError, match=r"field actions.int8_mac.pj: expected a finite number, got nan$"):
        load_energy_table(energy)
    gpu = copy_with(tmp_path, "hardware/gpu/a100.yaml", b"")
    gpu.write_text(gpu.read_text().replace("price_usd:", "price_usd: .nan #"))
    with pytest.raises(ConfigError, match=r"field price_usd: expected a finite number, got nan$"):
        load_gpu(gpu)
    comp = copy_with(tmp_path, "compression/flightllm.yaml", b"")
    comp.write_text(comp.read_text().replace("density_default: 0.30", "density_default: .nan"))
    with pytest.raises(ConfigError, match=r"field attention.density_default: expected a finite number, got nan$"):
        load_compression(comp, u280)


def test_integer_and_string_unknown_keys_together(tmp_path):
    path = copy_with(tmp_path, "models/tiny.yaml", b"1: 2\nzz: 3\n")
    with pytest.raises(ConfigError, match=r"tiny.yaml: field 1: unknown field \(known: activation, "):
        load_model(path)
    path = copy_with(tmp_path, "models/tiny.yaml", b'"a\\nb": 3\n')
    with pytest.raises(ConfigError, match=r"field 'a\\nb': unknown field") as exc:
        load_model(path)
    one_line(exc, path)


@pytest.mark.parametrize("suffix, text", [
    (".yaml", "x: " + "[" * 100_000 + "]" * 100_000 + "\n"),
    (".yaml", "x:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 200)) + " " * 200 + "v: 1\n"),
    (".json", '{"model_type": "llama", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    (".json", '{"model_type": "llama", "x": ' + "[" * 500 + "]" * 500 + "}"),
])
def test_deep_nesting_is_refused_quickly(tmp_path, suffix, text):
    path = tmp_path / f"deep{suffix}"
    path.write_text(text)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"malformed (YAML|JSON): nested (deeper than \d+ levels|too deeply)"):
        load_model(path)
    assert time.perf_counter() - start < 2.0
    assert MAX_DEPTH >= 4        # the shipped configs nest 3 levels


@pytest.mark.parametrize("extra, match", [
    ("a: &x [1, 2]\nb: *x\n", r"line 15: malformed YAML: anchors and aliases \(&, \*\) are not supported"),
    ("n: " + "9" * 5000 + "\n", r"malformed YAML: Exceeds the limit \(4300 digits\)"),
    ("when: 2020-13-01\n", r"malformed YAML: month must be in 1..12"),
    ("x: !!python/object:os.system ls\n", r"line 14: malformed YAML: could not determine a constructor for the tag"),
])
def test_yaml_constructs_the_loader_refuses(tmp_path, extra, match):
    path = copy_with(tmp_path, "models/tiny.yaml", extra.encode())
    with pytest.raises(ConfigError, match=match) as exc:
        load_model(path)
    one_line(exc, path)


@pytest.mark.parametrize("value", ['"false"', '"true"', "0", "1", "null", "no_such"])
def test_booleans_must_be_true_or_false(tmp_path, value):
    path = edited_config(tmp_path, config_root() / "models/tiny.yaml", "m.yaml", "gated_ffn: true",
                         f"gated_ffn: {value}")
    with pytest.raises(ConfigError, match=r"m.yaml: field gated_ffn: expected true or false, got "):
        load_model(path)


@pytest.mark.parametrize("key, value, expected", [
    ("rope_theta", '"abc"', "expected a finite number, got 'abc'"),
    ("rope_theta", "null", "expected a finite number, got None"),
    ("rope_theta", "0", "expected a number > 1, got 0"),
    ("rope_theta", "-1", "expected a number > 1, got -1"),
    ("rope_theta", "NaN", "expected a finite number, got nan"),
    ("rms_norm_eps", '"x"', "expected a finite number, got 'x'"),
    ("rms_norm_eps", "null", "expected a finite number, got None"),
    ("rms_norm_eps", "-1", "expected >= 1.17549"),
    ("rms_norm_eps", "0", "expected >= 1.17549"),
    ("rms_norm_eps", "Infinity", "expected a finite number, got inf"),
])
def test_hf_constants_are_checked(tmp_path, key, value, expected):
    data = json.loads(hf_config_text())
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data).replace(f'"{key}": {json.dumps(data[key])}', f'"{key}": {value}'))
    load_model(path)
    with pytest.raises(ConfigError, match=rf"config.json: field {key}: {expected}"):
        hf_constants(path)


def test_hf_constants_of_a_good_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(hf_config_text())
    assert hf_constants(path) == (10000.0, 1e-5)


@pytest.mark.parametrize("model, old, new, match", [
    ("llama2-7b", "layers: 32", "layers: 1000000000", r"field layers: llama2-7b needs at least 1.151e\+08 GiB of HBM "
     r"with flightllm \(1000000000 layers of .* GiB weights and KV cache at context 4096"),
    ("llama2-7b", "hidden: 4096", "hidden: 1000000000000000000000000000000",
     r"field hidden: expected <= 4294967296, got 1e\+30"),
    ("llama2-7b", "ffn: 11008", "ffn: 1000000000", r"field ffn: llama2-7b needs at least .* GiB of HBM"),
    ("llama2-7b", "vocab: 32000", "vocab: 1000000000", r"field vocab: llama2-7b needs at least .* LM head 1956 GiB"),
    ("llama2-7b", "vocab: 32000", "vocab: 10000000", r"field vocab: llama2-7b needs at least .* LM head 19.56 GiB"),
    ("tiny", "vocab: 512", "vocab: 10000000", r"field vocab: 10000000 logits are 104167 buffer lines per core, one "
                                              r"SYS HOST instruction returns at most 65535 \(lines field\)$"),
    ("tiny", "ffn: 512", "ffn: 1000000000", r"field ffn: tiny needs at least"),
    ("tiny", "hidden: 256", "hidden: 131072", r"field hidden: tiny needs at least 45.79 GiB of HBM"),
    ("tiny", "max_context: 2048", "max_context: 4294967296", r"field max_context: tiny needs at least"),
])
def test_budget_refuses_impossible_sizes_at_once(tmp_path, u280, model, old, new, match):
    src = load_model(model).source
    path = edited_config(tmp_path, src, "big.yaml", old, new)
    start = time.perf_counter()
    with pytest.raises((ConfigError, CompileError), match=match) as exc:
        m = load_model(path)
        compile_program(m, load_compression("flightllm", u280), u280, 128, m.max_context - 128)
    assert time.perf_counter() - start < 1.0
    one_line(exc, path)


def test_budget_refuses_a_billion_decode_tokens_before_any_work(u280):
    start = time.perf_counter()
    with pytest.raises(CompileError, match=r"llama2-7b.yaml: field max_context: the program needs contexts up to "
                                           r"1000000128"):
        compile_program(load_model("llama2-7b"), load_compression("flightllm", u280), u280, 128, 10**9)
    assert time.perf_counter() - start < 1.0


def test_budget_names_hf_keys(tmp_path, u280):
    path = tmp_path / "config.json"
    path.write_text(hf_config_text().replace('"vocab_size": 512', '"vocab_size": 10000000'))
    with pytest.raises(CompileError, match=r"config.json: field vocab_size: 10000000 logits are 104167 buffer lines"):
        compile_program(load_model(path), load_compression("flightllm", u280), u280, 16, 16)


def test_budget_checks_the_vectors_an_instruction_carries(u280):
    """A hidden size that fits the HBM at 2-bit 2:16 weights still needs one MISC per norm."""
    comp = load_compression({"name": "sparse2", "activation_bits": 8, "kv_bits": 8, "scale_group": 128,
                             "weights": {"default": {"n": 2, "bits": 2}}, "attention": {"block": 64, "density": 1.0}},
                            u280, "profile")
    model = dict(name="wide", layers=1, hidden=65536, heads=1, kv_heads=1, ffn=16, vocab=2, max_context=64,
                 norm="rmsnorm", activation="silu", gated_ffn=True, positional="rope")
    with pytest.raises(CompileError, match=r"^model: field hidden: 65536 features, one MISC instruction normalizes "
                                           r"at most 65520 \(len16 field\)$"):
        compile_program(load_model(model, "model"), comp, u280, 16, 16, Buckets(16, 16))
    model.update(hidden=2048, heads=16, kv_heads=16, max_context=2**20)
    with pytest.raises(CompileError, match=r"^model: field max_context: at context 1048576 a query keeps 1048576 keys "
                                           r"under sparse2's attention mask, one softmax \(MISC len16 field\) covers "
                                           r"at most 65520$"):
        compile_program(load_model(model, "model"), comp, u280, 16, 2**20 - 16, Buckets(16, 16))


@pytest.mark.parametrize("name,message", [
    ("x" * 5000, r"^models 'x{60}'\.\.\.: not a name or path of a file \(File name too long\)$"),
    ("ti\0ny", r"^models 'ti\\x00ny': unknown \(built-in: .*tiny"),
])
def test_a_name_no_file_can_have_is_one_short_line(name, message):
    """A name is looked up, never globbed, and a name too long or with a NUL byte for
    the file system is refused in one line that quotes at most 60 characters of it."""
    with pytest.raises(ConfigError, match=message) as exc:
        load_model(name)
    assert "\n" not in str(exc.value) and len(str(exc.value)) < 200


def test_a_glob_pattern_is_a_name_not_a_pattern():
    """hardware/gpu/a100.yaml is found by its name, never by `a*`."""
    from hwmodel.configio import resolve_config
    assert resolve_config("hardware", "a100").name == "a100.yaml"
    with pytest.raises(ConfigError, match=r"^hardware 'a\*': unknown"):
        resolve_config("hardware", "a*")
