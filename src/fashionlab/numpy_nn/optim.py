"""Optimizers with PyTorch's interface: `Opt(params, lr, ...)`, `zero_grad()`, `step()`,
`parameters()`; the update rules match `torch.optim.SGD` / `torch.optim.Adam` (no weight decay)
to rounding, which the tests check step by step.

Speed: when the parameters live in one flat buffer (see `parameter.flatten_parameters`, which
`network.MLP` does), each update is a few in-place NumPy calls over that buffer instead of a few
per parameter, and every call writes into preallocated state (`out=`), allocating nothing.
All scalars are Python floats, so float32 arrays stay float32 (NEP 50).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from fashionlab.errors import ConfigError
from fashionlab.numpy_nn.parameter import Parameter, contiguous_buffers


class Optimizer:
    """Base class: holds the parameters and a list of (data, grad) 1-D views to update."""

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        self._params = list(params)
        if not self._params:
            raise ConfigError("optimizer got an empty parameter list")
        _check_lr(lr)
        self.lr = float(lr)
        flat = contiguous_buffers(self._params)
        if flat is not None:
            self._groups: list[tuple[np.ndarray, np.ndarray]] = [flat]
        else:
            self._groups = [(p.data.reshape(-1), p.grad.reshape(-1)) for p in self._params]
            pairs = zip(self._groups, self._params, strict=True)
            if any(not np.shares_memory(d, p.data) for (d, _), p in pairs):
                raise ValueError("optimizer needs C-contiguous parameter arrays")
        self._scratch = [np.empty_like(d) for d, _ in self._groups]
        self.steps = 0

    def parameters(self) -> list[Parameter]:
        return list(self._params)

    def zero_grad(self) -> None:
        for _, grad in self._groups:
            grad.fill(0)

    def step(self) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Mini-batch gradient descent, optionally with (heavy-ball) momentum, as in PyTorch:
    buf = momentum * buf + grad;  p -= lr * buf   (plain SGD when momentum == 0)."""

    def __init__(self, params: Iterable[Parameter], lr: float, momentum: float = 0.0) -> None:
        super().__init__(params, lr)
        if not (isinstance(momentum, (int, float)) and 0.0 <= momentum < 1.0):
            raise ConfigError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self._buffers = [np.zeros_like(d) for d, _ in self._groups] if self.momentum else []

    def step(self) -> None:
        self.steps += 1
        lr = self.lr
        for i, (data, grad) in enumerate(self._groups):
            tmp = self._scratch[i]
            direction = grad
            if self.momentum:
                buf = self._buffers[i]
                buf *= self.momentum
                buf += grad
                direction = buf
            np.multiply(direction, lr, out=tmp)
            data -= tmp


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with PyTorch's epsilon placement:

        m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
        p -= lr / (1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + eps)

    Implementation: we keep M = m/(1-b1) and V = v/(1-b2) instead, so the moment updates are
    `M = b1 M + g` and `V = b2 V + g^2` (no multiply of g), and fold every scalar into two
    constants. Substituting gives the identical update

        p -= c * M / (sqrt(V) + e),  k = sqrt((1-b2)/(1-b2^t)),  c = lr (1-b1) / ((1-b1^t) k),
        e = eps / k

    in 10 array passes per step instead of 12 -- the optimizer is a large share of an epoch,
    since it touches every weight once per mini-batch.
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params, lr)
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ConfigError(f"Adam betas must be in [0, 1), got {betas!r}")
        if not eps > 0:
            raise ConfigError(f"Adam eps must be > 0, got {eps!r}")
        self.betas = (float(b1), float(b2))
        self.eps = float(eps)
        self._m = [np.zeros_like(d) for d, _ in self._groups]  # M = m / (1 - b1)
        self._v = [np.zeros_like(d) for d, _ in self._groups]  # V = v / (1 - b2)

    def step(self) -> None:
        self.steps += 1
        t = self.steps
        b1, b2 = self.betas
        k = math.sqrt((1.0 - b2) / (1.0 - b2**t))
        c = self.lr * (1.0 - b1) / ((1.0 - b1**t) * k)
        e = self.eps / k
        for data, grad, m, v, tmp in zip(
            (d for d, _ in self._groups),
            (g for _, g in self._groups),
            self._m,
            self._v,
            self._scratch,
            strict=True,
        ):
            m *= b1
            m += grad
            np.multiply(grad, grad, out=tmp)
            v *= b2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp += e
            np.divide(m, tmp, out=tmp)
            tmp *= c
            data -= tmp

    def moments(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """PyTorch's (exp_avg, exp_avg_sq) per group, for comparisons and inspection."""
        b1, b2 = self.betas
        return [(m * (1.0 - b1), v * (1.0 - b2)) for m, v in zip(self._m, self._v, strict=True)]


OPTIMIZERS = ("adam", "sgd")


def make_optimizer(
    name: str, params: Iterable[Parameter], lr: float, momentum: float = 0.0
) -> Optimizer:
    """'adam' -> Adam(lr); 'sgd' -> SGD(lr, momentum) (momentum 0 is plain SGD)."""
    if name == "adam":
        return Adam(params, lr=lr)
    if name == "sgd":
        return SGD(params, lr=lr, momentum=momentum)
    raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def _check_lr(lr: object) -> None:
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating)):
        raise ConfigError(f"lr must be a number, got {lr!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise ConfigError(f"lr must be a finite number > 0, got {lr!r}")
