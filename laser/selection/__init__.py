"""Choosing reward models: every selector (bandits and baselines), what the bandit sees, the reward normaliser."""
