"""Normalisation presets and batched augmentation on tensors (no PIL, no per-sample loop)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from fashionlab.errors import ConfigError

# Statistics of the 60k training images on [0, 1] (the studies quote them; tests recompute them).
DATASET_MEAN, DATASET_STD = 0.2860, 0.3530
# z-score epsilon on the [0,1] pixel scale: border pixels are almost always 0 in training, so
# their std is ~0; a tiny epsilon would turn one stray test pixel into a value of 1e6.
ZSCORE_EPS = 1e-2
PRESETS = ("dataset", "half", "unit", "zscore")


@dataclass
class Normalizer:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28): x/255, then (x - mean) / std.

    `mean`/`std` are scalars for the fixed presets and (28, 28) tensors for `zscore`.
    """

    preset: str
    mean: torch.Tensor
    std: torch.Tensor

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(torch.float32).div_(255.0) if images.dtype == torch.uint8 else images.float()
        if x.dim() == 3:
            x = x.unsqueeze(1)
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x - mean) / std

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean.clone(), "std": self.std.clone()}

    @classmethod
    def from_state(cls, preset: str, state: dict[str, torch.Tensor]) -> Normalizer:
        return cls(preset, state["mean"].float(), state["std"].float())


def make_normalizer(preset: str, train_images: torch.Tensor | None = None) -> Normalizer:
    """A normaliser for `preset`; `zscore` needs the training split's images (never val/test)."""
    if preset == "dataset":
        return Normalizer(preset, torch.tensor(DATASET_MEAN), torch.tensor(DATASET_STD))
    if preset == "half":
        return Normalizer(preset, torch.tensor(0.5), torch.tensor(0.5))
    if preset == "unit":
        return Normalizer(preset, torch.tensor(0.0), torch.tensor(1.0))
    if preset == "zscore":
        if train_images is None or len(train_images) == 0:
            raise ConfigError("normalization 'zscore' needs the training images")
        mean, std = _pixel_stats(train_images)
        return Normalizer(preset, mean.float(), (std + ZSCORE_EPS).float())
    raise ConfigError(f"unknown normalization {preset!r}; allowed: {', '.join(PRESETS)}")


def _pixel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel mean and (population) std on [0, 1] of uint8 images (N, 28, 28).

    Sums of pixel values and their squares, in float64 and in chunks: exact for uint8 input
    (the sums stay far below 2**53) and never holds a float64 copy of the whole set (54k train
    images would be 340 MB)."""
    total = torch.zeros(images.shape[1:], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for part in images.split(chunk):
        values = part.to(torch.float64)
        total += values.sum(dim=0)
        squares += (values * values).sum(dim=0)
    n = len(images)
    mean = total / n
    var = (squares / n - mean * mean).clamp_(min=0.0)  # rounding may give -1e-12 on flat pixels
    return mean / 255.0, var.sqrt() / 255.0


CROP_MODES = {"zero": "constant", "reflect": "reflect"}


def random_crop(
    x: torch.Tensor, padding: int, generator: torch.Generator, mode: str = "zero"
) -> torch.Tensor:
    """Pad by `padding` on each side, then cut a random 28x28 window per image (N, C, H, W)."""
    if mode not in CROP_MODES:
        raise ConfigError(f"unknown crop mode {mode!r}; allowed: {', '.join(CROP_MODES)}")
    if padding <= 0:
        return x
    n, c, h, w = x.shape
    if mode == "reflect" and padding >= min(h, w):
        raise ConfigError(f"reflect padding must be smaller than the image, got {padding}")
    padded = F.pad(x, (padding,) * 4, mode=CROP_MODES[mode])
    # Random numbers come from the (CPU) generator so runs are reproducible on any device; the
    # index tensors then move to the batch's device.
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def random_hflip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_erasing(
    x: torch.Tensor,
    generator: torch.Generator,
    p: float = 0.5,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
) -> torch.Tensor:
    """Zero a random rectangle (area fraction in `scale`, aspect in `ratio`) with probability p.

    After normalisation 0 is the mean intensity, as in Zhong et al.'s random erasing."""
    if p <= 0:
        return x
    n, _, h, w = x.shape
    area = torch.empty(n).uniform_(*scale, generator=generator) * h * w
    log_ratio = torch.empty(n).uniform_(
        torch.log(torch.tensor(ratio[0])).item(),
        torch.log(torch.tensor(ratio[1])).item(),
        generator=generator,
    )
    aspect = torch.exp(log_ratio)
    eh = torch.sqrt(area * aspect).round().clamp(1, h).long()
    ew = torch.sqrt(area / aspect).round().clamp(1, w).long()
    top = (torch.rand(n, generator=generator) * (h - eh + 1)).long()
    left = (torch.rand(n, generator=generator) * (w - ew + 1)).long()
    apply = torch.rand(n, generator=generator) < p
    ys, xs = torch.arange(h)[None, :], torch.arange(w)[None, :]
    in_rows = (ys >= top[:, None]) & (ys < (top + eh)[:, None])  # (N, H)
    in_cols = (xs >= left[:, None]) & (xs < (left + ew)[:, None])  # (N, W)
    mask = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]
    return x.masked_fill(mask[:, None].to(x.device), 0.0)


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    crop_padding: int = 0,
    crop_mode: str = "zero",
    hflip: bool = False,
    erasing: float = 0.0,
    flip_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply the configured augmentations to a normalised float batch (N, 1, 28, 28).
    With `hflip`, `flip_mask` (bool, one per image) says which images to mirror; without it
    each is mirrored with probability 1/2."""
    x = random_crop(x, crop_padding, generator, crop_mode)
    if hflip and flip_mask is not None:
        x = torch.where(flip_mask.to(x.device)[:, None, None, None], x.flip(-1), x)
    elif hflip:
        x = random_hflip(x, generator)
    return random_erasing(x, generator, erasing)


def shrink(x: torch.Tensor, size: int) -> torch.Tensor:
    """A batch (N, C, H, W) resampled to size x size by area averaging (each output pixel the
    mean of the input pixels it covers), for training on low-resolution images first."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="area")


def tta_views(x: torch.Tensor, tta_flip: bool, tta_shift: bool) -> list[tuple[torch.Tensor, float]]:
    """The test-time-augmentation views of a normalised batch (N, C, H, W) and their weights:
    `x` itself, its mirror image (`tta_flip`), and each of those moved one pixel up-left and
    one down-right at half weight (`tta_shift`)."""
    views = [(x, 1.0)]
    if tta_flip:
        views.append((x.flip(-1), 1.0))
    if tta_shift:
        views += [(translate(v, d, d), w / 2) for v, w in views for d in (-1, 1)]
    return views


def tta_average(views: list[tuple[Any, float]], logits_of: Callable[[Any], Any]) -> Any:
    """The weighted mean of `logits_of(view)` over `tta_views`' output (torch or NumPy)."""
    return sum(w * logits_of(v) for v, w in views) / sum(w for _, w in views)


def translate(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Images (N, C, H, W) moved by (dy, dx) pixels; uncovered pixels are 0, as the zero-padded
    random crop of training fills them."""
    h, w = x.shape[-2:]
    p = max(abs(dy), abs(dx))
    padded = F.pad(x, (p, p, p, p))
    return padded[..., p - dy : p - dy + h, p - dx : p - dx + w]
