"""A run's folder and files: claiming and resuming it, results, checkpoints, RNG states, the test kill switch."""
