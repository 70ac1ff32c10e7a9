"""Hydra sweeper plugin `hydra/sweeper=max_seqlen`: the longest sequence that trains (see max_seqlen_sweeper)."""
