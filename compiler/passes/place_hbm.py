"""Pass: choose the data placement, the HBM pseudo-channels (PCs) of every region.

Named plans (hwmodel.placement describes what a placement is):

- `spread` (default): each core owns channels // cores PCs, one DMA port each,
  and stripes its weights, KV cache and I/O over all of them, so every core
  streams from all its PCs in parallel and no PC serves two cores. PCs left
  over by the division stay unused.
- `flightllm`: FlightLLM's channel plan (FACTS.md, artifact): per core, the
  weight records stream from 8 PCs in parallel, one port each; the KV cache,
  activations and small records come from one further PC.
- `kv-4pc`: a what-if: the KV cache of all cores on 4 shared PCs; weights and
  I/O spread over the rest as in `spread`.
"""
from __future__ import annotations

from typing import Callable

import networkx as nx

from compiler.step import StepState, contract
from hwmodel.errors import CompileError
from hwmodel.hwconfig import HwConfig
from hwmodel.placement import Placement


def _need(hw: HwConfig, plan: str, pcs: int) -> None:
    if pcs < 1 or pcs > hw.hbm.channels:
        raise CompileError(f"{hw.source}: field hbm.pcs_per_stack: plan {plan} needs {max(pcs, 1)} PCs for "
                           f"{hw.slrs} cores, the design has {hw.hbm.channels}")


def spread(hw: HwConfig) -> Placement:
    k = hw.hbm.channels // hw.slrs
    _need(hw, "spread", k * hw.slrs)
    cores = tuple(tuple(range(c * k, (c + 1) * k)) for c in range(hw.slrs))
    return Placement("spread", cores, (("weights", 0, k), ("kv", 0, k), ("io", 0, k)))


def flightllm(hw: HwConfig) -> Placement:
    _need(hw, "flightllm", 9 * hw.slrs)
    cores = tuple(tuple(range(9 * c, 9 * c + 9)) for c in range(hw.slrs))
    return Placement("flightllm", cores, (("weights", 0, 8), ("kv", 8, 1), ("io", 8, 1)))


def kv_4pc(hw: HwConfig) -> Placement:
    k = (hw.hbm.channels - 4) // hw.slrs
    _need(hw, "kv-4pc", k * hw.slrs + 4 if k else 0)
    shared = tuple(range(hw.hbm.channels - 4, hw.hbm.channels))
    cores = tuple(tuple(range(c * k, (c + 1) * k)) + shared for c in range(hw.slrs))
    return Placement("kv-4pc", cores, (("weights", 0, k), ("kv", k, 4), ("io", 0, k)))


PLANS: dict[str, Callable[[HwConfig], Placement]] = {"spread": spread, "flightllm": flightllm, "kv-4pc": kv_4pc}


def plan_placement(name: str, hw: HwConfig) -> Placement:
    if name not in PLANS:
        raise CompileError(f"--plan {name!r}: unknown placement plan (plans: {', '.join(PLANS)})")
    return PLANS[name](hw)


CONTRACT = contract(state_provides="placement")


def place_hbm(g: nx.DiGraph, st: StepState, hw: HwConfig) -> None:
    st.placement = plan_placement(st.plan, hw)
