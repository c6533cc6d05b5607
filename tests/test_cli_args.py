"""The command line's first hour: `list`, `--version`, `--debug` anywhere, defaults
and help on every option, and every flag honoured or refused in one line (exit 2)."""
from __future__ import annotations

import argparse

import pytest

from dspflight import __version__
from dspflight.catalog import builtins
from dspflight.cli import build_parser, main
from dspflight.cliargs import Formatter
from hwmodel.errors import ConfigError


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """main's exit code (argparse's refusals exit through SystemExit), stdout and stderr."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_list_names_every_builtin_on_one_line(capsys):
    code, out, _ = run(["list"], capsys)
    assert code == 0
    lines = out.splitlines()
    for folder in ("models", "hardware", "compression", "hardware/gpu", "energy"):
        for name, desc in builtins(folder).items():
            assert sum(line.split()[0] == name for line in lines) == 1, name
            assert desc
    assert "GPU presets (roofline comparison only):" in lines
    assert any(line.split()[0] == "smollm2" for line in lines)        # the built-in checkpoint
    assert max(map(len, lines)) <= 120


def test_version(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out == f"dspflight {__version__}\n" and __version__ == "0.1.0"


@pytest.mark.parametrize("argv", [["--debug", "compile", "--hw", "none.yaml"], ["compile", "--debug", "--hw", "none.yaml"],
                                  ["compile", "--hw", "none.yaml", "--debug"]])
def test_debug_anywhere_shows_the_traceback(argv):
    with pytest.raises(ConfigError, match="none.yaml"):
        main(argv)


def test_without_debug_the_same_error_is_one_line(capsys):
    code, _, err = run(["compile", "--hw", "none.yaml"], capsys)
    assert code == 2 and err == "dspflight: error: none.yaml: no such hardware file\n"


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_option_has_help_and_says_its_default():
    parsers = list(_parsers(build_parser()))
    assert len(parsers) > 12
    for parser in parsers:
        formatter = Formatter(parser.prog)
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            assert action.help, (parser.prog, action.dest)
            takes_value = action.nargs != 0 and (action.option_strings or action.nargs == "?")
            if takes_value and action.default is not argparse.SUPPRESS:
                assert "default" in formatter._get_help_string(action), (parser.prog, action.dest)


@pytest.mark.parametrize("argv, expected", [
    (["run", "--cases", "--prefill", "64"], "run --cases: --prefill cannot be honoured"),
    (["run", "--cases", "--decode", "8", "--dump-after", "tile"], "--decode, --dump-after cannot be honoured"),
    (["storage", "--model", "tiny", "--max-context", "10"], "max_prompt=2048, max_context=10"),
    (["storage", "--max-prompt", "0"], "argument --max-prompt: expected an integer >= 1, got '0'"),
    (["storage", "--max-context", "0"], "argument --max-context: expected an integer >= 1, got '0'"),
    (["execute", "--prompt-ids", "1,2,abc"], "argument --prompt-ids: expected comma-separated token ids"),
    (["execute", "--prompt-ids", "1,-2"], "argument --prompt-ids: expected comma-separated token ids"),
    (["execute", "--prompt-ids", ",".join(["600"] * 16)], "prompt: token id 600 is outside the vocabulary of tiny (0..511)"),
    (["execute", "--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
    (["execute", "--prefill-bucket", "0"], "argument --prefill-bucket: expected an integer >= 1, got '0'"),
    (["compile", "--prefill-bucket", "0"], "argument --prefill-bucket: expected an integer >= 1, got '0'"),
    (["compile", "--decode", "-1"], "argument --decode: expected an integer >= 0, got '-1'"),
    (["sweep", "x.yaml", "--workers", "0"], "argument --workers: expected an integer >= 1, got '0'"),
    (["compile", "--hw", "a100"], "'a100' is a GPU preset: GPUs are roofline-only devices"),
    (["hbm-bench", "--hw", "h100"], "'h100' is a GPU preset"),
    (["compile", "--hw", "bogus"], "unknown design 'bogus' (designs: u280, vhk158, or a YAML path"),
])
def test_bad_flags_are_refused_in_one_line(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(argv, capsys)
    assert code == 2
    assert len(err.splitlines()) == 1 and expected in err, err
    assert list(tmp_path.iterdir()) == []


def test_storage_honours_max_context(tmp_path, capsys):
    code, out, _ = run(["storage", "--model", "tiny", "--max-prompt", "64", "--max-context", "96",
                        "-o", str(tmp_path)], capsys)
    assert code == 0 and "prompts 1-64, contexts 1-96" in out


@pytest.mark.parametrize("command", [["run"], ["run", "--cases"], ["simulate", "x.dfp"], ["report"]])
def test_a_bad_energy_table_is_refused_before_any_work(command, capsys, monkeypatch, tmp_path):
    """The energy table is used last (after compiling and simulating) but checked first."""
    def no_work(*args, **kwargs):
        raise AssertionError("work started before --energy was checked")
    for name in ("compile_model", "load_program", "run_cases", "simulate_program"):
        monkeypatch.setattr(f"dspflight.api.{name}", no_work)
    code, out, err = run([*command, "--energy", "nope", "-o" if command[0] != "report" else str(tmp_path),
                          *([str(tmp_path / "o")] if command[0] != "report" else [])], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "argument --energy: energy 'nope': unknown" in err
    assert not (tmp_path / "o").exists()
