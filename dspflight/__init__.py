"""The command line and the small Python API that strings the stages together."""
from importlib.metadata import version

__version__ = version("dspflight")
