"""Weight initialisers for a Dense layer with weights of shape (fan_in, fan_out).

All three draw from a zero-mean normal distribution; they differ only in the standard
deviation, which is what matters for keeping activations from vanishing or exploding:

- `normal`: fixed std 0.01 -- the classic "small random numbers"; fine for shallow nets,
  makes deep ReLU nets start with tiny activations (gradients shrink layer by layer).
- `xavier` (Glorot & Bengio 2010, normal form): std = sqrt(2 / (fan_in + fan_out)), which keeps
  the variance of activations and of gradients roughly constant for tanh-like units.
- `he` (He et al. 2015, normal form, "fan_in" mode): std = sqrt(2 / fan_in), the variance-
  preserving choice for ReLU, which zeroes half of its inputs.

Biases are always initialised to zero (see `layers.Dense`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fashionlab.errors import ConfigError

Initializer = Callable[[int, int, np.random.Generator], np.ndarray]

NORMAL_STD = 0.01


def random_normal(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """N(0, 0.01^2) weights, shape (fan_in, fan_out), float64."""
    return rng.standard_normal((fan_in, fan_out)) * NORMAL_STD


def xavier_normal(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """Glorot normal: N(0, 2 / (fan_in + fan_out)), shape (fan_in, fan_out), float64."""
    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / (fan_in + fan_out))


def he_normal(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """He/Kaiming normal: N(0, 2 / fan_in), shape (fan_in, fan_out), float64."""
    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)


INITIALIZERS: dict[str, Initializer] = {
    "normal": random_normal,
    "xavier": xavier_normal,
    "he": he_normal,
}


def get_initializer(name: str) -> Initializer:
    """The initialiser called `name` ('normal', 'xavier' or 'he'); ConfigError otherwise."""
    try:
        return INITIALIZERS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown init {name!r}; choose one of {', '.join(INITIALIZERS)}"
        ) from None
