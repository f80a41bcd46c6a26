"""Classification metrics from saved predictions: labels (N,) and logits (N, C) as NumPy arrays.

Everything here works from a run folder's `predictions.npz` alone (no model, no torch), so a
report can be rebuilt long after training. Classification metrics come from scikit-learn so our
numbers mean what the field means by them; only the loss (stable log-softmax) and McNemar's
test are written here.

Array problems (lengths that disagree, logits that are not (N, C), empty arrays) raise
`RunError`, since they mean a predictions file is wrong; bad arguments raise `ConfigError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from fashionlab.errors import ConfigError, RunError

# Below this many discordant pairs the chi-square approximation is poor; use the exact test.
MCNEMAR_EXACT_BELOW = 25


# --------------------------------------------------------------------------- validation


def _labels(labels: Any) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise RunError(f"labels must be 1-D (N,), got shape {arr.shape}")
    if arr.size == 0:
        raise RunError("labels are empty: nothing to evaluate")
    if not np.issubdtype(arr.dtype, np.integer):
        raise RunError(f"labels must be integers, got dtype {arr.dtype}")
    if arr.min() < 0:
        raise RunError(f"labels must be >= 0, found {int(arr.min())}")
    return arr.astype(np.int64, copy=False)


def _logits(logits: Any, n: int) -> np.ndarray:
    arr = np.asarray(logits)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise RunError(f"logits must have shape (N, C) with C >= 2, got {arr.shape}")
    if arr.shape[0] != n:
        raise RunError(f"logits have {arr.shape[0]} rows but there are {n} labels")
    if not np.all(np.isfinite(arr)):
        raise RunError("logits contain NaN or infinite values")
    return arr.astype(np.float64, copy=False)


def _checked(labels: Any, logits: Any) -> tuple[np.ndarray, np.ndarray]:
    y = _labels(labels)
    z = _logits(logits, len(y))
    if y.max() >= z.shape[1]:
        raise RunError(f"label {int(y.max())} is out of range for {z.shape[1]} logit columns")
    return y, z


def _predictions(scores: Any, n: int) -> np.ndarray:
    """Predicted classes from logits (N, C) or from already-predicted labels (N,)."""
    arr = np.asarray(scores)
    if arr.ndim == 2:
        return _logits(arr, n).argmax(axis=1)
    if arr.ndim == 1:
        if arr.shape[0] != n:
            raise RunError(f"predictions have {arr.shape[0]} items but there are {n} labels")
        if not np.issubdtype(arr.dtype, np.integer):
            raise RunError(f"predicted labels must be integers, got dtype {arr.dtype}")
        return arr.astype(np.int64, copy=False)
    raise RunError(f"expected logits (N, C) or predicted labels (N,), got shape {arr.shape}")


def _class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    names = [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ConfigError(f"got {len(names)} class names for {num_classes} classes")
    return names


# --------------------------------------------------------------------------- basic metrics


def log_softmax(logits: Any) -> np.ndarray:
    """Row-wise log-softmax, stable for large logits (subtract the row max first)."""
    z = np.asarray(logits, dtype=np.float64)
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits: Any) -> np.ndarray:
    """Row-wise class probabilities."""
    return np.exp(log_softmax(logits))


def predict(logits: Any) -> np.ndarray:
    """Predicted class per row (argmax of the logits), int64 (N,)."""
    z = np.asarray(logits)
    if z.ndim != 2:
        raise RunError(f"logits must have shape (N, C), got {z.shape}")
    return z.argmax(axis=1).astype(np.int64)


def accuracy(labels: Any, scores: Any) -> float:
    """Fraction correct; `scores` are logits (N, C) or predicted labels (N,)."""
    y = _labels(labels)
    return float(skm.accuracy_score(y, _predictions(scores, len(y))))


def log_loss(labels: Any, logits: Any) -> float:
    """Mean cross-entropy (natural log) of the true class, as torch's CrossEntropyLoss gives."""
    y, z = _checked(labels, logits)
    return float(-log_softmax(z)[np.arange(len(y)), y].mean())


# --------------------------------------------------------------------------- per class


def classification_report(
    labels: Any, logits: Any, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Per-class precision/recall/F1/support plus macro and weighted averages.

    Returns {"per_class": [{"index", "name", "precision", "recall", "f1", "support"}, ...],
    "accuracy", "macro": {...}, "weighted": {...}, "support"} with plain Python numbers, so it
    can go straight to JSON. A class with no predictions (or no items) scores 0, as sklearn's
    `zero_division=0` does, instead of warning.
    """
    y, z = _checked(labels, logits)
    num_classes = z.shape[1]
    names = _class_names(class_names, num_classes)
    pred = z.argmax(axis=1)
    classes = list(range(num_classes))  # fixed, so absent classes still get a row
    p, r, f, s = skm.precision_recall_fscore_support(
        y, pred, labels=classes, average=None, zero_division=0
    )
    per_class = [
        {
            "index": i,
            "name": names[i],
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i in classes
    ]
    averages = {}
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = skm.precision_recall_fscore_support(
            y, pred, labels=classes, average=avg, zero_division=0
        )
        averages[avg] = {
            "precision": float(ap),
            "recall": float(ar),
            "f1": float(af),
            "support": int(len(y)),
        }
    return {
        "per_class": per_class,
        "accuracy": float(skm.accuracy_score(y, pred)),
        "macro": averages["macro"],
        "weighted": averages["weighted"],
        "support": int(len(y)),
    }


def confusion_matrix(labels: Any, logits: Any, normalize: bool = False) -> np.ndarray:
    """(C, C) matrix, rows = true class, columns = predicted class.

    Counts (int64) by default; with `normalize=True` each row is divided by its total (float64,
    rows sum to 1; a class with no items keeps a row of zeros rather than NaN).
    """
    y, z = _checked(labels, logits)
    counts = skm.confusion_matrix(y, z.argmax(axis=1), labels=list(range(z.shape[1])))
    counts = counts.astype(np.int64)
    return normalize_rows(counts) if normalize else counts


def normalize_rows(counts: Any) -> np.ndarray:
    """Row-normalise a confusion matrix; empty rows stay zero."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def per_class_accuracy(labels: Any, logits: Any) -> np.ndarray:
    """Accuracy within each true class (= recall), float64 (C,); NaN for a class with no items."""
    counts = confusion_matrix(labels, logits).astype(np.float64)
    totals = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(counts) / totals, np.nan)


