"""Suspect labels: items whose out-of-sample predicted probabilities disagree with their label.

The search itself is cleanlab's confident learning (`cleanlab.filter.find_label_issues`); this
module checks its inputs, ranks what it finds and says which label the models suggest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fashionlab._extras import require_extra
from fashionlab.errors import ConfigError


@dataclass
class SuspectLabels:
    """Suspect items ranked most suspect first: their index, the given label, the label the
    probabilities favour, the probability of the given label (cleanlab's self-confidence) and of
    the suggested one."""

    indices: np.ndarray
    given: np.ndarray
    suggested: np.ndarray
    given_probability: np.ndarray
    suggested_probability: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


def check_probabilities(labels: np.ndarray, probs: np.ndarray, what: str) -> None:
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ConfigError(
            f"{what}: {probs.shape} probabilities for {len(labels)} labels; expected "
            f"({len(labels)}, classes)"
        )
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise ConfigError(f"{what}: probabilities must be finite and non-negative")
    if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
        raise ConfigError(f"{what}: each row of probabilities must sum to 1")
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ConfigError(f"{what}: labels outside 0..{probs.shape[1] - 1}")


def find_suspect_labels(
    labels: np.ndarray, probs: np.ndarray, what: str = "labels"
) -> SuspectLabels:
    """cleanlab's label issues among `labels` given out-of-sample `probs` (N x classes),
    ranked by self-confidence (the probability of the given label, lowest first)."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    check_probabilities(labels, probs, what)
    require_extra("audit", "the audit's label search")
    from cleanlab.filter import find_label_issues
    missing = sorted(set(range(probs.shape[1])) - set(np.unique(labels).tolist()))
    if missing:
        raise ConfigError(
            f"{what}: classes {missing} have no items; the label search needs every class"
        )
    # n_jobs=1: cleanlab's multiprocessing would start a pool per call for a sub-second job.
    ranked = np.asarray(
        find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1),
        dtype=np.int64,
    )
    suggested = probs[ranked].argmax(axis=1)
    return SuspectLabels(
        indices=ranked,
        given=labels[ranked],
        suggested=suggested,
        given_probability=probs[ranked, labels[ranked]],
        suggested_probability=probs[ranked, suggested],
    )
