"""Input and hyperparameter checks for `NumpyMLP`; each failure is one-line user error."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fashionlab.errors import ConfigError, DataError
from fashionlab.numpy_nn.activations import canonical_activation_name
from fashionlab.numpy_nn.initializers import INITIALIZERS
from fashionlab.numpy_nn.optim import OPTIMIZERS

DTYPES = {"float32": np.float32, "float64": np.float64}


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _positive_int(name: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_hyperparameters(params: dict[str, Any]) -> dict[str, Any]:
    """Validate the estimator's hyperparameters; return them normalised (canonical names,
    tuple of ints, NumPy dtype). Raises ConfigError on the first bad value."""
    out = dict(params)
    hidden = params["hidden_layers"]
    if _is_int(hidden):
        hidden = (hidden,)
    try:
        hidden = tuple(hidden)
    except TypeError:
        raise ConfigError(f"hidden_layers must be a sequence of integers, got {hidden!r}") from None
    for h in hidden:
        if not _is_int(h) or h < 1:
            raise ConfigError(
                f"hidden_layers must hold integers >= 1, got {params['hidden_layers']!r}"
            )
    out["hidden_layers"] = tuple(int(h) for h in hidden)

    if not isinstance(params["activation"], str):
        raise ConfigError(f"activation must be a string, got {params['activation']!r}")
    out["activation"] = canonical_activation_name(params["activation"])

    dropout = params["dropout"]
    if (
        isinstance(dropout, bool)
        or not isinstance(dropout, (int, float, np.floating))
        or not (0.0 <= dropout < 1.0)
    ):
        raise ConfigError(f"dropout must be a number in [0, 1), got {dropout!r}")
    out["dropout"] = float(dropout)

    if params["init"] not in INITIALIZERS:
        raise ConfigError(
            f"unknown init {params['init']!r}; choose one of {', '.join(INITIALIZERS)}"
        )
    if params["optimizer"] not in OPTIMIZERS:
        raise ConfigError(
            f"unknown optimizer {params['optimizer']!r}; choose one of {', '.join(OPTIMIZERS)}"
        )

    lr = params["lr"]
    if (
        isinstance(lr, bool)
        or not isinstance(lr, (int, float, np.floating))
        or not (math.isfinite(lr) and lr > 0)
    ):
        raise ConfigError(f"lr must be a finite number > 0, got {lr!r}")
    momentum = params["momentum"]
    if (
        isinstance(momentum, bool)
        or not isinstance(momentum, (int, float, np.floating))
        or not (0.0 <= momentum < 1.0)
    ):
        raise ConfigError(f"momentum must be a number in [0, 1), got {momentum!r}")

    out["batch_size"] = _positive_int("batch_size", params["batch_size"])
    out["max_epochs"] = _positive_int("max_epochs", params["max_epochs"])
    out["patience"] = _positive_int("patience", params["patience"])

    shift = params["shift"]
    if not _is_int(shift) or shift < 0:
        raise ConfigError(f"shift must be an integer >= 0 (pixels), got {shift!r}")
    out["shift"] = int(shift)
    if not isinstance(params["flip"], (bool, np.bool_)):
        raise ConfigError(f"flip must be true or false, got {params['flip']!r}")
    out["flip"] = bool(params["flip"])
    shape = params["image_shape"]
    if shape is not None:
        try:
            ok = len(shape) == 2 and all(_is_int(v) and v >= 1 for v in shape)
        except TypeError:
            ok = False
        if not ok:
            raise ConfigError(f"image_shape must be None or (height, width), got {shape!r}")
        out["image_shape"] = (int(shape[0]), int(shape[1]))

    seed = params["random_state"]
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise ConfigError(f"random_state must be None or an integer >= 0, got {seed!r}")

    dtype = params["dtype"]
    key = np.dtype(dtype).name if isinstance(dtype, type) and dtype in DTYPES.values() else dtype
    if key not in DTYPES:
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    out["dtype"] = np.dtype(DTYPES[key])
    return out


def check_X(X: Any, dtype: np.dtype, n_features: int | None = None, what: str = "X") -> np.ndarray:
    """`X` as a C-contiguous (n_samples, n_features) array of `dtype`, finite and non-empty."""
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError) as exc:  # ragged lists and the like
        raise DataError(f"{what} is not a numeric array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{what} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise DataError(
            f"{what} must be 2-D (n_samples, n_features), got shape {arr.shape}; "
            "flatten images first, e.g. X.reshape(len(X), -1)"
        )
    if arr.shape[0] == 0:
        raise DataError(f"{what} is empty (0 samples)")
    if n_features is not None and arr.shape[1] != n_features:
        raise DataError(
            f"{what} has {arr.shape[1]} features but the model was fitted with {n_features}"
        )
    if arr.shape[1] == 0:
        raise DataError(f"{what} has 0 features")
    with np.errstate(over="ignore"):  # overflow to inf is reported just below, as DataError
        arr = np.ascontiguousarray(arr, dtype=dtype)
    # Checked after the cast: a float64 1e300 becomes inf in float32.
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"{what} contains NaN or infinite values")
    return arr


def check_y(y: Any, n_samples: int, what: str = "y") -> np.ndarray:
    """`y` as a 1-D array of n_samples labels (numbers or strings), no NaN."""
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{what} must be 1-D class labels, got shape {arr.shape}")
    if len(arr) != n_samples:
        raise DataError(f"{what} has {len(arr)} labels for {n_samples} samples")
    if arr.dtype.kind not in "biufUS":
        raise DataError(f"{what} must hold numbers or strings, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"{what} contains NaN or infinite labels")
    return arr


def encode_labels(y: np.ndarray, classes: np.ndarray, what: str = "y") -> np.ndarray:
    """Indices of `y` in the sorted `classes`; DataError if a label is not one of them."""
    try:
        idx = np.searchsorted(classes, y)
        np.clip(idx, 0, len(classes) - 1, out=idx)
        bad = np.asarray(classes[idx] != y)
    except (TypeError, ValueError):  # e.g. string labels against numeric classes
        raise DataError(
            f"{what} labels ({y.dtype}) cannot be compared with the classes seen in fit "
            f"({classes.dtype})"
        ) from None
    if bad.shape != y.shape:  # NumPy returns a scalar False for incomparable kinds
        bad = np.ones(y.shape, dtype=bool)
    if np.any(bad):
        unknown = np.unique(y[bad])[:5]
        raise DataError(
            f"{what} has labels outside the classes seen in fit "
            f"({_short(classes)}): {_short(unknown)}"
        )
    return idx.astype(np.intp, copy=False)


def _short(values: np.ndarray, limit: int = 12) -> str:
    items = values.tolist()
    text = ", ".join(map(str, items[:limit]))
    return text + (", ..." if len(items) > limit else "")
