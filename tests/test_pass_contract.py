"""The passes' typed contract (compiler.step): each pass runs on a graph and
state stripped to exactly what it declares it requires, provides what it
declares, and gives the same result as on the full graph; a missing input is
refused by name."""
from __future__ import annotations

import pytest

from compiler.graph import ROLES
from compiler.model_config import load_model
from compiler.pipeline import PIPELINE, new_step, run_passes
from compiler.step import check_contract, stripped_graph
from compiler.weights.profile import load_compression
from hwmodel.errors import CompileError
from hwmodel.hwconfig import load_hw

STEPS = [("tiny", "u280", "prefill", 16, 16, True), ("tiny", "vhk158", "decode", 1, 40, False),
         ("llama2-7b", "u280", "decode", 1, 300, True), ("opt-6.7b", "vhk158", "prefill", 32, 32, True)]


def provided(g, c):
    """Every node attribute contract `c` provides, by node."""
    return {n: {k: a[k] for k in c.provides.get("*", set()) | c.provides.get(a["kind"], set())}
            for n, a in g.nodes(data=True)}


@pytest.mark.parametrize("model, hw_name, phase, tokens, context, fusion", STEPS)
def test_each_pass_needs_only_what_it_declares(model, hw_name, phase, tokens, context, fusion):
    hw = load_hw(hw_name)
    g, st = new_step(load_model(model), load_compression("flightllm", hw), phase, tokens, context, fusion=fusion)
    for name, run, c in PIPELINE:
        gs, sts = stripped_graph(g, c), st.stripped(c.state_requires)
        run(gs, sts, hw)                         # a KeyError here: the pass reads what it does not declare
        check_contract(gs, sts, name, c, "provides")
        run(g, st, hw)
        check_contract(g, st, name, c, "provides")
        assert provided(gs, c) == provided(g, c), name
        for field in c.state_provides:
            if field not in ("builders", "sections"):    # builder objects compare by identity
                assert getattr(sts, field) == getattr(st, field), (name, field)
        assert [s.instrs for s in sts.sections or []] == [s.instrs for s in st.sections or []]


def test_a_missing_input_is_refused_by_pass_and_attribute(u280):
    g, st = new_step(load_model("tiny"), load_compression("flightllm", u280), "decode", 1, 40)
    del g.nodes["L1.down"]["op"]
    with pytest.raises(CompileError, match=r"^pass annotate_compression requires attribute op of linear node "
                                           r"L1.down, which it lacks$"):
        run_passes(g, st, u280, check=True)
    g, st = new_step(load_model("tiny"), load_compression("flightllm", u280), "decode", 1, 40)
    with pytest.raises(CompileError, match=r"^pass allocate requires step state placement, which is not set$"):
        for name, run, c in PIPELINE:
            check_contract(g, st, name, c, "requires")
            if name != "place_hbm":
                run(g, st, u280)


def test_node_roles_are_attributes(u280):
    g, st = new_step(load_model("llama2-7b"), load_compression("flightllm", u280), "decode", 1, 64)
    run_passes(g, st, u280, check=True)
    assert {a["role"] for _, a in g.nodes(data=True)} == set(ROLES) - {"rope", "act"}     # fused into qkv, up
    assert all(a["role"] == n.rsplit(".", 1)[-1] for n, a in g.nodes(data=True))
