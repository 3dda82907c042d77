"""Benchmarks: measured figures, never timed assertions in tests. Run with ``make benchmark``."""
