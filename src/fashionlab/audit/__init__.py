"""The data audit: train/test duplicates and suspect labels, and what they do to the scores
(`duplicates`: exact and near-duplicates, `labels`: cleanlab's label-issue search,
`crossval`: out-of-sample probabilities for the training set, `scores`: accuracy on cleaned
test subsets, `api`: `audit_data`, which writes the audit folder and its report)."""

from fashionlab.audit.api import AuditSettings, audit_data
from fashionlab.audit.crossval import CrossValSettings, cross_validated_probabilities
from fashionlab.audit.duplicates import (
    DuplicateGroup,
    NearestTrain,
    exact_duplicates,
    nearest_train,
    pixel_embedding,
)
from fashionlab.audit.labels import SuspectLabels, find_suspect_labels
from fashionlab.audit.scores import SUBSETS, keep_masks, subset_accuracies

__all__ = [
    "SUBSETS",
    "AuditSettings",
    "CrossValSettings",
    "DuplicateGroup",
    "NearestTrain",
    "SuspectLabels",
    "audit_data",
    "cross_validated_probabilities",
    "exact_duplicates",
    "find_suspect_labels",
    "keep_masks",
    "nearest_train",
    "pixel_embedding",
    "subset_accuracies",
]
