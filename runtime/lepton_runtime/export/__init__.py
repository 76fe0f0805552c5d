"""Artifacts on disk: model directories (state dict + TorchScript + model card), ONNX, and
Triton model repositories."""
