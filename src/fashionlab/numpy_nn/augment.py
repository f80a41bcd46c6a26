"""Whole-batch image augmentation for flat inputs: random shifts and horizontal flips.

An MLP sees pixels at fixed positions, so it cannot learn that a shirt one pixel to the left is
still a shirt; showing it shifted and mirrored copies during training is the cheapest
regulariser that adds that knowledge. Everything is vectorised over the batch (one fancy-index
gather), so it costs a small fraction of the batch's forward and backward pass.

Pixels shifted in from outside the image take `fill[i, j]`, the value of *that destination
pixel* in an empty image. With per-pixel z-scoring the background value differs per pixel, so
`fill` is a full image: `NumpyMLP` passes the per-feature minimum of the training inputs, which
is the normalised background (0 before normalisation) for Fashion-MNIST. Shifted content keeps
its values, which is exact for one global mean/std and a close approximation for per-pixel
statistics (neighbouring pixels have similar statistics).
"""

from __future__ import annotations

import numpy as np


class BatchAugmenter:
    """Random shift of up to `shift` pixels on each axis and, with `flip`, a left-right mirror
    with probability 1/2, drawn independently per sample."""

    def __init__(self, image_shape: tuple[int, int], shift: int, flip: bool, fill: np.ndarray):
        self.height, self.width = image_shape
        self.shift = int(shift)
        self.flip = bool(flip)
        self.fill = np.asarray(fill).reshape(self.height, self.width)
        self._rows = np.arange(self.height)
        self._cols = np.arange(self.width)

    @property
    def active(self) -> bool:
        return self.shift > 0 or self.flip

    def __call__(self, xb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A new (batch, height*width) array of augmented copies of `xb`."""
        n = len(xb)
        images = xb.reshape(n, self.height, self.width)
        if self.shift:
            dy = rng.integers(-self.shift, self.shift + 1, size=n)
            dx = rng.integers(-self.shift, self.shift + 1, size=n)
        else:
            dy = dx = np.zeros(n, dtype=np.int64)
        # Output pixel (i, j) reads source pixel (i + dy, j + dx) of the (maybe mirrored) image.
        src_rows = self._rows[None, :] + dy[:, None]  # (n, H)
        src_cols = self._cols[None, :] + dx[:, None]  # (n, W)
        if self.flip:
            mirrored = rng.random(n) < 0.5
            src_cols = np.where(mirrored[:, None], self.width - 1 - src_cols, src_cols)
        row_ok = (src_rows >= 0) & (src_rows < self.height)
        col_ok = (src_cols >= 0) & (src_cols < self.width)
        gathered = images[
            np.arange(n)[:, None, None],
            np.clip(src_rows, 0, self.height - 1)[:, :, None],
            np.clip(src_cols, 0, self.width - 1)[:, None, :],
        ]
        inside = row_ok[:, :, None] & col_ok[:, None, :]
        out = np.where(inside, gathered, self.fill[None])
        return out.reshape(n, -1).astype(xb.dtype, copy=False)


def square_image_shape(n_features: int) -> tuple[int, int]:
    """(side, side) for a square image of `n_features` pixels; ValueError otherwise."""
    side = int(round(n_features**0.5))
    if side * side != n_features:
        raise ValueError(f"{n_features} features are not a square image")
    return side, side
