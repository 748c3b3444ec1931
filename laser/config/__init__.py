"""Configuration: checks of every knob, model checks before training, instantiation."""
