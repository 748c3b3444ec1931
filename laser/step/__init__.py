"""The LASeR step: one training step top to bottom (start reading at `laser/step/module.py`)."""
