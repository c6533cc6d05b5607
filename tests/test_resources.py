"""The resource model (hwmodel/resources.py): its fit reproduces the synthesis
points it was made from, the split into per-core and per-chain blocks predicts
a two-chain tile, and the design's hard resources are predictions compared
with FlightLLM's published U280 utilization."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from hwmodel.configio import config_root
from hwmodel.dequant import SCALE_DSPS
from hwmodel.errors import ConfigError
from hwmodel.hwconfig import load_hw
from hwmodel.published import UTILIZATION
from hwmodel.resources import FABRIC, PER_CHAIN, PER_CORE, block_cost, fit_data, fit_lines, mpe_estimate, \
    utilization


def test_fit_lines_recovers_a_line():
    points = {"b": {str(n): {"lut": 3 * n + 7, "ff": 5, "dsp": n} for n in (4, 8, 16)}}
    lines = fit_lines(points)["b"]
    assert lines["lut"] == [3.0, 7.0] and lines["ff"] == [0.0, 5.0] and lines["dsp"] == [1.0, 0.0]


@pytest.mark.parametrize("family", sorted(fit_data()["families"]))
def test_fit_file_is_consistent(family):
    """The committed fit is the least-squares line of its own points; the blocks of
    the one-chain tile add up to it; a chain of L has L DSP48s."""
    fam = fit_data()["families"][family]
    assert fam["fit"] == fit_lines(fam["points"])
    for length, tile in fam["tiles"].items():
        assert mpe_estimate(family, chains=1, chain_length=int(length), cores=1) == {k: float(v) for k, v in tile.items()}
        assert fam["points"]["chain"][length]["dsp"] == int(length)


@pytest.mark.parametrize("family", sorted(fit_data()["families"]))
def test_blocks_predict_a_two_chain_tile(family):
    """Per-core and per-chain parts: the two-chain tile, synthesized on its own,
    is within 10 % of what the blocks predict (LUT and FF; DSP exactly)."""
    check = fit_data()["families"][family]["check"]
    measured, predicted = check["measured"], check["predicted"]
    assert predicted["dsp"] == measured["dsp"]
    for res in ("lut", "ff"):
        assert predicted[res] == pytest.approx(measured[res], rel=0.10), (res, check)


def test_unmeasured_lengths_use_the_line():
    fam = sorted(fit_data()["families"])[0]
    a, b = fit_data()["families"][fam]["fit"]["chain"]["lut"]
    assert block_cost(fam, "chain", 32)["lut"] == pytest.approx(max(0.0, 32 * a + b))
    assert block_cost(fam, "chain", 16)["dsp"] == 16


def test_u280_hard_resources_against_flightllm():
    """DSP, BRAM36 and URAM follow from the config alone (MPE MAC and group-scale
    DSPs + SFU DSPs; buffer blocks) and are compared with FlightLLM's published
    U280 design: its 6,144 MPE + 201 SFU DSPs exactly, plus our 2 scale DSPs per
    chain; buffers within 10 % (its design has buffers we do not model: index,
    instruction and lookup tables)."""
    hw = load_hw("u280")
    util = utilization(hw)["resources"]
    assert hw.slrs * (hw.dsp_per_core + hw.sfu_dsp) == UTILIZATION["dsp"] == 6345
    assert util["dsp"]["estimate"] == 6345 + hw.slrs * hw.chains * SCALE_DSPS == 7113
    assert util["uram"]["estimate"] == pytest.approx(UTILIZATION["uram"], rel=0.10)
    assert util["bram36"]["estimate"] == pytest.approx(UTILIZATION["bram36"], rel=0.10)
    for kind in ("dsp", "bram36", "uram", "lut", "ff"):
        r = util[kind]
        assert r["device"] and r["fraction"] == pytest.approx(r["estimate"] / r["device"])


def test_u280_fabric_estimate_is_the_blocks_times_the_design():
    hw = load_hw("u280")
    per_core = {res: sum(block_cost("xcup", b, 16)[res] for b in PER_CORE) for res in FABRIC}
    per_chain = {res: sum(block_cost("xcup", b, 16)[res] for b in PER_CHAIN) for res in FABRIC}
    util = utilization(hw)["resources"]
    for res in ("lut", "ff"):
        assert util[res]["estimate"] == pytest.approx(3 * (per_core[res] + 128 * per_chain[res]))
    assert np.isclose(per_chain["dsp"], 16 + SCALE_DSPS)


def test_twice_the_chains_is_refused_naming_dsp():
    data = yaml.safe_load((config_root() / "hardware" / "u280.yaml").read_text())
    data["mpe"]["chains"] *= 2
    with pytest.raises(ConfigError, match=r"mpe\.chains.*DSPs, more than fabric\.dsp=9024"):
        load_hw(data, source="twice.yaml")


def test_u280_mpe_fits_its_device():
    """The committed fit says the U280 design's MPE fits the U280 (load_hw enforces it)."""
    util = utilization(load_hw("u280"))["resources"]
    for kind in ("dsp", "lut", "ff", "bram36", "uram"):
        assert util[kind]["fraction"] < 1.0, (kind, util[kind])


@pytest.mark.parametrize("kind", ["lut", "ff"])
def test_a_device_too_small_for_the_fabric_is_refused_naming_it(kind):
    """DSPs that fit but LUTs or FFs that do not: one line naming mpe.chains and the resource."""
    data = yaml.safe_load((config_root() / "hardware" / "u280.yaml").read_text())
    need = utilization(load_hw("u280"))["resources"][kind]["estimate"]
    data["fabric"][kind] = int(need) - 1
    with pytest.raises(ConfigError, match=rf"small\.yaml: field mpe\.chains: .* need about [\d,]+ {kind.upper()} "
                                          rf".*more than fabric\.{kind}={int(need) - 1}$"):
        load_hw(data, source="small.yaml")


def test_unknown_fabric_family_is_refused():
    data = yaml.safe_load((config_root() / "hardware" / "u280.yaml").read_text())
    data["fabric"]["family"] = "xcvu"
    with pytest.raises(ConfigError, match=r"fabric\.family"):
        load_hw(data, source="bad.yaml")
