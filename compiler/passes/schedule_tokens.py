"""Pass: turn data dependencies into wait/release tokens.

Each queue runs in order, so an instruction needs at most one token from each
other queue: the one released by its latest producer there. A dependency
already implied by an earlier wait of the same queue is dropped; what is left
pairs the k-th release from queue P to queue C with the k-th wait of C on P,
which is exactly how the hardware's token counters behave.
"""
from __future__ import annotations

import networkx as nx

from compiler.section_builder import SectionBuilder
from compiler.step import StepState, contract
from hwmodel.hwconfig import HwConfig
from hwmodel.isa import NUM_QUEUES, other_queues


def assign_tokens(b: SectionBuilder) -> None:
    ops = [int(ins.op) for ins in b.instrs]
    waited: dict[tuple[int, int], int] = {}
    for ins, c, deps in zip(b.instrs, ops, b.deps):
        latest: dict[int, int] = {}
        for d in deps:
            p = ops[d]
            if p != c and d > latest.get(p, -1):
                latest[p] = d
        for p, d in latest.items():
            if d <= waited.get((p, c), -1):
                continue
            waited[(p, c)] = d
            ins.wait |= _BIT[c][p]
            b.instrs[d].release |= _BIT[p][c]


# _BIT[c][p]: queue p's bit in a mask of queue c
_BIT = [[1 << other_queues(c).index(p) if p != c else 0 for p in range(NUM_QUEUES)] for c in range(NUM_QUEUES)]


CONTRACT = contract(state_requires="builders", state_provides="sections")


def schedule_tokens(g: nx.DiGraph, st: StepState, hw: HwConfig) -> None:
    for b in st.builders:
        assign_tokens(b)
    st.sections = [b.section() for b in st.builders]
