"""model_args validation: each check raises ValueError naming the argument and what is allowed
(the registry turns it into a ConfigError naming the model)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def check_choice(arg: str, value: Any, allowed: Iterable[Any]) -> Any:
    allowed = tuple(allowed)
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{arg}={value!r} is not one of {shown}")
    return value


def check_positive_int(arg: str, value: Any) -> int:
    # bool is an int subclass; `hidden: true` in YAML is a mistake, not a width of 1.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{arg} must be a positive integer, got {value!r}")
    return value


def check_int_list(arg: str, value: Any, length: int | None = None) -> list[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError(f"{arg} must be a list of positive integers, got {value!r}")
    if length is not None and len(value) != length:
        raise ValueError(f"{arg} must have exactly {length} entries, got {len(value)}: {value!r}")
    return [check_positive_int(f"{arg}[{i}]", v) for i, v in enumerate(value)]


def check_probability(arg: str, value: Any) -> float:
    """A dropout rate: a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{arg} must be a number in [0, 1), got {value!r}")
    return float(value)
