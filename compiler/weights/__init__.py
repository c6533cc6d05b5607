"""A model's weights on their way to HBM: a checkpoint is loaded (`checkpoint`),
compressed as a profile says (`profile` holds the profile, `compress` the
algorithm, `quantize` its per-op pruning and quantization, `float_model` the
float forward pass it calibrates on), kept as a `compressed` model, and laid
out into the HBM image a compiled program reads (`pack`).
"""