class Mistakes(NamedTuple):
    """The most confidently wrong predictions, most confident first (all arrays length k)."""

    indices: np.ndarray  # row in the labels/logits arrays (int64)
    true: np.ndarray  # true class (int64)
    predicted: np.ndarray  # predicted class (int64)
    confidence: np.ndarray  # softmax probability of the predicted class (float64)


def most_confident_mistakes(labels: Any, logits: Any, k: int = 16) -> Mistakes:
    """The k wrong predictions with the highest predicted-class probability (fewer if fewer)."""
    if k < 0:
        raise ConfigError(f"k must be >= 0, got {k}")
    y, z = _checked(labels, logits)
    probs = softmax(z)
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != y)
    conf = probs[wrong, pred[wrong]]
    # stable sort on -confidence: ties keep test-set order, so the result is deterministic
    order = np.argsort(-conf, kind="stable")[:k]
    idx = wrong[order]
    return Mistakes(
        indices=idx.astype(np.int64),
        true=y[idx].astype(np.int64),
        predicted=pred[idx].astype(np.int64),
        confidence=conf[order].astype(np.float64),
    )


# --------------------------------------------------------------------------- significance


class McNemarResult(NamedTuple):
    """McNemar's test on paired predictions.

    b = items A got right and B got wrong, c = the reverse. `statistic` is min(b, c) for the
    exact test and the continuity-corrected chi-square for the asymptotic one.
    """

    b: int
    c: int
    statistic: float
    p_value: float
    method: str  # "exact-binomial" or "chi2-continuity"


def mcnemar(labels: Any, scores_a: Any, scores_b: Any, exact: bool | None = None) -> McNemarResult:
    """McNemar's test: do two classifiers differ in error rate on the same test items?

    `scores_a`/`scores_b` are logits (N, C) or predicted labels (N,) for the SAME items in the
    same order (the caller aligns them, e.g. by predictions.npz `indices`). By default the exact
    two-sided binomial test is used when b + c < 25 and the chi-square test with continuity
    correction otherwise; `exact=True/False` forces one.
    """
    y = _labels(labels)
    right_a = _predictions(scores_a, len(y)) == y
    right_b = _predictions(scores_b, len(y)) == y
    b = int(np.sum(right_a & ~right_b))
    c = int(np.sum(~right_a & right_b))
    n = b + c
    use_exact = n < MCNEMAR_EXACT_BELOW if exact is None else exact
    if use_exact:
        # two-sided: double the smaller tail of Binomial(n, 1/2), capped at 1
        statistic = float(min(b, c))
        p = 1.0 if n == 0 else min(1.0, 2.0 * float(stats.binom.cdf(min(b, c), n, 0.5)))
        return McNemarResult(b, c, statistic, p, "exact-binomial")
    if n == 0:
        return McNemarResult(b, c, 0.0, 1.0, "chi2-continuity")
    # Edwards' correction; max(0, .) keeps b == c at statistic 0 (p = 1) instead of 1/n
    statistic = max(0.0, abs(b - c) - 1.0) ** 2 / n
    return McNemarResult(b, c, statistic, float(stats.chi2.sf(statistic, df=1)), "chi2-continuity")


# --------------------------------------------------------------------------- summaries


def summarize_predictions(
    labels: Any, logits: Any, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """The test metrics a run records (JSON-ready): accuracy, loss, macro/weighted P/R/F1,
    per-class rows (precision, recall, f1, support, accuracy)."""
    y, z = _checked(labels, logits)
    report = classification_report(y, z, class_names)
    per_class = [dict(row, accuracy=row["recall"]) for row in report["per_class"]]
    return {
        "test_accuracy": report["accuracy"],
        "test_loss": log_loss(y, z),
        "macro_f1": report["macro"]["f1"],
        "weighted_f1": report["weighted"]["f1"],
        "macro_precision": report["macro"]["precision"],
        "macro_recall": report["macro"]["recall"],
        "weighted_precision": report["weighted"]["precision"],
        "weighted_recall": report["weighted"]["recall"],
        "num_test": int(len(y)),
        "per_class": per_class,
    }


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) over seeds; std is 0.0 for a single value."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ConfigError("mean_std needs at least one value")
    if not np.all(np.isfinite(arr)):
        raise ConfigError("mean_std got NaN or infinite values")
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return float(arr.mean()), std
