"""Element-wise activations with hand-written derivatives.

Each activation is a tiny layer: `forward(x, training)` computes the output and keeps what the
derivative needs; `backward(grad_out)` returns dLoss/dx = grad_out * f'(x). Nothing here
mutates its input, so a caller may reuse arrays freely.

Derivative conventions match PyTorch so the gradient tests can compare exactly: ReLU'(0) = 0,
Leaky-ReLU'(0) = slope.
"""

from __future__ import annotations

import math

import numpy as np

from fashionlab.errors import ConfigError


class Activation:
    """Base class: no parameters, so `parameters()` is empty."""

    name = "identity"

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def parameters(self) -> list:
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ReLU(Activation):
    """max(x, 0). Keeps the output: x > 0 exactly where the output is > 0."""

    name = "relu"

    def __init__(self) -> None:
        self._out: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        out = np.maximum(x, 0)
        self._out = out if training else None
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * (_saved(self._out, self) > 0)


class LeakyReLU(Activation):
    """x for x > 0, slope * x otherwise (slope 0.01, PyTorch's default)."""

    name = "leaky_relu"

    def __init__(self, slope: float = 0.01) -> None:
        if not 0.0 <= slope < 1.0:
            raise ConfigError(f"leaky-relu slope must be in [0, 1), got {slope}")
        self.slope = float(slope)
        self._positive: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        # max(x, slope*x) equals the piecewise definition because 0 <= slope < 1.
        out = np.maximum(x, x * self.slope)
        self._positive = (x > 0) if training else None
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        positive = _saved(self._positive, self)
        return np.where(positive, grad_out, grad_out * self.slope)

    def __repr__(self) -> str:
        return f"LeakyReLU(slope={self.slope})"


class Tanh(Activation):
    """tanh(x); derivative 1 - tanh(x)^2 from the kept output."""

    name = "tanh"

    def __init__(self) -> None:
        self._out: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        out = np.tanh(x)
        self._out = out if training else None
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        out = _saved(self._out, self)
        return grad_out * (1 - out * out)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


class GELU(Activation):
    """GELU, tanh approximation (Hendrycks & Gimpel 2016):

        gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)

    This is exactly PyTorch's `gelu(x, approximate='tanh')`; it differs from the exact
    x * Phi(x) form by < 1e-3 and needs no erf (NumPy has none without SciPy).
    Derivative: 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2), t = tanh(u).
    """

    name = "gelu"

    def __init__(self) -> None:
        self._x: np.ndarray | None = None
        self._t: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        t = np.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * (x * x * x)))
        out = 0.5 * x * (1 + t)
        if training:
            self._x, self._t = x, t
        else:
            self._x = self._t = None
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x = _saved(self._x, self)
        t = self._t
        du_dx = _SQRT_2_OVER_PI * (1 + (3 * _GELU_C) * (x * x))
        local = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du_dx
        return grad_out * local


ACTIVATIONS: dict[str, type[Activation]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "tanh": Tanh,
    "gelu": GELU,
}


def canonical_activation_name(name: str) -> str:
    """'Leaky-ReLU' -> 'leaky_relu'; ConfigError for names we do not implement."""
    key = name.strip().lower().replace("-", "_") if isinstance(name, str) else name
    if key == "leakyrelu":
        key = "leaky_relu"
    if key not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return key


def make_activation(name: str) -> Activation:
    """A fresh activation layer by name ('relu', 'leaky_relu', 'tanh', 'gelu')."""
    return ACTIVATIONS[canonical_activation_name(name)]()


def _saved(value: np.ndarray | None, layer: Activation) -> np.ndarray:
    if value is None:
        raise RuntimeError(f"{layer!r}.backward() called without a forward(training=True)")
    return value
