"""Data-aware and identity initialisations of a model's convolutions (speed-run tricks after
KellerJordan/cifar10-airbench), applied to a freshly built model before training starts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Patches from this many training images estimate the whitening: 2,000 28x28 images give
# about 1.6 million patches, plenty for a 9x9 covariance, in well under a second.
WHITENING_IMAGES = 2000
# Added to each eigenvalue before the inverse square root, so near-constant patch directions
# are not blown up into noise amplifiers (airbench's value, for inputs of unit scale).
WHITENING_EPS = 5e-4


def _convolutions(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


@torch.no_grad()
def whiten_first_conv(model: nn.Module, images: torch.Tensor) -> int:
    """Set the model's first convolution to whiten its input patches and return how many of
    its output channels were set.

    `images` are normalised training images (N, C, H, W). The eigenvectors of their patch
    covariance, scaled by 1/sqrt(eigenvalue + eps) and largest eigenvalue first, become
    filters in +/- pairs (so a following ReLU keeps both signs of each component); output
    channels beyond twice the patch size keep their initialisation."""
    convs = _convolutions(model)
    if not convs:
        raise ValueError("whiten_init needs a model with a convolution; this one has none")
    conv = convs[0]
    if conv.groups != 1 or conv.in_channels != images.shape[1]:
        raise ValueError(
            f"whiten_init: the first convolution takes {conv.in_channels} channels in "
            f"{conv.groups} groups; it must take the images' {images.shape[1]} in one group"
        )
    sample = images[:WHITENING_IMAGES].float()
    patches = F.unfold(
        sample, conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride
    )  # (N, C*kh*kw, positions)
    patches = patches.transpose(1, 2).reshape(-1, patches.shape[1]).double()
    patches -= patches.mean(0)
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)  # largest first
    filters = (eigenvectors / torch.sqrt(eigenvalues.clamp(min=0) + WHITENING_EPS)).T
    pairs = min(conv.out_channels // 2, len(filters))
    signed = torch.stack([filters[:pairs], -filters[:pairs]], dim=1).reshape(2 * pairs, -1)
    weight = conv.weight
    weight[: 2 * pairs] = signed.reshape(2 * pairs, *weight.shape[1:]).to(weight.dtype)
    return 2 * pairs


@torch.no_grad()
def dirac_init(model: nn.Module, skip_first: bool = True) -> int:
    """Start every square, odd-sized, ungrouped convolution (after the first, with
    `skip_first`) as the identity on its first min(in, out) output channels; return how many
    convolutions were set. A residual block then starts near a pass-through."""
    convs = _convolutions(model)[1 if skip_first else 0 :]
    count = 0
    for conv in convs:
        kh, kw = conv.kernel_size
        if kh != kw or kh % 2 == 0 or conv.groups != 1:
            continue
        weight = conv.weight
        nn.init.dirac_(weight[: min(conv.in_channels, conv.out_channels)])
        count += 1
    return count
