"""A run's config resolved from its model's study recipe: defaults < recipe < overrides."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from fashionlab.config import TrainConfig, describe_validation_error
from fashionlab.errors import ConfigError
from fashionlab.models._registry import get_model_spec


def build_config(
    model: str, overrides: dict[str, Any] | None = None, source: str = "config"
) -> TrainConfig:
    """Resolve defaults < the model's recipe < overrides, validating everything.

    `model_args` from the recipe and the overrides are merged key by key.
    """
    spec = get_model_spec(model)
    values: dict[str, Any] = {"model": spec.name, **spec.recipe}
    overrides = dict(overrides or {})
    if not isinstance(overrides.get("model_args", {}), dict):
        raise ConfigError(
            f"{source}: model_args must be a mapping (e.g. {{hidden: [256]}}), got "
            f"{type(overrides['model_args']).__name__}"
        )
    model_args = {**values.pop("model_args", {}), **overrides.pop("model_args", {})}
    values.update(overrides)
    values["model"] = spec.name
    values["model_args"] = model_args
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, source)) from None
