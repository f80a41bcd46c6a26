"""Trainable arrays and the single contiguous buffer they live in.

A `Parameter` is an array plus its gradient, like micrograd's `Value` but for a whole weight
matrix. `flatten_parameters` moves a model's parameters into one flat data buffer and one flat
gradient buffer (each parameter becomes a reshaped view). That lets an optimizer update the whole
model with a handful of vectorised NumPy calls instead of a handful per parameter, and lets early
stopping snapshot/restore the weights with one copy.

Rule that keeps the views valid: change parameter values in place (`np.copyto(p.data, new)`),
never rebind `p.data` to a new array after the optimizer has been built.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Parameter:
    """A trainable array `data` and its gradient `grad` (same shape and dtype)."""

    __slots__ = ("data", "grad", "name")

    def __init__(self, data: np.ndarray, name: str = "") -> None:
        self.data = data
        self.grad = np.zeros_like(data)
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def size(self) -> int:
        return int(self.data.size)

    def __repr__(self) -> str:
        return f"Parameter(name={self.name!r}, shape={self.data.shape}, dtype={self.data.dtype})"


def flatten_parameters(params: Sequence[Parameter]) -> tuple[np.ndarray, np.ndarray]:
    """Move `params` into one contiguous data buffer and one gradient buffer, in order.

    Each parameter's `data`/`grad` is rebound to a view of the flat buffers (values are kept,
    gradients zeroed). Returns `(flat_data, flat_grad)`.
    """
    if not params:
        empty = np.zeros(0, dtype=np.float32)
        return empty, empty.copy()
    dtype = params[0].data.dtype
    if any(p.data.dtype != dtype for p in params):
        raise ValueError("all parameters must share one dtype to be flattened")
    total = sum(p.size for p in params)
    flat_data = np.empty(total, dtype=dtype)
    flat_grad = np.zeros(total, dtype=dtype)
    offset = 0
    for p in params:
        n = p.size
        view = flat_data[offset : offset + n].reshape(p.shape)
        view[...] = p.data
        p.data = view
        p.grad = flat_grad[offset : offset + n].reshape(p.shape)
        offset += n
    return flat_data, flat_grad


def contiguous_buffers(params: Sequence[Parameter]) -> tuple[np.ndarray, np.ndarray] | None:
    """The flat `(data, grad)` buffers if `params` are exactly, in order, the views made by
    `flatten_parameters`; otherwise None (the caller then works parameter by parameter)."""
    if not params:
        return None
    data_base = params[0].data.base
    grad_base = params[0].grad.base
    if data_base is None or grad_base is None or data_base.ndim != 1 or grad_base.ndim != 1:
        return None
    if sum(p.size for p in params) != data_base.size or data_base.size != grad_base.size:
        return None
    expected_data = data_base.ctypes.data
    expected_grad = grad_base.ctypes.data
    step = data_base.itemsize
    for p in params:
        if p.data.base is not data_base or p.grad.base is not grad_base:
            return None
        if not (p.data.flags.c_contiguous and p.grad.flags.c_contiguous):
            return None
        if p.data.ctypes.data != expected_data or p.grad.ctypes.data != expected_grad:
            return None
        expected_data += p.size * step
        expected_grad += p.size * step
    return data_base, grad_base
