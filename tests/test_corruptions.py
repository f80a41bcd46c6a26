"""The corruption suite: shape, range, determinism, graded severity, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from fashionlab.data.corruptions import (
    CORRUPTIONS,
    IN_DISTRIBUTION,
    OUT_OF_DISTRIBUTION,
    corrupt,
    corrupt_random,
    digest,
    levels_of,
)
from fashionlab.errors import ConfigError


@pytest.fixture(scope="module")
def items(fashion) -> np.ndarray:
    return fashion.test_images.numpy()[:300]


def test_the_suite_covers_fashion_mnist_c_and_more():
    wanted = {"shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale",
              "rotate", "brightness", "contrast", "inverse", "gaussian_noise", "gaussian_blur",
              "translate", "pixelate", "jpeg", "elastic"}  # fmt: skip
    assert wanted <= set(IN_DISTRIBUTION)
    assert set(OUT_OF_DISTRIBUTION) == {"flip_lr", "flip_ud", "turn_left", "turn_right"}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_shape_range_and_determinism(items, name):
    for severity in levels_of(name):
        out = corrupt(items, name, severity, seed=3)
        assert out.shape == items.shape and out.dtype == np.uint8
        again = corrupt(items, name, severity, seed=3)
        assert digest(out) == digest(again)
        assert not np.array_equal(out, items)


@pytest.mark.parametrize("name", IN_DISTRIBUTION)
def test_severity_grades_from_mild_to_severe(items, name):
    """The mean pixel distance to the clean images grows with every severity step."""
    distances = [
        np.abs(corrupt(items, name, s, seed=0).astype(np.float64) - items).mean()
        for s in range(1, 6)
    ]
    assert all(b > a for a, b in zip(distances, distances[1:], strict=False)), distances


RANDOM = ("gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur",
          "rotate", "shear", "translate", "elastic")  # fmt: skip


@pytest.mark.parametrize("name", RANDOM)
def test_the_seed_changes_random_corruptions_only(items, name):
    assert digest(corrupt(items, name, 3, seed=0)) != digest(corrupt(items, name, 3, seed=1))


def test_deterministic_corruptions_ignore_the_seed(items):
    for name in ("gaussian_blur", "scale", "pixelate", "jpeg", "brightness", "contrast"):
        assert digest(corrupt(items, name, 2, seed=0)) == digest(corrupt(items, name, 2, seed=9))


def test_flips_and_turns_are_what_they_say(items):
    np.testing.assert_array_equal(corrupt(items, "flip_lr", 1), items[:, :, ::-1])
    np.testing.assert_array_equal(corrupt(items, "flip_ud", 1), items[:, ::-1])
    left = corrupt(items, "turn_left", 1)
    np.testing.assert_array_equal(corrupt(left, "turn_right", 1), items)


def test_digest_depends_on_bytes_and_shape():
    a = np.zeros((2, 28, 28), np.uint8)
    assert digest(a) != digest(a.reshape(1, 56, 28))
    b = a.copy()
    b[1, 3, 4] = 1
    assert digest(a) != digest(b)


@pytest.mark.parametrize(
    ("name", "severity", "match"),
    [
        ("fog", 1, "unknown corruption 'fog'"),
        ("rotate", 0, "severities 1..5"),
        ("rotate", 6, "severities 1..5"),
        ("rotate", 2.5, "integer"),
        ("flip_lr", 2, "one level"),
    ],
)
def test_bad_names_and_severities(items, name, severity, match):
    with pytest.raises(ConfigError, match=match):
        corrupt(items, name, severity)


@pytest.mark.parametrize(
    "images",
    [np.zeros((2, 32, 32), np.uint8), np.zeros((28, 28), np.uint8), np.zeros((2, 28, 28))],
)
def test_bad_images(images):
    with pytest.raises(ConfigError, match="uint8 images of shape"):
        corrupt(images, "rotate", 1)


def test_random_augmentation_is_reproducible_and_uses_the_given_corruptions(items):
    names = ["rotate", "gaussian_noise", "flip_ud"]
    a = corrupt_random(items, names, 3, np.random.default_rng(5))
    b = corrupt_random(items, names, 3, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert (a != items).reshape(len(items), -1).any(axis=1).mean() > 0.95
    assert corrupt_random(items, [], 3, np.random.default_rng(0)) is items
