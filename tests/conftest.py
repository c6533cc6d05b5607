"""Shared fixtures: designs and small compiled programs. Under CI=true the
property tests draw the same examples every run (a fixed seed per test), so
CI never passes or fails by luck; elsewhere they explore new ones."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from compiler.model_config import load_model
from compiler.pipeline import compile_program
from compiler.weights.checkpoint import load_checkpoint
from compiler.weights.profile import load_compression
from hwmodel.hwconfig import load_hw

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI", "").lower() == "true":
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def u280():
    return load_hw("u280")


@pytest.fixture(scope="session")
def vhk158():
    return load_hw("vhk158")


@pytest.fixture(scope="session")
def tiny_program(u280):
    """The tiny model, prefill 32 + decode 8, compiled for the U280 design."""
    return compile_program(load_model("tiny"), load_compression("flightllm", u280), u280, 32, 8)


@pytest.fixture(scope="session")
def smollm2():
    """The built-in real checkpoint (SmolLM2-135M-Instruct from its GGUF file), loaded once."""
    return load_checkpoint("smollm2")


def edited_config(tmp_path: Path, source: str | Path, name: str, old: str, new: str) -> Path:
    """A copy of a config file with one piece of text replaced (which must be there)."""
    text = Path(source).read_text()
    assert old in text, old
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    return path


def density_profile(tmp_path: Path, density: str, name: str = "per-layer.yaml") -> Path:
    """The flightllm profile with its attention section's density lines replaced by `density`."""
    text = Path("configs/compression/flightllm.yaml").read_text()
    path = tmp_path / name
    path.write_text(text[: text.index("attention:")] + f"attention:\n  block: 64\n  {density}\n")
    return path


def run_testbench(dut, bench) -> None:
    """Run an async Amaranth testbench against `dut` on a 100 MHz clock."""
    from amaranth.sim import Simulator
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def render_in_chromium(page: Path, screenshot: Path) -> list[str]:
    """Open a page in headless Chromium, save a screenshot, return the page's console
    lines (errors, warnings, logs). A missing browser skips, or fails under CI=true."""
    import shutil
    import subprocess
    browser = shutil.which("chromium")
    if browser is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true and chromium is not installed (./scripts/bootstrap installs it)")
        pytest.skip("chromium is not installed")
    run = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--window-size=1000,700", "--enable-logging=stderr", "--v=0",
                          f"--screenshot={screenshot}", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert screenshot.exists(), run.stderr[-2000:]
    return [line for line in run.stderr.splitlines() if ":CONSOLE" in line]


def non_blank(png: Path) -> bool:
    """More than one colour on a good share of the picture."""
    import numpy as np
    from PIL import Image
    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    return pixels.std() > 5 and (pixels < 200).mean() > 0.005
