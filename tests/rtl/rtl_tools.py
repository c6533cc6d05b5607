"""Fixtures of the RTL benches: a real HDL simulator and Yosys, or a skip with
the reason (a failure under CI=true). Imported by the test modules rather than
kept in a conftest.py, which would shadow the `conftest` of tests/."""
from __future__ import annotations

import os

import pytest

from rtl.runner import missing
from rtl.yosys import missing_yosys


def require(reason: str | None) -> None:
    """Skip for `reason`, or fail under CI=true; nothing if the tool is there."""
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture
def yosys() -> None:
    require(missing_yosys())


@pytest.fixture(params=["icarus", "verilator"])
def simulator(request, yosys) -> str:
    require(missing(request.param))
    return request.param


@pytest.fixture
def icarus(yosys) -> str:
    """Icarus Verilog only (and Yosys for the export), for benches that need no Verilator run."""
    require(missing("icarus"))
    return "icarus"
