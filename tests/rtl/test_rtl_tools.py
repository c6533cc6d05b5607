"""A missing HDL tool skips the RTL tests with its reason, and fails them under CI=true."""
import pytest

from rtl_tools import require
from rtl.runner import missing


def test_missing_tool_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and no iverilog"):
        require("no iverilog")


def test_missing_tool_skips_otherwise(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no iverilog"):
        require("no iverilog")
    require(None)


def test_missing_names_the_tool(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("rtl.runner.tool_env", lambda: None)
    assert "iverilog" in missing("icarus")
    assert "verilator" in missing("verilator")
    assert "unknown simulator" in missing("questa")
