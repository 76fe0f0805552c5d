"""Fold each batch norm into the convolution before it, for weight sharing.

In eval mode BatchNorm2d is a per-channel affine map, so `bn(conv(x))` equals a conv whose
output channel c is scaled by gamma_c / sqrt(var_c + eps), followed by the shift
beta_c - mean_c * scale_c. The folded model keeps its BatchNorm2d modules (the architecture the
card rebuilds stays the same) but as the identity plus that shift: weight 1, mean 0,
var 1 - eps. Those constants cost nothing once the compact file is entropy-coded, where the
four float32 statistics per channel were a quarter of a 95%-sparse LeptonNet's model.lpc.
Pruned weights stay exactly zero (0 * scale = 0), and the codebooks are then clustered on the
weights the model really multiplies by.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn

from lepton_runtime.compress.prune import make_permanent


def conv_norm_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """(conv, batch norm) pairs that follow each other in a Sequential: the norm sees only the
    conv's output, so folding cannot change anything else."""
    pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = []
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for first, second in itertools.pairwise(module.children()):
            if (
                isinstance(first, nn.Conv2d)
                and isinstance(second, nn.BatchNorm2d)
                and second.affine
                and second.track_running_stats
                and first.out_channels == second.num_features
            ):
                pairs.append((first, second))
    return pairs


@torch.no_grad()
def fold_batch_norms(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with every foldable batch norm folded into its conv."""
    folded = copy.deepcopy(model).eval()
    make_permanent(folded)
    for conv, norm in conv_norm_pairs(folded):
        assert norm.running_mean is not None and norm.running_var is not None
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        conv.weight.mul_(scale.reshape(-1, *([1] * (conv.weight.dim() - 1))))
        shift = norm.bias - norm.running_mean * scale
        if conv.bias is not None:
            shift += conv.bias * scale
            conv.bias.zero_()
        norm.bias.copy_(shift)
        norm.weight.fill_(1.0)
        norm.running_mean.zero_()
        norm.running_var.fill_(1.0 - norm.eps)
    return folded
