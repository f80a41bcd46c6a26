"""One registry for every model: `@register_model`, `create_model`, `list_models`.

Each entry carries its study's default training recipe (a dict of `TrainConfig` fields), so
`fashionlab train --model s0-m2` reproduces the study's setting without other flags.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

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
    """The registered model names, sorted (`fashionlab models` lists them with sizes)."""
    return sorted(_REGISTRY)


# Far above every study's network (the largest has 1.7M), far below what would exhaust memory.
MAX_MODEL_PARAMS = 50_000_000


def model_skeleton(name: str, **model_args: Any) -> torch.nn.Module:
    """The PyTorch model's structure on the `meta` device: shapes, no memory."""
    with torch.device("meta"):
        return _build(get_model_spec(name), model_args)


def create_model(name: str, **model_args: Any) -> Any:
    """Build a fresh model; bad `model_args` are a `ConfigError` naming the model, and so is
    a PyTorch model over MAX_MODEL_PARAMS parameters (counted before anything is allocated)."""
    spec = get_model_spec(name)
    if spec.framework == "torch":
        check_model(name, **model_args)
    return _build(spec, model_args)


def check_model(name: str, **model_args: Any) -> None:
    """Refuse (ConfigError) an unknown model, arguments its builder refuses, or a PyTorch
    model over MAX_MODEL_PARAMS parameters, without allocating it (built on `meta`)."""
    spec = get_model_spec(name)
    if spec.framework != "torch":
        _build(spec, model_args)  # the NumPy MLP's constructor stores and checks its arguments
        return
    count = sum(p.numel() for p in model_skeleton(name, **model_args).parameters())
    if count > MAX_MODEL_PARAMS:
        raise ConfigError(
            f"model {name!r} with model_args {_short(model_args)} has {count:,} "
            f"parameters, more than the {MAX_MODEL_PARAMS:,} allowed; use smaller layers"
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _build(spec: ModelSpec, model_args: dict[str, Any]) -> Any:
    name = spec.name
    try:
        return spec.builder(**model_args)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: bad model_args {_short(model_args)}: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None
