"""Fixtures of the RTL benches: a real HDL simulator and Yosys, or a skip
with the reason (a failure under CI=true)."""
from __future__ import annotations

import pytest
from rtl_tools import require

from rtl.runner import missing
from rtl.yosys import missing_yosys


@pytest.fixture
def yosys() -> None:
    require(missing_yosys())


@pytest.fixture(params=["icarus", "verilator"])
def simulator(request, yosys) -> str:
    require(missing(request.param))
    return request.param
