"""Per-batch pipeline: normalisation presets, seeded batched augmentation, BatchIterator."""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest
import torch
import torch.nn.functional as F

from fashionlab.data import BatchIterator, Normalizer, augment_batch, make_normalizer
from fashionlab.data import transforms as transforms_module
from fashionlab.data.transforms import random_crop, random_erasing, random_hflip
from fashionlab.errors import ConfigError


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


pytestmark = pytest.mark.usefixtures("one_torch_thread")

# ------------------------------------------------------------------ normalisation


@pytest.mark.parametrize(
    "preset,black,white",
    [
        ("dataset", -0.2860 / 0.3530, (1 - 0.2860) / 0.3530),
        ("half", -1.0, 1.0),
        ("unit", 0.0, 1.0),
    ],
)
def test_fixed_presets_map_black_and_white(preset: str, black: float, white: float) -> None:
    images = torch.tensor([[[0] * 28] * 28, [[255] * 28] * 28], dtype=torch.uint8)
    x = make_normalizer(preset)(images)
    assert x.shape == (2, 1, 28, 28) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.tensor(black), atol=1e-6)
    assert torch.allclose(x[1], torch.tensor(white), atol=1e-6)
    assert images.dtype == torch.uint8 and images.max() == 255  # input left untouched


def test_zscore_uses_training_statistics_only(fashion) -> None:
    train, test = fashion.train_images[:6000], fashion.test_images[:2000]
    norm = make_normalizer("zscore", train)
    x = norm(train)
    assert x.shape == (6000, 1, 28, 28) and x.dtype == torch.float32
    # Per pixel, the normalised training images have mean ~0 (and std <= 1: eps in the std).
    assert x.mean(dim=0).abs().max() < 1e-4
    assert x.std(dim=0, unbiased=False).max() <= 1.0 + 1e-4
    ref = train.double() / 255
    assert torch.allclose(norm.mean.double(), ref.mean(dim=0), atol=1e-6)
    assert torch.allclose(
        norm.std.double(), ref.std(dim=0, unbiased=False) + transforms_module.ZSCORE_EPS, atol=1e-6
    )
    # Fitting on anything else gives other statistics: the test set never leaks in.
    assert not torch.allclose(make_normalizer("zscore", test).mean, norm.mean, atol=1e-3)
    y = norm(test)
    assert y.shape == (2000, 1, 28, 28) and torch.isfinite(y).all()


def test_zscore_needs_training_images_and_unknown_preset_fails() -> None:
    with pytest.raises(ConfigError, match="zscore"):
        make_normalizer("zscore")
    with pytest.raises(ConfigError, match="zscore"):
        make_normalizer("zscore", torch.empty(0, 28, 28, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="unknown normalization 'minmax'"):
        make_normalizer("minmax")


def test_normalizer_state_round_trip() -> None:
    images = torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8)
    norm = make_normalizer("zscore", images)
    again = Normalizer.from_state("zscore", norm.state_dict())
    assert torch.equal(again(images), norm(images))


# ------------------------------------------------------------------ augmentation


def batch(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, generator=gen(seed))


def test_augmentation_is_seeded_and_keeps_shape() -> None:
    x = batch(32)
    options = {"crop_padding": 3, "crop_mode": "reflect", "hflip": True, "erasing": 0.5}
    a = augment_batch(x, gen(1), **options)
    b = augment_batch(x, gen(1), **options)
    c = augment_batch(x, gen(2), **options)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(augment_batch(x, gen(1)), x)  # nothing configured: identity


@pytest.mark.parametrize("padding", [1, 4])
def test_crop_moves_content_by_at_most_the_padding(padding: int) -> None:
    x = torch.zeros(200, 1, 28, 28)
    x[:, 0, 14, 10] = 1.0  # one bright pixel, well inside the image
    out = random_crop(x, padding, gen(0))
    assert out.shape == x.shape
    positions = (out[:, 0] == 1.0).nonzero()[:, 1:]
    assert len(positions) == 200  # exactly one bright pixel per image, none lost
    shifts = positions - torch.tensor([14, 10])
    assert shifts.abs().max() <= padding
    # Every shift in [-p, p] shows up on 200 draws: the window really is random.
    assert shifts[:, 0].unique().numel() == 2 * padding + 1
    assert shifts[:, 1].unique().numel() == 2 * padding + 1


@pytest.mark.parametrize("mode,pad_mode", [("zero", "constant"), ("reflect", "reflect")])
def test_crop_is_a_window_of_the_padded_image(mode: str, pad_mode: str) -> None:
    p = 2
    x = batch(24)
    out = random_crop(x, p, gen(3), mode=mode)
    padded = F.pad(x, (p,) * 4, mode=pad_mode)
    for i in range(len(x)):  # test-side loop; the implementation is batched
        windows = [
            padded[i, :, dy : dy + 28, dx : dx + 28]
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
        ]
        assert any(torch.equal(out[i], w) for w in windows)


def test_zero_and_reflect_padding_differ_at_the_border() -> None:
    x = torch.ones(64, 1, 28, 28)
    zero = random_crop(x, 3, gen(0), mode="zero")
    reflect = random_crop(x, 3, gen(0), mode="reflect")
    assert (zero == 0).any()  # shifted windows bring in zero borders
    assert torch.equal(reflect, x)  # the reflection of a flat image is flat


