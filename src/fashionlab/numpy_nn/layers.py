"""Layers with hand-written backward passes: `Dense` (affine) and inverted `Dropout`.

Every layer has `forward(x, training)`, `backward(grad_out)` and `parameters()`. With
`training=True` a layer keeps what its backward needs (Dense: its input; Dropout: its mask);
with `training=False` it keeps nothing, so inference on a large array holds no references to it.

Gradients are *written*, not accumulated: each `backward` overwrites `param.grad` with the
gradient of the current batch. That saves a full pass over the weights per step (no
`grad += ...`), and is the only mode the training loop needs; `Optimizer.zero_grad()` still
exists for PyTorch-style code and clears stale values.
"""

from __future__ import annotations

import numpy as np

from fashionlab.errors import ConfigError
from fashionlab.numpy_nn.initializers import get_initializer
from fashionlab.numpy_nn.parameter import Parameter


class Dense:
    """y = x @ W + b with W of shape (in_features, out_features).

    W is stored as (in, out) -- the transpose of PyTorch's `Linear.weight` -- so the forward
    pass is a plain row-major GEMM with no transpose.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        init: str = "he",
        rng: np.random.Generator | None = None,
        dtype: np.dtype | type = np.float32,
    ) -> None:
        rng = np.random.default_rng() if rng is None else rng
        weight = get_initializer(init)(in_features, out_features, rng).astype(dtype)
        self.weight = Parameter(weight, "weight")
        self.bias = Parameter(np.zeros(out_features, dtype=dtype), "bias")
        self.in_features = in_features
        self.out_features = out_features
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self._x = x if training else None
        out = x @ self.weight.data
        out += self.bias.data
        return out

    def backward(self, grad_out: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Write dL/dW and dL/db; return dL/dx (None when `need_input_grad` is False, which
        skips the largest GEMM of the first layer -- the input needs no gradient in training)."""
        x = self._x
        if x is None:
            raise RuntimeError("Dense.backward() called without a forward(training=True)")
        np.matmul(x.T, grad_out, out=self.weight.grad)
        np.sum(grad_out, axis=0, out=self.bias.grad)
        if not need_input_grad:
            return None
        return grad_out @ self.weight.data.T

    def parameters(self) -> list[Parameter]:
        return [self.weight, self.bias]

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features})"


class Dropout:
    """Inverted dropout: in training, zero each unit with probability p and scale the kept ones
    by 1/(1-p), so the expected activation is unchanged and inference is the identity.

    The mask of the last training forward is kept for backward (same units zeroed, same scale).
    For tests, set `fixed_mask` to a boolean/0-1 "keep" array of the input's shape; it is then
    used instead of a random draw until reset to None.
    """

    def __init__(self, p: float, rng: np.random.Generator | None = None) -> None:
        if not (isinstance(p, (int, float)) and 0.0 <= p < 1.0):
            raise ConfigError(f"dropout must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = np.random.default_rng() if rng is None else rng
        self.fixed_mask: np.ndarray | None = None
        self._mask: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if not training or self.p == 0.0:
            self._mask = None
            return x
        if self.fixed_mask is not None:
            keep = np.asarray(self.fixed_mask)
            if keep.shape != x.shape:
                raise ValueError(f"fixed_mask has shape {keep.shape}, input has {x.shape}")
            keep = keep != 0
        else:
            # Draw in the input's precision: float32 uniforms are half the work of float64.
            keep = self.rng.random(x.shape, dtype=x.dtype) >= self.p
        mask = keep.astype(x.dtype)
        mask /= 1.0 - self.p  # same order of operations as PyTorch (mask / (1 - p))
        self._mask = mask
        return x * mask

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._mask is None:
            return grad_out
        return grad_out * self._mask

    @property
    def mask(self) -> np.ndarray | None:
        """The scaled mask (0 or 1/(1-p)) of the last training forward; None after eval."""
        return self._mask

    def parameters(self) -> list[Parameter]:
        return []

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"
