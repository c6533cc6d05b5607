"""Published figures dspflight compares its predictions with, each with its
source (FACTS.md). They are never an input to the model: reports print them
next to what the model predicts, and tests check the gap is explained.
"""
from __future__ import annotations

REFERENCE_GPU = "v100s"        # FlightLLM states its efficiency ratios against the V100S

# FlightLLM on the U280, LLaMA2-7B, batch 1 ("Headline results to reproduce").
DECODE = {"decode_tokens_per_s": 55.0, "hbm_bandwidth_utilization": 0.659,
          "hbm_bandwidth_utilization_unfused": 0.356,
          "source": "FlightLLM (FPGA 2024), measured on the Alveo U280, LLaMA2-7B batch 1; "
                    "utilization without always-on-chip decode 35.6 %"}
ENERGY = {"tokens_per_joule_vs_v100s": {"naive": 6.0, "vllm": 5.5}, "board_power_w": 45.0,
          "source": "FlightLLM (FPGA 2024): energy efficiency vs V100S; board power implied by its figures"}
COST = {"tokens_per_s_per_dollar_vs_v100s": 1.8,       # prices V100S $12K, A100 $17K, U280 $8K
        "source": "FlightLLM (FPGA 2024): cost efficiency vs V100S, average over its workloads"}
STORAGE = {"separate_bytes": 1.67e12, "shared_bytes": 3.25e9,
           "source": "FlightLLM §5.2, LLaMA2-7B on the U280, lengths 1-2048 on 3 SLRs"}
UTILIZATION = {"lut": 574_000, "ff": 943_000, "bram36": 1252, "uram": 792, "dsp": 6345,
               "source": "FlightLLM (FPGA 2024) on the U280: 574k LUT, 943k FF, 1,252 BRAM, 792 URAM, "
                         "6,345 DSP (6,144 MPE + 201 SFU); the whole design"}
