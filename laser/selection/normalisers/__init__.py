"""Reward normalisers: a selector's raw reward mapped to [0, 1] (one file per rule; `reward_normaliser` configs)."""
