"""Reward models: one file per RM kind, the pool the bandit chooses from, and RM errors."""
