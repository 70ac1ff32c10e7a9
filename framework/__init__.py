"""Declarative long-sequence training: Ulysses sequence parallelism + the ALST memory stack on DeepSpeed ZeRO."""
