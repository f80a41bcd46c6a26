"""Settings a user gives through environment variables (timeouts, for now)."""

from __future__ import annotations

import os

from fashionlab.errors import ConfigError


def seconds_from_env(name: str, default: float, maximum: float) -> float:
    """The number of seconds in environment variable `name`, else `default`; a ConfigError
    naming the variable when it is not a number in (0, maximum]."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= maximum:
        raise ConfigError(f"{name}={raw!r}: expected a number of seconds in (0, {maximum:g}]")
    return value
