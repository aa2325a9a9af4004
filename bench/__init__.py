"""Benchmarks of the series' ROM against SeaBIOS, and of the validation loop (see run.py)."""
