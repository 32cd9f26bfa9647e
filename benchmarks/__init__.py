"""Benchmark scripts (`python benchmarks/train_step.py ...`); a package so that they import each other by name."""
