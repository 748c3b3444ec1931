"""One exception type for bad user input, so the entry point can print it as one clear line."""


class LaserConfigError(ValueError):
    """Bad user input: a config value, a data file or a model path. The message is one line that
    names the bad value and the valid choices."""
