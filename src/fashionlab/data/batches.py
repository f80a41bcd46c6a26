"""Mini-batches over in-memory tensors: a seeded shuffle, then slices; no DataLoader workers
(the data is 55 MB in RAM, so worker processes would only add start-up and copy cost)."""

from __future__ import annotations

from collections.abc import Iterator

import torch


class BatchIterator:
    """Yield (images, labels) batches -- (images, labels, indices into the data) with
    `with_indices` -- and reshuffle with `generator` on every pass.

    With `world_size` > 1 (data-parallel training) every rank draws the same global order and
    batches from an identically seeded generator and keeps its own contiguous part of each
    global batch: per epoch the ranks' shards are disjoint and together cover the data, and a
    step sees the same global batch as a single process would.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        with_indices: bool = False,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.generator = generator
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.rank, self.world_size = rank, world_size
        self.with_indices = with_indices

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        for b in range(len(self)):
            start = b * self.batch_size
            if order is None and self.world_size == 1 and not self.with_indices:
                yield (
                    self.images[start : start + self.batch_size],
                    self.labels[start : start + self.batch_size],
                )
                continue
            if order is None:
                idx = torch.arange(start, min(start + self.batch_size, n))
            else:
                idx = order[start : start + self.batch_size]
            if self.world_size > 1:
                idx = idx.tensor_split(self.world_size)[self.rank]
            if self.with_indices:
                yield self.images[idx], self.labels[idx], idx
            else:
                yield self.images[idx], self.labels[idx]
