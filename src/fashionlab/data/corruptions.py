"""A corruption suite for 28x28 grayscale images (light object on black), in NumPy and SciPy.

The corruptions of Fashion-MNIST-C (Weiss & Tonella, ISSTA 2022) and MNIST-C (Mu & Gilmer
2019) — noise, blur, affine changes, brightness, contrast, inversion — plus Gaussian noise and
blur, translation, pixelation, JPEG and elastic transforms, each at five severities chosen for
images this small: severity 1 is barely visible, 5 leaves an item a person can still just
recognise. The common libraries do not fit: `imagecorruptions` refuses images under 32 pixels
and was calibrated for ImageNet, and the MNIST-C code needs ImageMagick and removed APIs.

Flips and quarter turns are kept apart (`OUT_OF_DISTRIBUTION`): Fashion-MNIST items are
photographed in one orientation, so a flipped boot is a new kind of input rather than a worse
copy of a known one. They have one level only.

Everything is a pure function of (images, corruption, severity, seed): the random numbers
come from a generator seeded with those, so the same call gives the same bytes on any machine
with the same NumPy, SciPy and Pillow.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from fashionlab.errors import ConfigError

SIZE = 28
SEVERITIES = (1, 2, 3, 4, 5)
_CENTRE = (SIZE - 1) / 2

Corrupt = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Corruption:
    """One corruption: `apply(images in [0, 1] float (N, 28, 28), parameter, rng)`, the
    parameter of each severity, and what that parameter means."""

    name: str
    apply: Corrupt
    levels: tuple
    parameter: str
    out_of_distribution: bool = False


# ---------------------------------------------------------------- noise


def _gaussian_noise(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return x + rng.normal(0.0, sigma, x.shape)


def _shot_noise(x: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    # Poisson counts of `photons` per unit of brightness: fewer photons, more noise.
    return rng.poisson(x * photons) / photons


def _impulse_noise(x: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    # salt and pepper: a fraction `amount` of the pixels set to black or white
    hit = rng.random(x.shape) < amount
    salt = rng.random(x.shape) < 0.5
    return np.where(hit, salt.astype(np.float64), x)


# ---------------------------------------------------------------- blur


def _gaussian_blur(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma), mode="constant")


def _glass_blur(x: np.ndarray, level: tuple, rng: np.random.Generator) -> np.ndarray:
    # As ImageNet-C's glass blur: blur, let a `share` of the pixels take a neighbour's value
    # up to `delta` pixels away (`rounds` times), blur again. At 28 px even a one-pixel move
    # of every pixel scrambles the outline, so the mild levels move only some pixels.
    sigma, delta, rounds, share = level
    x = ndimage.gaussian_filter(x, sigma=(0, sigma, sigma), mode="constant")
    n = len(x)
    rows, cols = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
    item = np.arange(n)[:, None, None]
    for _ in range(rounds):
        moved = rng.random(x.shape) < share
        dy = rng.integers(-delta, delta + 1, x.shape) * moved
        dx = rng.integers(-delta, delta + 1, x.shape) * moved
        x = x[item, np.clip(rows + dy, 0, SIZE - 1), np.clip(cols + dx, 0, SIZE - 1)]
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma), mode="constant")


_MOTION_ANGLES = 8  # directions to choose from; images are blurred in groups of one angle


def _line_kernel(length: int, angle: float) -> np.ndarray:
    kernel = np.zeros((length, length))
    centre = (length - 1) / 2
    for t in np.linspace(-centre, centre, 4 * length):
        r = int(round(centre - t * np.sin(angle)))
        c = int(round(centre + t * np.cos(angle)))
        kernel[r, c] = 1.0
    return kernel / kernel.sum()


def _motion_blur(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    which = rng.integers(0, _MOTION_ANGLES, len(x))
    out = np.empty_like(x)
    for k in range(_MOTION_ANGLES):
        chosen = which == k
        if chosen.any():
            kernel = _line_kernel(length, np.pi * k / _MOTION_ANGLES)
            out[chosen] = ndimage.convolve(x[chosen], kernel[None], mode="constant")
    return out


# ---------------------------------------------------------------- geometry


def _affine(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Each image mapped through the 2x2 `matrix` about its centre (output -> input
    coordinates, bilinear, black outside), all images at once."""
    full = np.eye(3)
    full[1:, 1:] = matrix
    centre = np.array([0.0, _CENTRE, _CENTRE])
    offset = centre - full @ centre
    return ndimage.affine_transform(x, full, offset=offset, order=1, mode="constant")


def _random_signs(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 2, n) * 2 - 1


def _by_sign(x: np.ndarray, rng: np.random.Generator, matrix_of: Callable) -> np.ndarray:
    signs = _random_signs(len(x), rng)
    out = np.empty_like(x)
    for sign in (-1, 1):
        chosen = signs == sign
        if chosen.any():
            out[chosen] = _affine(x[chosen], matrix_of(sign))
    return out


