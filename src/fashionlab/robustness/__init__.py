"""Robustness to corrupted images: score runs and studies on the corruption suite of
`fashionlab.data.corruptions` (`sets`: the corrupted test sets, `score`: one run's results
and corruption errors, `api`: runs and studies, with McNemar tests between models)."""

from fashionlab.robustness.api import score_robustness
from fashionlab.robustness.score import (
    PREDICTIONS_FILE,
    corruption_errors,
    score_run,
)
from fashionlab.robustness.sets import DEFAULT_ITEMS, build_sets, parse_severities

__all__ = [
    "DEFAULT_ITEMS",
    "PREDICTIONS_FILE",
    "build_sets",
    "corruption_errors",
    "parse_severities",
    "score_robustness",
    "score_run",
]
