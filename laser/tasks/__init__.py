"""Tasks: one file per task (loading, prompt format, answer extraction, metric) and their shared helpers."""
