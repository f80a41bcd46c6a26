"""The corrupted test sets a robustness evaluation scores: built once per command and shared
by every run that uses the same test items."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fashionlab.data.corruptions import (
    IN_DISTRIBUTION,
    OUT_OF_DISTRIBUTION,
    SEVERITIES,
    corrupt,
    digest,
    get_corruption,
    levels_of,
)
from fashionlab.errors import ConfigError

# 1,000 class-balanced items: a whole model's 84 sets in about a minute on two cores (the
# s0-m2 MLP in fp32 is the slowest); pass items=None for the full test set, as the -C
# benchmarks use.
DEFAULT_ITEMS = 1000


def check_names(corruptions: Sequence[str] | None) -> tuple[str, ...]:
    """The corruptions to run, validated; None means the whole suite (flips/turns included)."""
    if corruptions is None:
        return (*IN_DISTRIBUTION, *OUT_OF_DISTRIBUTION)
    names = tuple(dict.fromkeys(corruptions))
    if not names:
        raise ConfigError("no corruptions given; drop --corruptions to run the whole suite")
    for name in names:
        get_corruption(name)
    return names


def parse_severities(text: str) -> tuple[int, ...]:
    """'1-5', '3' or '1,3,5' -> (1, 2, 3, 4, 5) / (3,) / (1, 3, 5); anything else, or a value
    outside 1..5, is a ConfigError."""
    try:
        if "-" in text:
            low, high = (int(p) for p in text.split("-", 1))
            values = tuple(range(low, high + 1))
        else:
            values = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise ConfigError(f"severities must look like 1-5, 3 or 1,3,5; got {text!r}") from None
    if not values or any(v not in SEVERITIES for v in values):
        raise ConfigError(f"severities must be between 1 and 5, got {text!r}")
    return tuple(sorted(set(values)))


def balanced_subset(labels: np.ndarray, items: int | None) -> np.ndarray:
    """Indices of the first `items // classes` items of each class (in test-set order), or
    every index for `items=None`; so a subset has the same classes in the same proportion."""
    if items is None or items >= len(labels):
        return np.arange(len(labels))
    if isinstance(items, bool) or not isinstance(items, (int, np.integer)) or items < 1:
        raise ConfigError(f"items must be a positive integer, got {items!r}")
    classes = np.unique(labels)
    per_class = max(1, items // len(classes))
    chosen = [np.flatnonzero(labels == c)[:per_class] for c in classes]
    return np.sort(np.concatenate(chosen))


@dataclass
class CorruptedSet:
    corruption: str
    severity: int
    images: np.ndarray
    sha256: str


@dataclass
class CorruptedSets:
    """Every (corruption, severity) version of one clean set of test items."""

    clean: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    seed: int
    sets: list[CorruptedSet] = field(default_factory=list)

    @property
    def clean_sha256(self) -> str:
        return digest(self.clean)


def build_sets(
    images: np.ndarray,
    labels: np.ndarray,
    indices: np.ndarray,
    corruptions: Sequence[str],
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
) -> CorruptedSets:
    """Corrupt `images` (uint8 (N, 28, 28)) with each corruption at each severity (flips and
    turns at their one level)."""
    out = CorruptedSets(images, labels, indices, seed)
    for name in corruptions:
        for severity in levels_of(name, severities):
            corrupted = corrupt(images, name, severity, seed)
            out.sets.append(CorruptedSet(name, severity, corrupted, digest(corrupted)))
    return out
