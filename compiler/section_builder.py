"""Collects the instructions of one section with their data dependencies.

Every instruction names the resources it reads and writes (activation slots,
weight-buffer halves, global-buffer quarters, the KV cache); the builder
derives read-after-write, write-after-read and write-after-write
dependencies from that, so the emitter never wires a dependency by hand.
"""
from __future__ import annotations

from hwmodel.isa import Instr, Op
from hwmodel.program import Section


class SectionBuilder:
    def __init__(self, name: str):
        self.name = name
        self.instrs: list[Instr] = []
        self.deps: list[set[int]] = []
        self.labels: list[tuple[int, str]] = []
        self._writer: dict[str, int] = {}
        self._readers: dict[str, list[int]] = {}

    def label(self, name: str) -> None:
        if self.labels and self.labels[-1][0] == len(self.instrs):
            self.labels[-1] = (len(self.instrs), name)
        elif not self.labels or self.labels[-1][1] != name:
            self.labels.append((len(self.instrs), name))

    def add(self, op: Op, fields: dict[str, int], reads: tuple[str, ...] = (), writes: tuple[str, ...] = ()) -> int:
        idx = len(self.instrs)
        deps: set[int] = set()
        for r in reads:
            if r in self._writer:
                deps.add(self._writer[r])
        for w in writes:
            if w in self._writer:
                deps.add(self._writer[w])
            deps.update(self._readers.get(w, ()))
        for r in reads:
            self._readers.setdefault(r, []).append(idx)
        for w in writes:
            self._writer[w] = idx
            self._readers[w] = []
        self.instrs.append(Instr(op, 0, 0, fields))
        self.deps.append(deps)
        return idx

    def finish(self) -> None:
        """End with a barrier that waits for the last instruction of every queue,
        so the section ends with all queues idle and every token consumed."""
        last = {}
        for i, ins in enumerate(self.instrs):
            last[ins.op] = i
        self.label("barrier")
        self.instrs.append(Instr(Op.SYS, 0, 0, {"kind": 0, "lines": 0}))
        self.deps.append(set(last.values()))

    def section(self) -> Section:
        return Section(self.name, self.instrs, list(self.labels))