def test_crop_rejects_unknown_mode_and_oversized_reflect() -> None:
    with pytest.raises(ConfigError, match="unknown crop mode 'wrap'"):
        augment_batch(batch(), gen(0), crop_padding=2, crop_mode="wrap")
    with pytest.raises(ConfigError, match="reflect padding"):
        random_crop(batch(), 28, gen(0), mode="reflect")


def test_hflip_flips_exactly_the_selected_images() -> None:
    x = batch(64)  # random images: none is its own mirror image
    out = random_hflip(x, gen(5))
    selected = torch.rand(64, generator=gen(5)) < 0.5  # the same draw the flip makes
    assert 0 < selected.sum() < 64
    for i in range(64):
        assert torch.equal(out[i], x[i].flip(-1) if selected[i] else x[i])
    assert torch.equal(random_hflip(x, gen(5), p=0.0), x)
    assert torch.equal(random_hflip(x, gen(5), p=1.0), x.flip(-1))


def test_erasing_zeroes_one_rectangle_with_p1_and_nothing_with_p0() -> None:
    x = torch.ones(50, 1, 28, 28)
    assert torch.equal(random_erasing(x, gen(0), p=0.0), x)
    out = random_erasing(x, gen(0), p=1.0)
    assert out.shape == x.shape
    zero = out[:, 0] == 0  # (N, 28, 28)
    rows, cols = zero.any(dim=2), zero.any(dim=1)  # (N, 28) each
    # The zeros are exactly the product of a set of rows and a set of columns ...
    assert torch.equal(zero, rows[:, :, None] & cols[:, None, :])
    # ... each one contiguous run: a single rectangle per image, never empty.
    for hit in (rows, cols):
        assert hit.any(dim=1).all()
        first = hit.float().argmax(dim=1)
        last = 27 - hit.flip(1).float().argmax(dim=1)
        assert torch.equal(hit.sum(dim=1), last - first + 1)
    assert zero.flatten(1).sum(1).max() <= 0.33 * 784 * 1.2  # scale bound, room for rounding


def test_erasing_with_half_probability_erases_some() -> None:
    out = random_erasing(torch.ones(100, 1, 28, 28), gen(0), p=0.5)
    erased = (out == 0).flatten(1).any(1).sum().item()
    assert 20 < erased < 80


def test_augmentation_has_no_per_sample_python_loop() -> None:
    # The whole batch goes through tensor ops: a Python loop over samples costs ~100x.
    for fn in (augment_batch, random_crop, random_hflip, random_erasing):
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        loops = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.For | ast.While | ast.comprehension)
        ]
        assert loops == [], f"{fn.__name__} loops in Python"


# ------------------------------------------------------------------ batches


def items(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Each image holds its own index, so batches can be traced back to items.
    return torch.arange(n).view(n, 1, 1).expand(n, 28, 28).clone(), torch.arange(n)


def test_batches_cover_every_item_once_per_epoch() -> None:
    images, labels = items(103)
    it = BatchIterator(images, labels, batch_size=10, shuffle=True, generator=gen(0))
    epochs = []
    for _ in range(2):
        seen = [(x[:, 0, 0], y) for x, y in it]
        assert len(seen) == len(it) == 11
        order = torch.cat([y for _x, y in seen])
        assert torch.equal(torch.cat([x for x, _y in seen]), order)  # images stay with labels
        assert torch.equal(order.sort().values, torch.arange(103))
        epochs.append(order)
    assert not torch.equal(epochs[0], epochs[1])  # reshuffled every epoch


def test_batches_shuffle_is_seeded() -> None:
    images, labels = items(50)

    def order(seed: int) -> torch.Tensor:
        it = BatchIterator(images, labels, batch_size=8, shuffle=True, generator=gen(seed))
        return torch.cat([y for _x, y in it])

    assert torch.equal(order(1), order(1))
    assert not torch.equal(order(1), order(2))


def test_batches_without_shuffle_keep_order() -> None:
    images, labels = items(25)
    it = BatchIterator(images, labels, batch_size=10)
    assert [len(y) for _x, y in it] == [10, 10, 5]
    assert torch.equal(torch.cat([y for _x, y in it]), torch.arange(25))


@pytest.mark.parametrize("shuffle", [False, True])
def test_drop_last(shuffle: bool) -> None:
    images, labels = items(103)
    it = BatchIterator(images, labels, 10, shuffle=shuffle, generator=gen(0), drop_last=True)
    sizes = [len(y) for _x, y in it]
    assert len(it) == 10 and sizes == [10] * 10
    assert len(BatchIterator(images, labels, 10)) == 11
    assert len(BatchIterator(images[:100], labels[:100], 10, drop_last=True)) == 10
    assert len(BatchIterator(images[:5], labels[:5], 10, drop_last=True)) == 0


def test_batches_reject_bad_arguments() -> None:
    images, labels = items(10)
    with pytest.raises(ValueError, match="10 images but 9 labels"):
        BatchIterator(images, labels[:9], 4)
    with pytest.raises(ValueError, match="batch_size"):
        BatchIterator(images, labels, 0)
