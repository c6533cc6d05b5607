"""The built-in configurations under configs/, one line each, for `dspflight list`
and for explaining a GPU preset given where a design is expected."""
from __future__ import annotations

from pathlib import Path

import yaml

from compiler.weights.gguf import BUILTIN
from hwmodel.configio import config_root

DESIGNS, GPUS = "hardware", "hardware/gpu"
KINDS = {"models": "models", "designs": DESIGNS, "compression profiles": "compression",
         "GPU presets (roofline comparison only)": GPUS, "energy tables": "energy"}
WIDTH = 100             # a description longer than this is cut at a word


def builtins(folder: str) -> dict[str, str]:
    """Name -> one-line description of each YAML directly in configs/<folder>."""
    return {path.stem: _describe(path) for path in sorted((config_root() / folder).glob("*.yaml"))}


def gpu_presets() -> list[str]:
    return list(builtins(GPUS))


def _describe(path: Path) -> str:
    """The file's `description`, else its opening comment
    (the shipped files have one or the other), cut to WIDTH."""
    text = path.read_text()
    data = yaml.safe_load(text)
    if isinstance(data, dict) and isinstance(data.get("description"), str):
        line = data["description"]
    else:
        comment = []
        for raw in text.splitlines():
            if not raw.startswith("#") or raw.strip() == "#":
                break
            comment.append(raw.lstrip("# ").strip())
        line = " ".join(comment)
    return line if len(line) <= WIDTH else line[:WIDTH].rsplit(" ", 1)[0] + " ..."


def listing() -> str:
    """Every built-in, grouped by kind."""
    lines = []
    for kind, folder in KINDS.items():
        lines.append(f"{kind}:")
        lines += [f"  {name:<12} {desc}" for name, desc in builtins(folder).items()]
    lines.append("checkpoints (execute, perplexity --checkpoint):")
    lines += [f"  {name:<12} {file} (from the Python package {package})" for name, (package, file) in BUILTIN.items()]
    return "\n".join(lines)
