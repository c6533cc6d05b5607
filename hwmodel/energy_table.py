"""Energy per action, read from `configs/energy/*.yaml` (Accelergy-style).

The table says what one action costs and where that number came from; the
counts come from `hwmodel.costs.Work`. `ACTIONS` is the one place that says
which Work field counts which action, so a table missing an action or naming
one the simulator never counts is a ConfigError, not a silent zero.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hwmodel.configio import Fields, load_mapping, resolve_config
from hwmodel.costs import Work

# action -> (unit its `per` must name, Work field that counts it)
ACTIONS: dict[str, tuple[str, str]] = {
    "int8_mac": ("MAC", "macs"),
    "int32_accumulate": ("MAC", "macs"),
    "dequant": ("weight", "weights"),
    "sfu_op": ("element-pass", "sfu_ops"),
    "buffer_byte": ("byte", "buffer_bytes"),
    "hbm_byte": ("byte", "hbm_bytes"),
    "slr_link_byte": ("byte", "link_bytes"),
}
assert all(f in Work.__dataclass_fields__ for _, f in ACTIONS.values())


@dataclass(frozen=True)
class EnergyEntry:
    pj: float
    per: str
    source: str

    @property
    def joules(self) -> float:
        return self.pj * 1e-12


@dataclass(frozen=True)
class EnergyTable:
    name: str
    source: str
    description: str
    technology_scale: float      # factor applied to the 45 nm figures (documentation of the entries)
    actions: dict[str, EnergyEntry]


def load_energy_table(name_or_path: str | Path) -> EnergyTable:
    """Load and validate an energy table (`fpga-16nm` or a YAML path)."""
    path = resolve_config("energy", str(name_or_path))
    f = Fields(load_mapping(path), path)
    f.check_known({"name", "description", "technology_scale", "actions"})
    acts = f.sub("actions")
    acts.check_known(ACTIONS)
    entries = {}
    for action, (unit, _) in ACTIONS.items():
        e = acts.sub(action)
        e.check_known({"pj", "per", "source"})
        source = e.text("source")
        if not source.strip():
            raise e.error("source", "expected where the number comes from, got an empty string")
        entries[action] = EnergyEntry(pj=e.number("pj", lo=0), per=e.text("per", choices=(unit,)), source=source)
    return EnergyTable(
        name=f.text("name"),
        source=str(path),
        description=f.text("description", ""),
        technology_scale=f.number("technology_scale", lo=0.001, hi=1.0),
        actions=entries,
    )
