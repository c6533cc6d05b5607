"""What the RTL tests do about a missing tool: skip with its reason, or fail under CI=true."""
from __future__ import annotations

import os

import pytest


def require(reason: str | None) -> None:
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)
