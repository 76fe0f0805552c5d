"""Benchmarks: each module prints one JSON object and writes it to bench/results/<name>.json.

They measure; they never assert. `make bench` runs all of them (see docs/runtime.md).
"""