def _rotate(x: np.ndarray, degrees: float, rng: np.random.Generator) -> np.ndarray:
    def matrix(sign: int) -> np.ndarray:
        a = np.deg2rad(sign * degrees)
        return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])

    return _by_sign(x, rng, matrix)


def _shear(x: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    return _by_sign(x, rng, lambda sign: np.array([[1.0, 0.0], [sign * amount, 1.0]]))


def _scale(x: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    # the item shrinks to `factor` of its size about the centre (MNIST-C's scale)
    return _affine(x, np.eye(2) / factor)


def _translate(x: np.ndarray, pixels: int, rng: np.random.Generator) -> np.ndarray:
    # `pixels` in one of eight directions, chosen per image; what leaves the frame is lost
    which = rng.integers(0, 8, len(x))
    out = np.empty_like(x)
    for k in range(8):
        chosen = which == k
        if chosen.any():
            angle = np.pi * k / 4
            dy, dx = round(-pixels * np.sin(angle)), round(pixels * np.cos(angle))
            out[chosen] = ndimage.shift(x[chosen], (0, dy, dx), order=0, mode="constant")
    return out


def _elastic(x: np.ndarray, level: tuple, rng: np.random.Generator) -> np.ndarray:
    # Simard et al. 2003: a random displacement field, smoothed by a Gaussian of `sigma`
    # pixels and scaled by `alpha`, applied bilinearly.
    alpha, sigma = level
    shape = x.shape
    fields = [
        ndimage.gaussian_filter(rng.uniform(-1, 1, shape), (0, sigma, sigma), mode="constant")
        * alpha
        for _ in range(2)
    ]
    item, rows, cols = np.meshgrid(
        np.arange(shape[0]), np.arange(SIZE), np.arange(SIZE), indexing="ij"
    )
    coords = np.stack([item, rows + fields[0], cols + fields[1]])
    return ndimage.map_coordinates(x, coords, order=1, mode="constant")


# ---------------------------------------------------------------- intensity


def _brightness(x: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    return x + amount


def _contrast(x: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    mean = x.mean(axis=(1, 2), keepdims=True)
    return (x - mean) * factor + mean


def _inverse(x: np.ndarray, mix: float, rng: np.random.Generator) -> np.ndarray:
    # Fashion-MNIST-C's inverse is `mix = 1`; the lower levels blend towards it
    return (1.0 - mix) * x + mix * (1.0 - x)


# ---------------------------------------------------------------- compression


def _through_pillow(x: np.ndarray, convert: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    out = np.empty_like(x)
    pixels = _to_uint8(x)
    for i, image in enumerate(pixels):
        out[i] = np.asarray(convert(Image.fromarray(image, mode="L")), dtype=np.float64) / 255
    return out


def _pixelate(x: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    def convert(image: Image.Image) -> Image.Image:
        small = image.resize((side, side), Image.Resampling.BOX)
        return small.resize((SIZE, SIZE), Image.Resampling.NEAREST)

    return _through_pillow(x, convert)


def _jpeg(x: np.ndarray, quality: int, rng: np.random.Generator) -> np.ndarray:
    def convert(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("L")

    return _through_pillow(x, convert)


# ---------------------------------------------------------------- out of distribution


def _flip_lr(x: np.ndarray, _: object, rng: np.random.Generator) -> np.ndarray:
    return x[:, :, ::-1]


def _flip_ud(x: np.ndarray, _: object, rng: np.random.Generator) -> np.ndarray:
    return x[:, ::-1, :]


def _turn_left(x: np.ndarray, _: object, rng: np.random.Generator) -> np.ndarray:
    return np.rot90(x, 1, axes=(1, 2))


def _turn_right(x: np.ndarray, _: object, rng: np.random.Generator) -> np.ndarray:
    return np.rot90(x, -1, axes=(1, 2))


_SUITE = (
    Corruption("gaussian_noise", _gaussian_noise, (0.04, 0.08, 0.12, 0.18, 0.26), "std"),
    Corruption("shot_noise", _shot_noise, (200, 90, 40, 18, 8), "photons per unit"),
    Corruption("impulse_noise", _impulse_noise, (0.01, 0.03, 0.05, 0.09, 0.15), "pixel share"),
    Corruption("gaussian_blur", _gaussian_blur, (0.4, 0.6, 0.8, 1.0, 1.3), "sigma (px)"),
    Corruption(
        "glass_blur",
        _glass_blur,
        ((0.3, 1, 1, 0.25), (0.4, 1, 1, 0.5), (0.5, 1, 2, 0.5), (0.6, 1, 2, 1.0), (0.7, 2, 2, 1.0)),
        "(sigma, max shift, rounds, share moved)",
    ),
    Corruption("motion_blur", _motion_blur, (3, 5, 7, 9, 11), "kernel length (px)"),
    Corruption("shear", _shear, (0.1, 0.2, 0.3, 0.45, 0.6), "shear factor"),
    Corruption("scale", _scale, (0.9, 0.8, 0.7, 0.6, 0.5), "size factor"),
    Corruption("rotate", _rotate, (8, 16, 25, 35, 50), "degrees"),
    Corruption("translate", _translate, (1, 2, 3, 4, 6), "pixels"),
    Corruption(
        "elastic",
        _elastic,
        ((6, 3.5), (10, 3.5), (14, 3.5), (20, 3.5), (28, 3.5)),
        "(alpha, sigma)",
    ),  # fmt: skip
    Corruption("pixelate", _pixelate, (20, 16, 13, 10, 8), "side before upscaling (px)"),
    Corruption("jpeg", _jpeg, (30, 18, 12, 8, 5), "JPEG quality"),
    Corruption("brightness", _brightness, (0.08, 0.16, 0.24, 0.34, 0.45), "added"),
    Corruption("contrast", _contrast, (0.6, 0.45, 0.3, 0.2, 0.12), "contrast factor"),
    Corruption("inverse", _inverse, (0.2, 0.4, 0.6, 0.8, 1.0), "blend towards the negative"),
    Corruption("flip_lr", _flip_lr, (None,), "", out_of_distribution=True),
    Corruption("flip_ud", _flip_ud, (None,), "", out_of_distribution=True),
    Corruption("turn_left", _turn_left, (None,), "", out_of_distribution=True),
    Corruption("turn_right", _turn_right, (None,), "", out_of_distribution=True),
)
CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in _SUITE}
IN_DISTRIBUTION: tuple[str, ...] = tuple(c.name for c in _SUITE if not c.out_of_distribution)
OUT_OF_DISTRIBUTION: tuple[str, ...] = tuple(c.name for c in _SUITE if c.out_of_distribution)


def get_corruption(name: str) -> Corruption:
    try:
        return CORRUPTIONS[name]
    except KeyError:
        raise ConfigError(
            f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}"
        ) from None


def check_severity(corruption: Corruption, severity: int) -> int:
    """The severity as an int, or a ConfigError: 1..5, or 1 for the one-level
    out-of-distribution transforms."""
    top = len(corruption.levels)
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)):
        raise ConfigError(f"severity must be an integer 1..{top}, got {severity!r}")
    if not 1 <= severity <= top:
        what = "has one level: use severity 1" if top == 1 else f"takes severities 1..{top}"
        raise ConfigError(f"{corruption.name} {what}, got {severity}")
    return int(severity)


def levels_of(name: str, severities: Sequence[int] = SEVERITIES) -> tuple[int, ...]:
    """The severities that apply to corruption `name`: the given ones, or (1,) for a flip or
    a turn, which has one level."""
    corruption = get_corruption(name)
    if corruption.out_of_distribution:
        return (1,)
    return tuple(check_severity(corruption, s) for s in severities)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


def _generator(name: str, severity: int, seed: int) -> np.random.Generator:
    # crc32, not hash(): Python salts str hashes per process
    return np.random.default_rng([int(seed), zlib.crc32(name.encode()), int(severity)])


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """`images` (N, 28, 28) uint8 with corruption `name` at `severity` (1..5), as uint8.

    The result depends only on the arguments (and the NumPy, SciPy and Pillow versions)."""
    corruption = get_corruption(name)
    severity = check_severity(corruption, severity)
    arr = np.asarray(images)
    if arr.ndim != 3 or arr.shape[1:] != (SIZE, SIZE) or arr.dtype != np.uint8:
        raise ConfigError(
            f"corruptions take uint8 images of shape (N, {SIZE}, {SIZE}); got "
            f"{arr.dtype} {arr.shape}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    x = arr.astype(np.float64) / 255.0
    rng = _generator(name, severity, seed)
    out = corruption.apply(x, corruption.levels[severity - 1], rng)
    return np.ascontiguousarray(_to_uint8(out))


def digest(images: np.ndarray) -> str:
    """SHA-256 of the uint8 bytes (with the shape): what a robustness result records of the
    corrupted set it was measured on."""
    arr = np.ascontiguousarray(images, dtype=np.uint8)
    h = hashlib.sha256(repr(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def corrupt_random(
    images: np.ndarray, names: Sequence[str], max_severity: int, rng: np.random.Generator
) -> np.ndarray:
    """Training augmentation: each image gets one of `names` at a severity drawn from
    1..`max_severity` (a flip or turn at its one level), grouped so that each corruption runs
    once per batch. The corruption seeds come from `rng`, so a seeded `rng` reproduces the
    batch."""
    if not names:
        return images
    out = np.array(images, copy=True)
    which = rng.integers(0, len(names), len(images))
    levels = rng.integers(1, max_severity + 1, len(images))
    for k, name in enumerate(names):
        top = len(get_corruption(name).levels)
        for severity in range(1, max_severity + 1):
            chosen = (which == k) & (np.minimum(levels, top) == severity)
            if chosen.any():
                seed = int(rng.integers(0, 2**63 - 1))
                out[chosen] = corrupt(images[chosen], name, severity, seed)
    return out
