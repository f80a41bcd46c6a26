"""Two runs side by side: accuracies and McNemar's test on the test items both saw."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from fashionlab.errors import RunError
from fashionlab.evaluation import accuracy, mcnemar
from fashionlab.runs import load_predictions


def compare_runs(run_a: str | os.PathLike, run_b: str | os.PathLike) -> dict[str, Any]:
    """Accuracy of each, the items only one got right, and McNemar's statistic and p-value;
    a RunError when they were tested on different items."""
    a, b = load_predictions(run_a), load_predictions(run_b)
    if not np.array_equal(a["labels"], b["labels"]):
        raise RunError(f"{run_a} and {run_b} were tested on different items")
    result = mcnemar(a["labels"], a["logits"], b["logits"])
    return {
        "a": os.fspath(run_a),
        "b": os.fspath(run_b),
        "accuracy_a": accuracy(a["labels"], a["logits"]),
        "accuracy_b": accuracy(b["labels"], b["logits"]),
        "only_a_right": int(result.b),
        "only_b_right": int(result.c),
        "statistic": float(result.statistic),
        "p_value": float(result.p_value),
        "method": result.method,
    }
