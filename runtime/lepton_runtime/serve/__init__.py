"""Serving: the real Triton server from the nvidia-pytriton wheel, run locally."""
