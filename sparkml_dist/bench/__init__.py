"""Benchmarks (not tests): every algorithm beside its baselines on the same data and cores, reported as ratios."""
