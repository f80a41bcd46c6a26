"""What the audit's flags do to the scores: accuracy on the full test set and on cleaned subsets,
and whether a study's claimed differences survive on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fashionlab.errors import RunError
from fashionlab.evaluation import mcnemar, mean_std, predict
from fashionlab.runs import AUDIT_SUBSETS, load_predictions

SUBSETS = AUDIT_SUBSETS


def keep_masks(
    n_test: int, near_duplicates: np.ndarray, suspects: np.ndarray
) -> dict[str, np.ndarray]:
    """Boolean masks over the test set, one per entry of SUBSETS."""
    dup = np.zeros(n_test, dtype=bool)
    dup[np.asarray(near_duplicates, dtype=np.int64)] = True
    bad = np.zeros(n_test, dtype=bool)
    bad[np.asarray(suspects, dtype=np.int64)] = True
    masks = (np.ones(n_test, dtype=bool), ~dup, ~bad, ~dup & ~bad)
    return dict(zip(SUBSETS, masks, strict=True))


def test_predictions(run_dir: Path, n_test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A run's (test indices, labels, predicted labels), or a RunError when it was not tested on
    the standard test set (a pooled or cross-validation split)."""
    pred = load_predictions(run_dir)
    pool = str(pred.get("pool", "test"))
    if pool != "test":
        raise RunError(f"{run_dir}: tested on the {pool!r} split, not the standard test set")
    indices = np.asarray(pred.get("indices", np.arange(len(pred["labels"]))), dtype=np.int64)
    if len(indices) != len(pred["labels"]) or (indices.size and (indices.max() >= n_test)):
        raise RunError(f"{run_dir}: its test indices do not fit a {n_test}-item test set")
    return indices, np.asarray(pred["labels"], dtype=np.int64), predict(pred["logits"])


def subset_accuracies(
    indices: np.ndarray, labels: np.ndarray, predicted: np.ndarray, masks: dict[str, np.ndarray]
) -> dict[str, dict[str, float | int]]:
    """Accuracy and item count on each subset, over the items the run was tested on."""
    right = labels == predicted
    out = {}
    for name, mask in masks.items():
        kept = mask[indices]
        n = int(kept.sum())
        out[name] = {"accuracy": float(right[kept].mean()) if n else float("nan"), "n": n}
    return out


def comparison_on_subsets(
    pairs: list[tuple[Path, Path]], n_test: int, masks: dict[str, np.ndarray]
) -> dict[str, dict[str, Any]]:
    """A claimed comparison (its seed-matched run pairs a, b) on each subset: the mean accuracy
    difference a - b over the pairs and McNemar per pair on the subset's items."""
    out: dict[str, dict[str, Any]] = {}
    loaded = [(test_predictions(a, n_test), test_predictions(b, n_test)) for a, b in pairs]
    for name, mask in masks.items():
        diffs, tests = [], []
        for (ia, la, pa), (ib, lb, pb) in loaded:
            if not np.array_equal(ia, ib) or not np.array_equal(la, lb):
                raise RunError("a compared pair of runs was tested on different items")
            kept = mask[ia]
            if not kept.any():
                continue
            diffs.append(float((pa[kept] == la[kept]).mean() - (pb[kept] == lb[kept]).mean()))
            result = mcnemar(la[kept], pa[kept], pb[kept])
            tests.append({"b": result.b, "c": result.c, "p": result.p_value})
        mean, std = mean_std(diffs) if diffs else (float("nan"), float("nan"))
        out[name] = {
            "difference": mean,
            "difference_std": std,
            "pairs": len(diffs),
            "mcnemar": tests,
            "significant_pairs": sum(t["p"] < 0.05 for t in tests),
        }
    return out


def survives(on_subsets: dict[str, dict[str, Any]]) -> str:
    """A verdict: does the full-test-set difference keep its sign (and its significance) on
    every cleaned subset?"""
    full = on_subsets[SUBSETS[0]]
    sign = np.sign(full["difference"])
    cleaned = [on_subsets[name] for name in SUBSETS[1:]]
    if sign == 0 or not np.isfinite(full["difference"]):
        return "no difference on the full test set"
    if any(np.sign(c["difference"]) != sign for c in cleaned):
        return "does not survive: the sign flips on a cleaned subset"
    if full["significant_pairs"] and any(
        c["significant_pairs"] < full["significant_pairs"] for c in cleaned
    ):
        return "survives in sign, but fewer pairs are significant (McNemar, p < 0.05) when cleaned"
    return "survives: same sign and as many significant pairs on every cleaned subset"
