"""Seeded splits of the real dataset: sizes, determinism, disjoint and covering parts, exact
class proportions for the stratified kinds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fashionlab.data import make_split, random_split_indices, stratified_split_indices
from fashionlab.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def assert_partition(parts: list[np.ndarray], n: int) -> None:
    """The parts are sorted, disjoint and together hold every index 0..n-1 exactly once."""
    for part in parts:
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(n))


# ------------------------------------------------------------------ index functions


@pytest.mark.parametrize(
    "fractions,sizes", [([0.9, 0.1], [54_000, 6_000]), ([0.8, 0.2], [48_000, 12_000])]
)
@pytest.mark.parametrize("stratified", [False, True], ids=["random", "stratified"])
def test_two_way_split_sizes_determinism_and_coverage(
    fashion, fractions, sizes, stratified: bool
) -> None:
    labels = fashion.train_labels.numpy()

    def split(seed: int) -> list[np.ndarray]:
        if stratified:
            return stratified_split_indices(labels, fractions, seed)
        return random_split_indices(len(labels), fractions, seed)

    parts = split(7)
    assert [len(p) for p in parts] == sizes
    assert_partition(parts, 60_000)
    for a, b in zip(parts, split(7), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(parts[1], split(8)[1])
    if stratified:
        # Exactly the same share of every class: 6,000 per class in train.
        for part, size in zip(parts, sizes, strict=True):
            counts = np.bincount(labels[part], minlength=10)
            assert counts.tolist() == [size // 10] * 10


def test_random_split_is_not_stratified_by_accident(fashion) -> None:
    labels = fashion.train_labels.numpy()
    _, val = random_split_indices(len(labels), [0.9, 0.1], seed=7)
    assert np.bincount(labels[val], minlength=10).tolist() != [600] * 10


def test_split_depends_only_on_seed_not_on_global_rng(fashion) -> None:
    labels = fashion.train_labels.numpy()
    np.random.seed(1)
    torch.manual_seed(1)
    a = stratified_split_indices(labels, [0.9, 0.1], seed=3)
    np.random.seed(2)
    torch.manual_seed(2)
    b = stratified_split_indices(labels, [0.9, 0.1], seed=3)
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize(
    "fractions",
    [[0.9, 0.2], [1.0, 0.0], [1.1, -0.1], [float("nan"), 0.5], [], [0.5, float("nan")]],
)
def test_bad_fractions_are_config_errors(fractions) -> None:
    with pytest.raises(ConfigError, match="fractions"):
        random_split_indices(10, fractions, seed=0)
    with pytest.raises(ConfigError, match="fractions"):
        stratified_split_indices(np.arange(10) % 2, fractions, seed=0)


def test_fraction_too_small_for_the_data_is_an_error() -> None:
    # 0.01 of 20 items rounds to an empty validation part.
    with pytest.raises(ConfigError, match="empty part"):
        random_split_indices(20, [0.99, 0.01], seed=0)
    with pytest.raises(ConfigError, match="empty part"):
        stratified_split_indices(np.arange(20) % 2, [0.99, 0.01], seed=0)


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_bad_seed_is_a_config_error(seed) -> None:
    with pytest.raises(ConfigError, match="seed"):
        random_split_indices(10, [0.5, 0.5], seed=seed)


# ------------------------------------------------------------------ make_split


@pytest.mark.parametrize(
    "kind,val_fraction,sizes",
    [
        ("random", 0.1, (54_000, 6_000, 10_000)),
        ("stratified", 0.1, (54_000, 6_000, 10_000)),
        ("stratified", 0.2, (48_000, 12_000, 10_000)),
        ("pooled", 0.1, (42_000, 14_000, 14_000)),
    ],
)
def test_make_split_parts_match_their_indices(fashion, kind, val_fraction, sizes) -> None:
    split = make_split(fashion, kind, val_fraction, seed=5)
    assert (len(split.train.labels), len(split.val.labels), len(split.test.labels)) == sizes
    # make_split is the (seeded, deterministic) index functions plus a gather.
    if kind == "random":
        expected = random_split_indices(60_000, [1 - val_fraction, val_fraction], 5)
    elif kind == "stratified":
        expected = stratified_split_indices(
            fashion.train_labels.numpy(), [1 - val_fraction, val_fraction], 5
        )
    else:
        pooled = torch.cat([fashion.train_labels, fashion.test_labels]).numpy()
        expected = stratified_split_indices(pooled, [0.6, 0.2, 0.2], 5)
    for got, want in zip((split.train.indices, split.val.indices), expected, strict=False):
        np.testing.assert_array_equal(got, want)
    if kind == "pooled":
        # S4: all 70k pooled, then 60/20/20 stratified (7,000 per class).
        assert split.test_pool == "pooled"
        images = torch.cat([fashion.train_images, fashion.test_images])
        labels = torch.cat([fashion.train_labels, fashion.test_labels])
        parts = [split.train.indices, split.val.indices, split.test.indices]
        assert_partition(parts, 70_000)
        for part, size in zip(parts, sizes, strict=True):
            assert torch.bincount(labels[part], minlength=10).tolist() == [size // 10] * 10
        test_images, test_labels = images, labels
    else:
        assert split.test_pool == "test"
        images, labels = fashion.train_images, fashion.train_labels
        assert_partition([split.train.indices, split.val.indices], 60_000)
        np.testing.assert_array_equal(split.test.indices, np.arange(10_000))
        test_images, test_labels = fashion.test_images, fashion.test_labels
    for part_images, part_labels, idx, pool_images, pool_labels in (
        (split.train.images, split.train.labels, split.train.indices, images, labels),
        (split.val.images, split.val.labels, split.val.indices, images, labels),
        (split.test.images, split.test.labels, split.test.indices, test_images, test_labels),
    ):
        assert part_images.dtype == torch.uint8 and part_labels.dtype == torch.int64
        assert torch.equal(part_labels, pool_labels[idx])
        # Images: a sample of rows is enough (a full second gather costs ~0.3 s per part).
        rows = torch.from_numpy(np.random.default_rng(0).choice(len(idx), 500))
        assert torch.equal(part_images[rows], pool_images[idx[rows.numpy()]])


@pytest.mark.parametrize("kind", ["random", "stratified"])
def test_zero_validation_fraction_trains_on_all_60k(fashion, kind) -> None:
    split = make_split(fashion, kind, 0.0, seed=5)
    assert len(split.val.labels) == 0 and len(split.val.indices) == 0
    np.testing.assert_array_equal(split.train.indices, np.arange(60_000))
    assert torch.equal(split.train.labels, fashion.train_labels)


def test_pooled_indices_are_deterministic_per_seed(fashion) -> None:
    labels = torch.cat([fashion.train_labels, fashion.test_labels]).numpy()
    a, b, c = (stratified_split_indices(labels, [0.6, 0.2, 0.2], s) for s in (11, 11, 12))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[2], c[2])


def test_make_split_does_not_change_the_dataset(fashion) -> None:
    before = fashion.test_labels.clone()
    split = make_split(fashion, "random", 0.1, seed=0)
    # The split owns its tensors: changing them leaves the shared, loaded-once dataset alone.
    split.test.labels[:] = 0
    assert torch.equal(fashion.test_labels, before)


def test_unknown_split_kind(fashion) -> None:
    with pytest.raises(ConfigError, match="unknown split 'kfold'; allowed: random, stratified"):
        make_split(fashion, "kfold")
