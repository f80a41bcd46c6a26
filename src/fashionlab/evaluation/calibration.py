"""Can the probabilities be trusted? Calibration metrics and temperature scaling.

Definitions follow Guo et al. 2017 ("On Calibration of Modern Neural Networks"):
- top-label ECE: the items are binned by their top probability into equal-width bins over
  [0, 1]; ECE is the item-weighted mean of |accuracy - mean confidence| over the bins, MCE the
  largest gap over the non-empty bins. A bin covers (lower, upper], as torchmetrics'
  `MulticlassCalibrationError` bins, so the two agree to rounding;
- NLL: the mean cross-entropy of the true class;
- Brier score: the mean over items of the squared distance between the probability vector and
  the one-hot label, summed over classes (Brier's original multi-class form, 0 = perfect,
  2 = worst);
- temperature scaling: one scalar T > 0 dividing every logit, fitted by minimising the NLL on
  held-out logits (the validation split, never the test set). It changes no prediction, only
  the confidence.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy import optimize

from fashionlab.errors import ConfigError
from fashionlab.evaluation.metrics import _checked, log_loss, log_softmax

CALIBRATION_BINS = 15
# The calibrated top probability under which predict and serve call an answer "unsure".
UNSURE_BELOW = 0.5
# The temperature search interval: 1/T in [1/20, 20] holds every sane model by far.
_INVERSE_T_BOUNDS = (0.05, 20.0)
NO_VALIDATION = (
    "this run saved no validation logits (a run from before calibration, or val_fraction: 0), "
    "so no temperature was fitted: the probabilities are uncalibrated"
)


class Reliability(NamedTuple):
    """Per bin (length `bins`): item count, mean confidence and accuracy (NaN when empty)."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray


def _check_bins(bins: int) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ConfigError(f"bins must be a positive integer, got {bins!r}")
    return int(bins)


def reliability(labels: Any, logits: Any, bins: int = CALIBRATION_BINS) -> Reliability:
    """The reliability diagram's numbers: top-label confidence against accuracy per bin."""
    y, z = _checked(labels, logits)
    bins = _check_bins(bins)
    probs = np.exp(log_softmax(z))
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # (lower, upper]: a confidence on an edge belongs to the bin below it
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=bins) / counts
        mean_acc = np.bincount(which, weights=correct, minlength=bins) / counts
    return Reliability(edges, counts, mean_conf, mean_acc)


def calibration_errors(
    labels: Any, logits: Any, bins: int = CALIBRATION_BINS
) -> tuple[float, float]:
    """(ECE, MCE) of the top-label confidence with `bins` equal-width bins."""
    rel = reliability(labels, logits, bins)
    filled = rel.counts > 0
    gaps = np.abs(rel.accuracy[filled] - rel.confidence[filled])
    weights = rel.counts[filled] / rel.counts.sum()
    return float((weights * gaps).sum()), float(gaps.max())


def brier_score(labels: Any, logits: Any) -> float:
    """Mean squared distance of the probabilities from the one-hot label, summed over classes."""
    y, z = _checked(labels, logits)
    probs = np.exp(log_softmax(z))
    probs[np.arange(len(y)), y] -= 1.0
    return float((probs**2).sum(axis=1).mean())


def fit_temperature(labels: Any, logits: Any) -> float:
    """The temperature T minimising the NLL of `logits / T` (bounded scalar search).

    The NLL is convex in 1/T, so the search over 1/T finds the one minimum."""
    y, z = _checked(labels, logits)

    def nll(inverse_t: float) -> float:
        return log_loss(y, z * inverse_t)

    result = optimize.minimize_scalar(
        nll, bounds=_INVERSE_T_BOUNDS, method="bounded", options={"xatol": 1e-7}
    )
    return float(1.0 / result.x)


def _scores(labels: np.ndarray, logits: np.ndarray, bins: int) -> dict[str, float]:
    ece, mce = calibration_errors(labels, logits, bins)
    return {
        "ece": ece,
        "mce": mce,
        "nll": log_loss(labels, logits),
        "brier": brier_score(labels, logits),
    }


def calibration_metrics(
    test_labels: Any,
    test_logits: Any,
    val_labels: Any | None = None,
    val_logits: Any | None = None,
    bins: int = CALIBRATION_BINS,
) -> dict[str, Any]:
    """The calibration entries of a run's metrics.json (JSON-ready).

    Flat keys for the tables: `ece`, `mce`, `brier` on the test set as the model gives them;
    with validation logits also the fitted `temperature` and `ece_calibrated`,
    `mce_calibrated`, `nll_calibrated`, `brier_calibrated` (test set, logits / T). The
    `calibration` entry holds the details, including the validation NLL before and after.
    Without validation logits the calibrated entries are None and `calibration.note` says why.
    """
    y, z = _checked(test_labels, test_logits)
    before = _scores(y, z, bins)
    out: dict[str, Any] = {
        "ece": before["ece"],
        "mce": before["mce"],
        "brier": before["brier"],
        "temperature": None,
        "ece_calibrated": None,
        "mce_calibrated": None,
        "nll_calibrated": None,
        "brier_calibrated": None,
    }
    details: dict[str, Any] = {"bins": bins, "binning": "top label, equal width", "test": before}
    if val_labels is None or val_logits is None or len(np.asarray(val_labels)) == 0:
        details["note"] = NO_VALIDATION
        out["calibration"] = details
        return out
    vy, vz = _checked(val_labels, val_logits)
    temperature = fit_temperature(vy, vz)
    after = _scores(y, z / temperature, bins)
    out.update(
        temperature=temperature,
        ece_calibrated=after["ece"],
        mce_calibrated=after["mce"],
        nll_calibrated=after["nll"],
        brier_calibrated=after["brier"],
    )
    details.update(
        fitted_on="validation split",
        temperature=temperature,
        test_calibrated=after,
        val_nll=log_loss(vy, vz),
        val_nll_calibrated=log_loss(vy, vz / temperature),
    )
    out["calibration"] = details
    return out


def run_temperature(metrics: dict[str, Any]) -> float | None:
    """The temperature a run's metrics.json records, or None (older run, no validation split,
    or a value that is not a positive finite number)."""
    value = metrics.get("temperature") if isinstance(metrics, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if np.isfinite(value) and value > 0 else None
