"""The typed contract between the passes of one step's compilation.

`StepState` is the step's graph-level state: what the step is (inputs), then
what each pass adds, field by field. Each pass declares a `Contract`: the
state fields and the node attributes (by node kind, `*` for every node) it
requires and those it provides. `check_contract` verifies a graph against
one side of a contract, so a pass that reads what no earlier pass wrote
fails by name, and a test runs every pass on a graph stripped to what it
declares (tests/test_pass_contract.py).

Node identity lives in attributes set by the frontend (`kind`, `layer`,
`role`: `qkv`, `attn_res`, ... as in `compiler.graph.ROLES`), never in node
names.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields

import networkx as nx

from compiler.model_config import ModelConfig
from compiler.section_builder import SectionBuilder
from compiler.weights.profile import Compression
from hwmodel.errors import CompileError
from hwmodel.placement import Placement
from hwmodel.program import Section

ALL = "*"             # a contract key naming every node
STEP_INPUTS = ("model", "compression", "phase", "tokens", "context", "max_context", "fusion", "plan")


@dataclass
class StepState:
    """One step's graph-level state; `None` until the pass that provides it ran."""
    model: ModelConfig
    compression: Compression
    phase: str                     # "prefill" or "decode"
    tokens: int                    # new tokens of the step
    context: int                   # KV length after the step
    max_context: int               # longest context the program serves (sizes the KV regions)
    fusion: bool = True            # always-on-chip decode (onchip_fusion)
    plan: str = "spread"           # placement plan name (place_hbm)
    placement: Placement | None = None                  # place_hbm
    rope_addr: int | None = None                        # allocate: first line of the step's RoPE rows
    act_lines_used: int | None = None                   # allocate
    hbm_layout: dict | None = None                      # allocate: per-layer bursts, KV, I/O and RoPE sizes
    numerics_blockers: list[str] | None = None          # allocate (emit adds): why it cannot run numerically
    builders: list[SectionBuilder] | None = None        # emit: one per distinct section
    layer_section: dict[int, int] | None = None         # emit: section index of each layer (PRE, POST too)
    sections: list[Section] | None = None               # schedule_tokens: the builders' final sections

    def stripped(self, keep: frozenset[str]) -> "StepState":
        """A copy holding only the inputs and the provided fields named in `keep`."""
        return StepState(**{f.name: copy.copy(getattr(self, f.name)) for f in fields(self)
                            if f.name in STEP_INPUTS or f.name in keep})


@dataclass(frozen=True)
class Contract:
    """What a pass reads and writes: state fields, and node attributes by node kind."""
    requires: dict[str, frozenset[str]] = field(default_factory=dict)
    provides: dict[str, frozenset[str]] = field(default_factory=dict)
    state_requires: frozenset[str] = frozenset()
    state_provides: frozenset[str] = frozenset()


def contract(requires: dict[str, str] | None = None, provides: dict[str, str] | None = None,
             state_requires: str = "", state_provides: str = "") -> Contract:
    """A contract from space-separated names (the way passes declare theirs)."""
    def names(spec: dict[str, str] | None) -> dict[str, frozenset[str]]:
        return {kind: frozenset(attrs.split()) for kind, attrs in (spec or {}).items()}
    return Contract(names(requires), names(provides), frozenset(state_requires.split()),
                    frozenset(state_provides.split()))


def _nodes_of(g: nx.DiGraph, kind: str):
    return ((n, a) for n, a in g.nodes(data=True) if kind == ALL or a["kind"] == kind)


def check_contract(g: nx.DiGraph, st: StepState, pass_name: str, c: Contract, side: str) -> None:
    """Refuse a graph or state lacking what pass `pass_name` requires (side
    "requires", before it runs) or promised to provide (side "provides", after)."""
    attrs = c.requires if side == "requires" else c.provides
    state = c.state_requires if side == "requires" else c.state_provides
    for name in sorted(state):
        if getattr(st, name) is None:
            raise CompileError(f"pass {pass_name} {side} step state {name}, which is not set")
    for kind, need in attrs.items():
        for n, a in _nodes_of(g, kind):
            missing = need - a.keys()
            if missing:
                raise CompileError(f"pass {pass_name} {side} attribute {sorted(missing)[0]} of {kind} node {n}, "
                                   f"which it lacks")


def stripped_graph(g: nx.DiGraph, c: Contract) -> nx.DiGraph:
    """A copy of `g` whose nodes hold only their identity and what `c` requires."""
    out = g.copy()
    for n, a in out.nodes(data=True):
        keep = {"kind", "layer", "role"} | c.requires.get(ALL, frozenset()) | c.requires.get(a["kind"], frozenset())
        for k in list(a):
            if k not in keep:
                del a[k]
    return out
