"""RTL benches need a real HDL simulator and Yosys: a missing tool is a skip
with its reason, or a failure under CI=true."""
from __future__ import annotations

import os

import pytest

from rtl.runner import missing
from rtl.yosys import missing_yosys


def require(reason: str | None) -> None:
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
