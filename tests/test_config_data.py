"""Configs as data: the loaders take a mapping (a sweep point) or a config object as well as a name or path."""
from __future__ import annotations

import copy

import pytest
import yaml

from compiler.model_config import load_model
from compiler.weights.profile import load_compression
from hwmodel.errors import ConfigError
from hwmodel.hwconfig import load_hw


def mapping(path: str) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def test_a_mapping_loads_like_its_file_and_errors_name_the_point():
    u280 = load_hw("u280")
    data = mapping(u280.source)
    same = load_hw(copy.deepcopy(data), "sweep point 0")
    assert same.fingerprint == u280.fingerprint and same.source == "sweep point 0"
    data["mpe"]["chains"] = 256
    with pytest.raises(ConfigError, match=r"^sweep point 7 \(hw.mpe.chains=256\): field mpe.chains: .* DSPs, more "
                                          r"than fabric.dsp=9024$"):
        load_hw(data, "sweep point 7 (hw.mpe.chains=256)")
    model = mapping(load_model("tiny").source)
    model["layers"] = 0
    with pytest.raises(ConfigError, match=r"^point: field layers: expected >= 1, got 0$"):
        load_model(model, "point")
    comp = mapping(load_compression("flightllm", u280).source)
    comp["weights"]["default"]["bits"] = 7
    with pytest.raises(ConfigError, match=r"^point: field weights.default.bits: 7-bit weights are not supported"):
        load_compression(comp, u280, "point")


def test_config_objects_pass_through_and_other_types_are_refused():
    hw = load_hw("u280")
    assert load_hw(hw) is hw
    model = load_model("tiny")
    assert load_model(model) is model
    comp = load_compression("flightllm", hw)
    assert load_compression(comp, hw) is comp
    with pytest.raises(ConfigError, match=r"^hardware: expected a name, a path or a mapping, got int$"):
        load_hw(3)
