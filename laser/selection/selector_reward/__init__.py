"""What a selector learns from (`selector_reward` configs): one file per reward, each with its normaliser."""
