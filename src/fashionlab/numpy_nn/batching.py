"""Mini-batches: a fresh random order every epoch, gathered into one reusable buffer.

`np.take(X, idx, axis=0, out=buf)` copies the 64 rows of a batch straight into a preallocated
(batch, features) array: no per-batch allocation, and the rows land in cache just before the
first GEMM reads them (cheaper, on this class of machine, than materialising a shuffled copy of
the whole training set each epoch and slicing it).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class MiniBatcher:
    """Yields `(x_batch, y_batch)` views for one epoch per `epoch(rng)` call.

    The x view is only valid until the next batch is produced (the buffer is reused); the last
    batch is smaller when batch_size does not divide n (no sample is dropped).
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, batch_size: int) -> None:
        if len(X) != len(y):
            raise ValueError("X and y differ in length")
        self.X, self.y = X, y
        self.batch_size = int(batch_size)
        self._xbuf = np.empty((min(self.batch_size, len(X)),) + X.shape[1:], dtype=X.dtype)

    def __len__(self) -> int:
        return -(-len(self.X) // self.batch_size)

    def epoch(self, rng: np.random.Generator | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches in a random order drawn from `rng` (in order when rng is None)."""
        n = len(self.X)
        order = np.arange(n) if rng is None else rng.permutation(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            xb = np.take(self.X, idx, axis=0, out=self._xbuf[: len(idx)])
            yield xb, self.y[idx]
