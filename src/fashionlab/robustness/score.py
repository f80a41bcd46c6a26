"""Score one run on corrupted test sets and write `robustness.json` and `robustness.npz`.

Predictions go through `train.predict.predict_logits` with the settings the run's own test
pass used (its precision, test-time augmentation and memory format), so the clean row is the
run's test accuracy on the same items.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fashionlab._io import atomic_write_bytes, atomic_write_json
from fashionlab.data import prepare_data
from fashionlab.data.corruptions import CORRUPTIONS
from fashionlab.errors import ConfigError, RunError
from fashionlab.models import get_model_spec
from fashionlab.robustness.sets import CorruptedSets, balanced_subset, build_sets
from fashionlab.runs import ROBUSTNESS_FILE, load_config, load_metrics
from fashionlab.runs.weights import load_model
from fashionlab.training.device import deterministic_algorithms, resolve_device
from fashionlab.training.predict import PredictSettings, predict_logits

PREDICTIONS_FILE = "robustness.npz"


def set_key(corruption: str, severity: int) -> str:
    return f"{corruption}/{severity}"


def check_torch_run(run_dir: Path) -> None:
    config = load_config(run_dir)
    if get_model_spec(config.model).framework != "torch":
        raise ConfigError(
            f"{run_dir}: robustness needs a PyTorch model; {config.model} is the NumPy MLP "
            "(evaluate a PyTorch run instead)"
        )


def sets_for_run(
    run_dir: Path,
    corruptions: tuple[str, ...],
    severities: tuple[int, ...],
    items: int | None,
    seed: int,
    data_dir: str | Path | None = None,
) -> CorruptedSets:
    """The corrupted sets of the run's own test items (its split, class-balanced subset)."""
    config = load_config(run_dir)
    split, _ = prepare_data(config, data_dir)
    labels = split.test.labels.numpy()
    chosen = balanced_subset(labels, items)
    images = split.test.images.numpy()[chosen]
    return build_sets(images, labels[chosen], split.test.indices[chosen], corruptions,
                      severities, seed)  # fmt: skip


def score_run(
    run_dir: str | Path,
    sets: CorruptedSets,
    device: str = "cpu",
    settings_record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Accuracy of the run's model on the clean items and on every corrupted set; writes
    RUN/robustness.json (the results) and RUN/robustness.npz (the predicted classes, for
    McNemar tests between runs) and returns the results. `settings_record` (what was asked
    for) is kept in the results, so a later identical request can reuse them."""
    run_dir = Path(run_dir)
    check_torch_run(run_dir)
    started = time.perf_counter()
    target = resolve_device(device)
    loaded = load_model(run_dir, device=target)
    settings = PredictSettings.of_run(loaded.config, load_metrics(run_dir), target)

    def predicted(images: np.ndarray) -> np.ndarray:
        logits = predict_logits(
            loaded.model, torch.from_numpy(images), loaded.normalizer, target, settings
        )
        return logits.argmax(1).numpy().astype(np.int8)

    with deterministic_algorithms():
        clean = predicted(sets.clean)
        preds = {set_key(s.corruption, s.severity): predicted(s.images) for s in sets.sets}
    labels = sets.labels
    result = summarize_scores(sets, labels, clean, preds)
    result.update(
        run=run_dir.name,
        model=loaded.config.model,
        precision=settings.precision,
        seconds=time.perf_counter() - started,
        settings=settings_record,
    )
    buffer = io.BytesIO()
    np.savez(buffer, labels=labels.astype(np.int8), indices=sets.indices, clean=clean, **preds)
    atomic_write_bytes(run_dir / PREDICTIONS_FILE, buffer.getvalue())
    atomic_write_json(run_dir / ROBUSTNESS_FILE, result)
    return result


def summarize_scores(
    sets: CorruptedSets, labels: np.ndarray, clean: np.ndarray, preds: dict[str, np.ndarray]
) -> dict[str, Any]:
    """The results as robustness.json holds them (without the run's own facts)."""
    corruptions: dict[str, Any] = {}
    out_of_distribution: dict[str, Any] = {}
    for s in sets.sets:
        accuracy = float((preds[set_key(s.corruption, s.severity)] == labels).mean())
        spec = CORRUPTIONS[s.corruption]
        cell = {"accuracy": accuracy, "sha256": s.sha256}
        if spec.out_of_distribution:
            out_of_distribution[s.corruption] = cell
            continue
        entry = corruptions.setdefault(
            s.corruption, {"parameter": spec.parameter, "severities": {}}
        )
        cell["level"] = spec.levels[s.severity - 1]
        entry["severities"][str(s.severity)] = cell
    for entry in corruptions.values():
        entry["mean_accuracy"] = float(
            np.mean([c["accuracy"] for c in entry["severities"].values()])
        )
    mean = [e["mean_accuracy"] for e in corruptions.values()]
    return {
        "items": int(len(labels)),
        "item_indices": "first items of each class of the run's test split",
        "corruption_seed": sets.seed,
        "clean_sha256": sets.clean_sha256,
        "clean_accuracy": float((clean == labels).mean()),
        "corruptions": corruptions,
        "mean_corruption_accuracy": float(np.mean(mean)) if mean else None,
        "out_of_distribution": out_of_distribution,
    }


def corruption_errors(result: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Corruption error relative to a reference model, as the -C benchmarks define it:
    CE_c = sum over severities of the model's error / the same sum for the reference, and
    mCE the mean of CE_c over the corruptions both share (flips and turns left out). Both
    results must come from the same corrupted sets (compared by SHA-256)."""
    ce: dict[str, float] = {}
    for name, entry in result["corruptions"].items():
        ref = reference["corruptions"].get(name)
        if ref is None:
            continue
        shared = sorted(set(entry["severities"]) & set(ref["severities"]))
        for s in shared:
            if entry["severities"][s]["sha256"] != ref["severities"][s]["sha256"]:
                raise RunError(
                    f"{name} severity {s}: the reference was scored on different images "
                    "(another split, --items or --seed); score both in one command"
                )
        errors = sum(1 - entry["severities"][s]["accuracy"] for s in shared)
        ref_errors = sum(1 - ref["severities"][s]["accuracy"] for s in shared)
        if shared and ref_errors > 0:
            ce[name] = errors / ref_errors
    return {"ce": ce, "mce": float(np.mean(list(ce.values()))) if ce else None}


def add_reference(result: dict[str, Any], reference: dict[str, Any], run_dir: Path) -> None:
    """Record CE/mCE relative to `reference` in the run's robustness.json."""
    result["reference"] = {"run": reference.get("run"), **corruption_errors(result, reference)}
    atomic_write_json(Path(run_dir) / ROBUSTNESS_FILE, result)


__all__ = [
    "PREDICTIONS_FILE",
    "add_reference",
    "check_torch_run",
    "corruption_errors",
    "score_run",
    "sets_for_run",
    "set_key",
]
