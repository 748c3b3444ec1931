"""Sweep reports: `python -m laser.report <sweep dir>` reads the jobs, writes tables and plots."""
