"""Runs of a study that would train the very same network the very same way.

S4's CNN2 is CNN1 with its default stride written out: under one seed the two start from the
same weights and see the same batches, so training both only repeats the work. A run is the
*twin* of an earlier one when its resolved config is equal apart from the model's name, both
models build the same layers and shapes (`architecture_signature`), and under the run's seed
both start from bit-identical weights. The planner points a twin at its original's folder, so
it is trained once and reported under both names.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch

from fashionlab.config import TrainConfig
from fashionlab.errors import FashionlabError
from fashionlab.models import create_model, get_model_spec
from fashionlab.models.summary import architecture_signature

# Fields that name a run rather than change what it computes.
NAMING_FIELDS = ("model", "name")


def _recipe(config: TrainConfig) -> dict[str, Any]:
    return config.model_dump(exclude=set(NAMING_FIELDS))


def _initial_state(config: TrainConfig) -> dict[str, torch.Tensor] | None:
    if get_model_spec(config.model).framework != "torch":
        return None
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)  # as the trainer seeds before building the model
            model = create_model(config.model, **config.model_args)
    except FashionlabError:
        return None
    return {"__signature__": architecture_signature(model), **model.state_dict()}


def _same_start(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys() or a["__signature__"] != b["__signature__"]:
        return False
    return all(
        key == "__signature__" or (a[key].shape == b[key].shape and torch.equal(a[key], b[key]))
        for key in a
    )


def find_twins(configs: Sequence[TrainConfig]) -> dict[int, int]:
    """index -> index of the earlier config it twins (same recipe, network and initial
    weights under a different model name); configs without a twin are absent.

    Linear in the number of configs: configs are grouped by recipe, and each is compared only
    with the first config of every other model in its group (a later one of a model is that
    first one's repeat or twin, never a new original)."""
    twins: dict[int, int] = {}
    states: dict[int, dict[str, Any] | None] = {}
    # recipe -> model name -> index of its first config that is no twin
    originals: dict[str, dict[str, int]] = {}
    for i, config in enumerate(configs):
        firsts = originals.setdefault(json.dumps(_recipe(config), sort_keys=True, default=str), {})
        for model, j in firsts.items():
            if model == config.model:
                continue
            for k in (i, j):
                if k not in states:
                    states[k] = _initial_state(configs[k])
            a, b = states[i], states[j]
            if a is not None and b is not None and _same_start(a, b):
                twins[i] = j
                break
        if i not in twins:
            firsts.setdefault(config.model, i)
    return twins
