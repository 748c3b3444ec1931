"""The policy being trained: a causal LM with a LoRA adapter, its reference merge, warm start and samplers."""
