"""Reading YAML/JSON configuration files with errors that name file and field.

Every configuration in dspflight (hardware, model, compression, energy) is a
mapping read through `Fields`, so a wrong type or a missing key always reads
`<file>: field <a.b.c>: expected ..., got ...` on one line. Whatever the bytes
of a file, loading it either succeeds or raises ConfigError: undecodable text,
deep nesting, YAML aliases and numbers no float can hold are refused before
any field is read.
"""
from __future__ import annotations

import glob
import json
import math
from pathlib import Path
from typing import Any, Iterable

import yaml

from hwmodel.errors import ConfigError

# Deepest nesting a config may have. The shipped configs nest 3 levels
# (hbm.timing_ns.tRC); 16 leaves room for user files and keeps the recursive
# YAML composer far from Python's recursion limit (a 100k-deep file would
# otherwise end in RecursionError after seconds of parsing).
MAX_DEPTH = 16
# Largest magnitude of a number with no stated bound: sizes are mixed with
# floats in the cost formulas, and 2**53 is the largest integer a float holds
# exactly (beyond it, 10**30 bytes would round and 10**400 not convert at all).
MAX_MAGNITUDE = 2**53


class _Refused(Exception):
    """A construct the loader does not accept, with where it is."""

    def __init__(self, problem: str, mark):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses aliases (a few lines can expand to billions of
    nodes) and nesting deeper than MAX_DEPTH, while composing, so a hostile
    file is rejected after reading only its first MAX_DEPTH levels."""

    _depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise _Refused("anchors and aliases (&, *) are not supported", self.peek_event().start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _too_deep(data: Any) -> bool:
    """Whether parsed JSON nests deeper than MAX_DEPTH (checked without recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                return True
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return False


def _parse(path: Path, text: str) -> Any:
    """The parsed document; every way the parser can fail becomes one ConfigError."""
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        if kind == "JSON":
            data = json.loads(text)
            if _too_deep(data):
                raise ConfigError(f"{path}: malformed JSON: nested deeper than {MAX_DEPTH} levels")
            return data
        return yaml.load(text, Loader=_Loader)
    except (yaml.YAMLError, _Refused) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(one_line(f"{path}:{where}: malformed YAML: {problem}")) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}: malformed JSON: {exc.msg}") from None
    except RecursionError:
        raise ConfigError(f"{path}: malformed {kind}: nested too deeply") from None
    except ValueError as exc:       # a value the constructor cannot build: 5000-digit integer, 2020-13-01
        raise ConfigError(one_line(f"{path}: malformed {kind}: {exc}")) from None


