"""laser: adaptive reward-model selection (LASeR, arXiv 2410.01735) for LLM preference training."""

__version__ = "0.1.0"
