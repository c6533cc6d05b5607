"""RTL benches need a real HDL simulator: a missing one is a skip with its
reason, or a failure under CI=true."""
from __future__ import annotations

import os

import pytest

from rtl.runner import missing


def require_simulator(sim: str) -> None:
    reason = missing(sim)
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture(params=["icarus", "verilator"])
def simulator(request) -> str:
    require_simulator(request.param)
    return request.param