def load_mapping(path: str | Path) -> dict:
    """Parse a YAML (or JSON) file whose top level must be a mapping."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                          f"{exc.start})") from None
    data = _parse(path, text)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def one_line(text: str) -> str:
    """A message as the single line the CLI prints."""
    return " ".join(text.splitlines())


def shown(value: Any) -> str:
    """A value for an error message: short, on one line, whatever its size or nesting."""
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'} of {len(value)} entries"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_MAGNITUDE:
        return f"{float(value):.3g}" if value.bit_length() < 1000 else f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def key_name(key: Any) -> str:
    """A mapping key as it appears in a field path (non-string keys by their repr)."""
    return key if isinstance(key, str) and key.isprintable() and key.strip() == key and key else shown(key)


class Fields:
    """A view of one mapping in a config file that checks each field it hands out."""

    def __init__(self, data: dict, source: str | Path, prefix: str = ""):
        self.data = data
        self.source = str(source)
        self.prefix = prefix

    def path(self, key: Any) -> str:
        return f"{self.prefix}{key_name(key)}"

    def error(self, key: Any, message: str) -> ConfigError:
        return ConfigError(one_line(f"{self.source}: field {self.path(key)}: {message}"))

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
            raise self.error(key, f"expected a mapping, got {shown(value)}")
        return Fields(value, self.source, f"{self.path(key)}.")

    def text(self, key: str, default: Any = ..., choices: Iterable[str] | None = None) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {shown(value)}")
        if choices is not None and value not in choices:
            raise self.error(key, f"expected one of {sorted(choices)}, got {shown(value)}")
        return value

    def boolean(self, key: str, default: Any = ...) -> bool:
        """true or false; a string such as "false" is refused, not read as true."""
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {shown(value)}")
        return value

    def integer(self, key: str, default: Any = ..., lo: int | None = None, hi: int | None = None) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {shown(value)}")
        self._check_range(key, value, lo, hi)
        return value

    def number(self, key: str, default: Any = ..., lo: float | None = None, hi: float | None = None) -> float:
        return self._number(key, self.raw(key, default), lo, hi)

    def number_list(self, key: str, default: Any = ..., lo: float | None = None,
                    hi: float | None = None) -> tuple[float, ...]:
        """A non-empty list of numbers; an error names the entry (`key[i]`)."""
        value = self.raw(key, default)
        if not isinstance(value, list) or not value:
            raise self.error(key, f"expected a non-empty list of numbers, got {shown(value)}")
        return tuple(self._number(f"{key}[{i}]", v, lo, hi) for i, v in enumerate(value))

    def _number(self, key: str, value: Any, lo: float | None, hi: float | None) -> float:
        # NaN passes every range comparison, so finiteness is checked first (and an
        # integer too large for a float before math.isfinite converts it)
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or isinstance(value, int) and abs(value) > MAX_MAGNITUDE or not math.isfinite(value)):
            raise self.error(key, f"expected a finite number, got {shown(value)}")
        self._check_range(key, value, lo, hi)
        return float(value)

    def int_list(self, key: str, default: Any = ..., lo: int | None = None) -> tuple[int, ...]:
        value = self.raw(key, default)
        if not isinstance(value, list) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise self.error(key, f"expected a non-empty list of integers, got {shown(value)}")
        for v in value:
            self._check_range(key, v, lo, None)
        return tuple(value)

    def _check_range(self, key: str, value: float, lo: float | None, hi: float | None) -> None:
        """`lo`..`hi`, and never beyond MAX_MAGNITUDE where a bound is not stated."""
        lo = -MAX_MAGNITUDE if lo is None else lo
        hi = MAX_MAGNITUDE if hi is None else hi
        if value < lo:
            raise self.error(key, f"expected >= {lo}, got {shown(value)}")
        if value > hi:
            raise self.error(key, f"expected <= {hi}, got {shown(value)}")

    def check_known(self, known: Iterable[str]) -> None:
        """Reject typos: every key present must be one the reader knows (keys of
        any type: YAML reads `1:` as an integer key)."""
        known = set(known)
        unknown = sorted((k for k in self.data if k not in known), key=lambda k: (type(k).__name__, str(k)))
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
    folder = config_root() / kind
    try:
        if candidate.suffix in (".yaml", ".yml", ".json") or candidate.exists():
            if not candidate.is_file():
                raise ConfigError(f"{candidate}: no such {kind} file")
            return candidate
        for suffix in suffixes:
            stem = glob.escape(f"{name_or_path}{suffix}")
            for found in [folder / f"{name_or_path}{suffix}", *folder.glob(f"*/{stem}")]:
                if found.is_file():
                    return found
    except (OSError, ValueError) as exc:        # too long a name, a NUL byte: no file can have it
        raise ConfigError(f"{kind} {_shown(name_or_path)}: not a name or path of a file "
                          f"({getattr(exc, 'strerror', None) or exc})") from None
    known = sorted(p.stem for p in folder.rglob("*.yaml"))
    raise ConfigError(f"{kind} {_shown(name_or_path)}: unknown (built-in: {', '.join(known)}; or give a file path)")


def _shown(name: str, limit: int = 60) -> str:
    """A name as an error quotes it: at most `limit` characters of it."""
    return repr(name[:limit]) + ("..." if len(name) > limit else "")
