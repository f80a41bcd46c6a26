"""One registry for every model: `@register_model`, `create_model`, `list_models`.

Each entry carries its study's default training recipe (a dict of `TrainConfig` fields), so
`fashionlab train --model s0-m2` reproduces the study's setting without other flags.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fashionlab.errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., Any]
    study: str = "-"  # e.g. "S0"; "-" for general-purpose models
    description: str = ""
    recipe: dict[str, Any] = field(default_factory=dict)
    expected_params: int | None = None  # the count the study states, checked by the tests
    framework: str = "torch"  # "torch" or "numpy" (the from-scratch MLP)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    study: str = "-",
    description: str = "",
    recipe: dict[str, Any] | None = None,
    expected_params: int | None = None,
    framework: str = "torch",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register `builder(**model_args) -> model` under `name`."""

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(
            name=name,
            builder=builder,
            study=study,
            description=description or (builder.__doc__ or "").strip().split("\n")[0],
            recipe=dict(recipe or {}),
            expected_params=expected_params,
            framework=framework,
        )
        return builder

    return decorate


def get_model_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown model {name!r}.{hint} Run 'fashionlab models' to list all "
            f"{len(_REGISTRY)} models."
        ) from None


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, **model_args: Any) -> Any:
    """Build a fresh model; bad `model_args` are a `ConfigError` naming the model."""
    spec = get_model_spec(name)
    try:
        return spec.builder(**model_args)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: bad model_args {model_args}: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None
