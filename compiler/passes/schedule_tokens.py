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
from hwmodel.isa import other_queues


def assign_tokens(b: SectionBuilder) -> None:
    waited: dict[tuple[int, int], int] = {}
    for idx, (ins, deps) in enumerate(zip(b.instrs, b.deps)):
        c = int(ins.op)
        latest: dict[int, int] = {}
        for d in deps:
            p = int(b.instrs[d].op)
            if p != c and d > latest.get(p, -1):
                latest[p] = d
        for p, d in latest.items():
            if d <= waited.get((p, c), -1):
                continue
            waited[(p, c)] = d
            ins.wait |= 1 << other_queues(c).index(p)
            producer = b.instrs[d]
            producer.release |= 1 << other_queues(p).index(c)


CONTRACT = contract(state_requires="builders", state_provides="sections")


def schedule_tokens(g: nx.DiGraph, st: StepState, hw: HwConfig) -> None:
    for b in st.builders:
        assign_tokens(b)
    st.sections = [b.section() for b in st.builders]
