"""The one exception family: every message names the file, the field or the
instruction, and what was expected, so the CLI can print it as one line."""


class DspflightError(Exception):
    """Base of every error dspflight reports to a user (CLI exit code 2)."""


class ConfigError(DspflightError):
    """A YAML/JSON configuration is malformed or describes something impossible."""


class CompileError(DspflightError):
    """The model cannot be lowered to this hardware (does not fit, no tiling, ...)."""


class ProgramFormatError(DspflightError):
    """A .dfp program file is truncated, corrupt or for another hardware."""


class SimulationError(DspflightError):
    """The instruction stream cannot run: deadlock, buffer overflow, bad operand."""


class CheckpointError(DspflightError):
    """A model checkpoint is missing a tensor, has a wrong shape or a NaN."""


class ToolError(DspflightError):
    """An external tool (Yosys, an HDL simulator) is missing or failed."""


class OutputError(DspflightError):
    """An output cannot be written: a directory in the way, a full disk, no permission."""
