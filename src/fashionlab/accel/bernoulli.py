"""Dropout with PyTorch's own random mask, drawn about 6x faster (see bernoulli.c).

PyTorch's CPU dropout is `x * empty_like(x).bernoulli_(1 - p).div_(1 - p)`, and its
`bernoulli_` draws one element at a time (timings: docs/performance.md). `dropout` below is
that same formula with the mask drawn by the compiled kernel from the default generator's
Mersenne Twister state, so the mask, the output, the gradient and the generator's state
afterwards are bit-identical to `torch.nn.functional.dropout`: seeded runs and their
checkpoints reproduce exactly with or without the kernel.

The generator state crosses into C through `torch.get_rng_state()` bytes (PyTorch's
CPUGeneratorImplState layout). Before the kernel is first trusted, `_kernel` checks it against
`Tensor.bernoulli_` on a mask long enough to refill the twister twice, generator state
included; a PyTorch whose draws or layout differ fails that check and keeps PyTorch's path.
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np
import torch
from torch.profiler import record_function

from fashionlab.accel.build import checked_kernel_status, load_kernel

_DTYPES = (torch.bfloat16, torch.float32)
# CPUGeneratorImplState: int64 seed, int32 left, int32 seeded, uint64 next, uint64 state[624],
# three doubles and an int32 of the legacy normal cache, then the float cache.
_STATE_BYTES = 5056
_LEFT, _NEXT, _WORDS, _N = 8, 16, 24, 624


def _draw(library: ctypes.CDLL, mask: torch.Tensor, p: float) -> None:
    """Fill the dense CPU tensor `mask` with Bernoulli(p) 1s and 0s in memory order, advancing
    the default generator exactly as `mask.bernoulli_(p)` would."""
    raw = torch.get_rng_state().numpy().copy()
    words = np.frombuffer(raw, np.uint64, _N, _WORDS).astype(np.uint32)
    left = np.frombuffer(raw, np.int32, 1, _LEFT).copy()
    next_ = np.frombuffer(raw, np.uint64, 1, _NEXT).astype(np.uint32)
    library.bernoulli_fill(
        words.ctypes.data, left.ctypes.data, next_.ctypes.data, p,
        mask.data_ptr(), mask.numel(), int(mask.dtype == torch.bfloat16),
    )  # fmt: skip
    raw[_WORDS : _WORDS + 8 * _N] = words.astype(np.uint64).view(np.uint8)
    raw[_LEFT : _LEFT + 4] = left.view(np.uint8)
    raw[_NEXT : _NEXT + 8] = next_.astype(np.uint64).view(np.uint8)
    torch.set_rng_state(torch.from_numpy(raw))


@functools.cache
def _kernel() -> ctypes.CDLL | None:
    """The library, declared and checked against PyTorch's own draws (once per process)."""
    library = load_kernel("bernoulli")
    if library is None:
        return None
    library.bernoulli_fill.argtypes = [ctypes.c_void_p] * 3 + [
        ctypes.c_double, ctypes.c_void_p, ctypes.c_long, ctypes.c_int,
    ]  # fmt: skip
    library.bernoulli_fill.restype = None
    if torch.get_rng_state().numel() != _STATE_BYTES or not _matches_pytorch(library):
        return None  # bernoulli_status says why
    return library


def _matches_pytorch(library: ctypes.CDLL) -> bool:
    saved = torch.get_rng_state()
    try:
        checks = []
        for dtype in _DTYPES:
            torch.manual_seed(20261202)
            start = torch.get_rng_state()
            theirs = torch.empty(1500, dtype=dtype).bernoulli_(0.7)  # 3000 draws: 2 refills
            their_state = torch.get_rng_state()
            torch.set_rng_state(start)
            ours = torch.empty(1500, dtype=dtype)
            _draw(library, ours, 0.7)
            checks.append(torch.equal(ours, theirs))
            checks.append(torch.equal(torch.get_rng_state(), their_state))
        return all(checks)
    finally:
        torch.set_rng_state(saved)


def bernoulli_status() -> str:
    """One line for run metadata: whether dropout masks come from the compiled kernel."""
    return checked_kernel_status(
        "bernoulli", _kernel, "its draws differ from this PyTorch's bernoulli_"
    )


# Below this many elements PyTorch's own draw is quicker than the state's round trip through
# get_rng_state/set_rng_state (about 17 us here; 1,024 elements: 10 us for PyTorch).
_MIN_ELEMENTS = 4096


def _applies(mask: torch.Tensor) -> bool:
    """A dense bf16/fp32 CPU tensor (its TensorIterator order is its memory order) large
    enough to be worth it."""
    return (
        mask.device.type == "cpu"
        and mask.dtype in _DTYPES
        and mask.numel() >= _MIN_ELEMENTS
        and (mask.is_contiguous() or mask.is_contiguous(memory_format=torch.channels_last))
        and _kernel() is not None
    )


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """`torch.nn.functional.dropout(x, p, training)` (not in place), bit for bit, with the
    mask drawn by the compiled kernel where it applies; PyTorch's own dropout elsewhere."""
    if not training or p == 0 or x.numel() == 0 or p == 1:
        return torch.nn.functional.dropout(x, p, training)
    # Mirrors ATen's _dropout_impl: noise = empty_like(x).bernoulli_(1 - p).div_(1 - p); x * noise.
    noise = torch.empty_like(x)
    if not _applies(noise):
        return torch.nn.functional.dropout(x, p, training)
    with record_function("fashionlab::bernoulli"):  # named in profiles
        _draw(_kernel(), noise, 1 - p)
    noise.div_(1 - p)
    return x * noise


class KernelDropout(torch.nn.Module):
    """The training view's stand-in for an `nn.Dropout`: its training-mode mask drawn by
    `dropout` above (the same numbers, a faster mask); an in-place dropout runs as it is."""

    def __init__(self, drop: torch.nn.Dropout) -> None:
        super().__init__()
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop.inplace:
            return self.drop(x)
        return dropout(x, self.drop.p, self.drop.training)
