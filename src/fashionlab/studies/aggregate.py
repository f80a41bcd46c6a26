"""A study's results from its run folders: the comparison table, the reproduction table,
McNemar tests for the claimed comparisons, and identical architectures."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from fashionlab.errors import FashionlabError, RunError
from fashionlab.evaluation import mcnemar, mean_std
from fashionlab.models import create_model, get_model_spec
from fashionlab.models.summary import architecture_signature
from fashionlab.runs import load_history, load_metrics, load_predictions
from fashionlab.studies.spec import PlannedRun, StudySpec

METRIC_KEYS = ("test_accuracy", "macro_f1", "weighted_f1", "test_loss")
FIT_KEYS = ("train_accuracy", "train_test_gap")
CALIBRATION_KEYS = ("ece", "ece_calibrated", "brier", "brier_calibrated", "temperature")


def aggregate(study: StudySpec, planned: list[PlannedRun]) -> dict[str, Any]:
    """The comparison table, reproduction table, McNemar tests and identical architectures."""
    by_label: dict[str, list[PlannedRun]] = {}
    for run in planned:
        by_label.setdefault(run.label, []).append(run)
    rows = []
    for label, runs in by_label.items():
        metrics = [load_metrics(r.run_dir) for r in runs]
        row: dict[str, Any] = {
            "label": label,
            "model": runs[0].config.model,
            "grid": runs[0].grid_point,
            "seeds": [r.seed for r in runs],
            "runs": [r.run_dir.name for r in runs],
            # A twin (studies.twins) reads its original's folders: trained once.
            "same_as": runs[0].same_as,
            # What the runs computed in ('auto' resolved on the machine that trained them).
            "precision": sorted({m["precision_used"] for m in metrics if m.get("precision_used")}),
        }
        for m, r in zip(metrics, runs, strict=True):
            m.update(_fit_numbers(r, m))
        for key in (*METRIC_KEYS, *FIT_KEYS, *CALIBRATION_KEYS, "params", "train_seconds",
                    "seconds_per_epoch", "best_epoch"):  # fmt: skip
            values = [m[key] for m in metrics if m.get(key) is not None]
            if values:
                mean, std = mean_std(values)
                row[key] = {"mean": mean, "std": std, "n": len(values), "values": values}
        reported = runs[0].reported
        row["reported"] = reported
        row["difference"] = {
            key: row[key]["mean"] - value
            for key, value in reported.items()
            if key in row and isinstance(value, (int, float))
        }
        rows.append(row)
    comparisons = []
    for cmp in study.compare:
        per_seed = []
        # A partial aggregate (report-only) may have no complete run of a or b yet.
        for ra in by_label.get(cmp.a, []):
            rb = next((r for r in by_label.get(cmp.b, []) if r.seed == ra.seed), None)
            if rb is None:
                continue
            pa, pb = load_predictions(ra.run_dir), load_predictions(rb.run_dir)
            if not np.array_equal(pa["labels"], pb["labels"]):
                raise RunError(
                    f"{ra.run_dir.name} and {rb.run_dir.name} were tested on "
                    "different items; McNemar needs the same test set"
                )
            result = mcnemar(pa["labels"], pa["logits"], pb["logits"])
            per_seed.append({"seed": ra.seed, **_as_dict(result)})
        comparisons.append(
            {"a": cmp.a, "b": cmp.b, "claim": cmp.claim, "kind": cmp.kind, "per_seed": per_seed}
        )
    return {
        "name": study.name,
        "title": study.title,
        "description": study.description,
        "source": study.source,
        "seeds": study.seeds,
        "rows": rows,
        "comparisons": comparisons,
        "identical_architectures": identical_architectures(planned),
    }


def _fit_numbers(run: PlannedRun, metrics: dict[str, Any]) -> dict[str, float]:
    """The last epoch's training accuracy (what a Keras log shows at the end) and its gap to
    the test accuracy: how a study's overfitting claim is checked."""
    history = load_history(run.run_dir)
    last = history[-1].get("train_accuracy") if history else None
    if last is None or metrics.get("test_accuracy") is None:
        return {}
    return {"train_accuracy": last, "train_test_gap": last - metrics["test_accuracy"]}


def _as_dict(result: Any) -> dict[str, Any]:
    if hasattr(result, "_asdict"):
        return dict(result._asdict())
    if hasattr(result, "__dataclass_fields__"):
        return asdict(result)
    return dict(result)


def identical_architectures(planned: list[PlannedRun]) -> list[dict[str, str]]:
    """Pairs of differently named models in the study that build the very same network."""
    signatures: dict[str, tuple[str, str]] = {}
    found = []
    for run in planned:
        if run.label in signatures or get_model_spec(run.config.model).framework != "torch":
            continue
        try:
            sig = architecture_signature(create_model(run.config.model, **run.config.model_args))
        except FashionlabError:
            continue
        for other, (other_sig, other_model) in signatures.items():
            if sig == other_sig and other_model != run.config.model:
                found.append(
                    {
                        "a": other,
                        "b": run.label,
                        "note": f"{run.label} ({run.config.model}) is the same network as "
                        f"{other} ({other_model}): identical layers and shapes",
                    }
                )
        signatures[run.label] = (sig, run.config.model)
    return found
