"""Tuning a served model's Triton settings by measuring them (see runner.py)."""
