"""Reading YAML/JSON configuration files with errors that name file and field.

Every configuration in dspflight (hardware, model, compression, energy) is a
mapping read through `Fields`, so a wrong type or a missing key always reads
`<file>: field <a.b.c>: expected ..., got ...`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import yaml

from hwmodel.errors import ConfigError


def load_mapping(path: str | Path) -> dict:
    """Parse a YAML (or JSON) file whose top level must be a mapping."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(f"{path}:{where}: malformed YAML: {problem}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}: malformed JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


class Fields:
    """A view of one mapping in a config file that checks each field it hands out."""

    def __init__(self, data: dict, source: str | Path, prefix: str = ""):
        self.data = data
        self.source = str(source)
        self.prefix = prefix

    def path(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: field {self.path(key)}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.error(key, "missing")
            return default
        return self.data[key]

    def sub(self, key: str, default: Any = ...) -> "Fields":
        value = self.raw(key, {} if default is not ... else default)
        if not isinstance(value, dict):
            raise self.error(key, f"expected a mapping, got {type(value).__name__}")
        return Fields(value, self.source, f"{self.path(key)}.")

    def text(self, key: str, default: Any = ..., choices: Iterable[str] | None = None) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.error(key, f"expected one of {sorted(choices)}, got {value!r}")
        return value

    def integer(self, key: str, default: Any = ..., lo: int | None = None, hi: int | None = None) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {value!r}")
        self._check_range(key, value, lo, hi)
        return value

    def number(self, key: str, default: Any = ..., lo: float | None = None, hi: float | None = None) -> float:
        return self._number(key, self.raw(key, default), lo, hi)

    def number_list(self, key: str, default: Any = ..., lo: float | None = None,
                    hi: float | None = None) -> tuple[float, ...]:
        """A non-empty list of numbers; an error names the entry (`key[i]`)."""
        value = self.raw(key, default)
        if not isinstance(value, list) or not value:
            raise self.error(key, f"expected a non-empty list of numbers, got {value!r}")
        return tuple(self._number(f"{key}[{i}]", v, lo, hi) for i, v in enumerate(value))

    def _number(self, key: str, value: Any, lo: float | None, hi: float | None) -> float:
        # NaN passes every range comparison, so finiteness is checked first
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.error(key, f"expected a finite number, got {value!r}")
        self._check_range(key, value, lo, hi)
        return float(value)

    def int_list(self, key: str, default: Any = ..., lo: int | None = None) -> tuple[int, ...]:
        value = self.raw(key, default)
        if not isinstance(value, list) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise self.error(key, f"expected a non-empty list of integers, got {value!r}")
        for v in value:
            self._check_range(key, v, lo, None)
        return tuple(value)

    def _check_range(self, key: str, value: float, lo: float | None, hi: float | None) -> None:
        if lo is not None and value < lo:
            raise self.error(key, f"expected >= {lo}, got {value}")
        if hi is not None and value > hi:
            raise self.error(key, f"expected <= {hi}, got {value}")

    def check_known(self, known: Iterable[str]) -> None:
        """Reject typos: every key present must be one the reader knows."""
        unknown = sorted(set(self.data) - set(known))
        if unknown:
            raise self.error(unknown[0], f"unknown field (known: {', '.join(sorted(known))})")


def config_fields(kind: str, spec, source: str | None = None,
                  suffixes: tuple[str, ...] = (".yaml",)) -> tuple[Fields, Path | None]:
    """The fields of a config given by built-in name, by path, or as data (a dict,
    named `source` in errors, e.g. a sweep point); the file's path if it has one."""
    if isinstance(spec, dict):
        return Fields(spec, source or f"<{kind} given as data>"), None
    if not isinstance(spec, (str, Path)):
        raise ConfigError(f"{kind}: expected a name, a path or a mapping, got {type(spec).__name__}")
    path = resolve_config(kind, str(spec), suffixes)
    return Fields(load_mapping(path), path), path


def config_root() -> Path:
    """The `configs/` folder shipped next to the packages."""
    return Path(__file__).resolve().parent.parent / "configs"


def resolve_config(kind: str, name_or_path: str, suffixes: tuple[str, ...] = (".yaml",)) -> Path:
    """A built-in config name (e.g. `u280`) or a path to a file of the user's."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml", ".json") or candidate.exists():
        if not candidate.is_file():
            raise ConfigError(f"{candidate}: no such {kind} file")
        return candidate
    folder = config_root() / kind
    for suffix in suffixes:
        for found in [folder / f"{name_or_path}{suffix}", *folder.glob(f"*/{name_or_path}{suffix}")]:
            if found.is_file():
                return found
    known = sorted(p.stem for p in folder.rglob("*.yaml"))
    raise ConfigError(f"{kind} {name_or_path!r}: unknown (built-in: {', '.join(known)}; or give a file path)")
