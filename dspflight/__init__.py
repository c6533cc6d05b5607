"""The command line and the small Python API that strings the stages together."""
