"""Evaluation tools: pairwise judges and the win-rate command line (`python -m laser.evaluation.winrate`)."""
