"""User image -> a 28x28 uint8 image in the style of Fashion-MNIST, plus the steps taken.

Two stages:

* `load_image` decodes untrusted input (image bytes, an image file or a 28x28 `.npy`) into a
  2-D **float32 array in [0, 1]** (0 = black, 1 = white). Float rather than uint8 so that
  16-bit PNGs, transparency compositing and float `.npy` arrays lose nothing before the final
  resize; images larger than `WORK_MAX_SIDE` on their longer side are area-averaged down
  (the output is 28x28, so nothing visible is lost and later steps stay cheap).
* `preprocess` makes it look like a Fashion-MNIST item (light object on black, cropped,
  squared, longer side 28, centred) -- or `as_is` takes an image that is already 28x28.

`prepare_image` chains both and returns the uint8 image with a human-readable list of steps.
Every problem with the input raises `ImageError` with a one-line message.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import ExifTags, Image, ImageOps

from fashionlab._read import UnreadableFile, npy_header, read_bytes
from fashionlab.errors import ImageError, one_line

SIZE = 28
# 40 megapixels: well above any phone photo (a 48 MP sensor saves 12 MP by default) and far
# below what would exhaust memory (an RGBA decode of 40 MP is 160 MB). The declared size is
# checked before any pixel is decoded.
DEFAULT_MAX_PIXELS = 40_000_000
# An image file named on the command line: a compressed 40-megapixel photo fits many times over.
MAX_IMAGE_FILE_BYTES = 256 << 20
# Longer side above which a decoded image is area-averaged down before any float work: the
# result is 28 pixels wide, so 2048 keeps the object's bounding box accurate to 0.05 %.
WORK_MAX_SIDE = 2048
# Decoders we accept. Restricting Image.open to these keeps Pillow's many rarer (and less
# exercised) plugins away from untrusted uploads.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
SUPPORTED = "PNG, JPEG, WebP, GIF, BMP or a 28x28 .npy array"

_NPY_MAGIC = b"\x93NUMPY"
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
# A pixel is part of the object when it differs from the background by more than this (on a
# 0..1 scale), or by more than a few times the border's noise when that is larger; JPEG noise
# and paper texture stay below it, a garment's edge does not.
MIN_CONTRAST = 0.1
MAX_CONTRAST = 0.5

Invert = bool | Literal["auto"]


# ---------------------------------------------------------------------------------------------
# loading


# Reserve memory for a decode: called with the bytes it will need at its peak, before the
# first pixel is decoded; the context is held until the image is reduced to working size.
MemoryGate = Callable[[int], AbstractContextManager]

# Bytes per pixel of the frame Pillow decodes, by mode (anything else: 4).
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "La": 2, "PA": 2, "RGB": 3, "YCbCr": 3}
_BYTES_PER_PIXEL.update({mode: 2 for mode in ("I;16", "I;16L", "I;16B", "I;16N")})


def decode_cost(width: int, height: int, mode: str) -> int:
    """Peak bytes of decoding an image of this size and mode: the decoded frame, the one
    full-size working copy the conversion below makes (premultiplied alpha, 32-bit samples),
    and a margin for the decoder's own buffers (benchmarks/bench_serve.py's hostile load
    checks the estimate against the server's memory); everything after the reduction to
    at most WORK_MAX_SIDE pixels is small beside it."""
    pixels = width * height
    frame = pixels * _BYTES_PER_PIXEL.get(mode, 4)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La", "P")
    # The working copy per pixel: premultiplied RGBa, int32 samples, or the L (luma) image
    # of a colour frame; 16-bit samples are reduced in place, with the decoder's buffers.
    copy_bytes = 4 if has_alpha or mode == "I" else (0 if mode == "L" else 1)
    copy = pixels * copy_bytes
    return int((frame + copy) * 1.15)


def load_image(
    source: bytes | str | Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    memory_gate: MemoryGate | None = None,
) -> np.ndarray:
    """Decode `source` (encoded bytes, or a path to an image / .npy file) into a 2-D float32
    array in [0, 1], 0 = black. Raises ImageError for anything that is not a usable image.
    `memory_gate` (a server's decode budget) is entered with `decode_cost` before decoding."""
    return _load(source, max_pixels, memory_gate)[0]


def prepare_image(
    source: bytes | str | Path,
    *,
    preprocessing: bool = True,
    invert: Invert = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    memory_gate: MemoryGate | None = None,
) -> tuple[np.ndarray, list[str]]:
    """`load_image` then `preprocess` (or `as_is` when `preprocessing` is False): the 28x28
    uint8 image and every step taken, loading included."""
    gray, notes = _load(source, max_pixels, memory_gate)
    image, steps = preprocess(gray, invert=invert) if preprocessing else as_is(gray)
    return image, notes + steps


def _load(
    source: bytes | str | Path, max_pixels: int, memory_gate: MemoryGate | None = None
) -> tuple[np.ndarray, list[str]]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            data = read_bytes(path, MAX_IMAGE_FILE_BYTES)
        except FileNotFoundError:
            raise ImageError(f"cannot read image file {path}: no such file") from None
        except UnreadableFile as exc:
            raise ImageError(f"cannot read image file {exc}") from None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        raise ImageError(f"expected image bytes or a file path, got {type(source).__name__}")
    if not data:
        raise ImageError("empty input: the image has no bytes")
    if data.startswith(_NPY_MAGIC):
        return _load_npy(data), ["read a 28x28 .npy array"]
    return _load_pil(data, max_pixels, memory_gate)


def _load_npy(data: bytes) -> np.ndarray:
    # The header first: a 100-byte file declaring a huge shape would be a memory bomb.
    try:
        shape, dtype = npy_header(io.BytesIO(data))
    except ValueError as exc:
        raise ImageError(f"corrupt .npy file: {one_line(exc)}") from None
    if dtype.hasobject:
        raise ImageError(".npy holds Python objects (pickled data), which are not accepted")
    if tuple(shape) != (SIZE, SIZE):
        raise ImageError(f".npy array has shape {tuple(shape)}; expected ({SIZE}, {SIZE})")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:
        raise ImageError(f"corrupt .npy file: {one_line(exc)}") from None
    return _to_unit_float(array, ".npy array")


def _load_pil(
    data: bytes, max_pixels: int, memory_gate: MemoryGate | None = None
) -> tuple[np.ndarray, list[str]]:
    notes: list[str] = []
    # Untrusted input: Pillow's plugins raise many exception types on malformed files
    # (OSError, SyntaxError, ValueError, struct.error, EOFError, ...), so every failure while
    # identifying or decoding becomes an ImageError. ImageFile.LOAD_TRUNCATED_IMAGES is left
    # False (Pillow's default) so that a truncated file fails in load() instead of decoding
    # as a half-grey image.
    try:
        im = Image.open(io.BytesIO(data), formats=FORMATS)
    # Pillow's own guard: above Image.MAX_IMAGE_PIXELS (89 M) it warns (an exception only
    # where warnings are errors), above twice that it refuses. With the default limit our check
    # below rejects such images anyway; we do not touch the process-wide warning filters
    # (warnings.catch_warnings is not thread-safe and the web server decodes in threads).
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            f"image too large (possible decompression bomb): {one_line(exc)}"
        ) from None
    except Exception:
        if _declares_zero_size(data):  # Pillow refuses these as "cannot identify"; say why
            raise ImageError("image has zero width or height") from None
        raise ImageError(f"not an image, or not a supported format ({SUPPORTED})") from None

    # Image.open has parsed the header only: check the declared size before decoding a pixel.
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageError(f"image has zero size ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(
            f"image is {width}x{height} = {width * height:,} pixels, more than the limit of "
            f"{max_pixels:,} (possible decompression bomb)"
        )
    if im.format == "JPEG" and max(width, height) > WORK_MAX_SIDE:
        # JPEG decodes at 1/2, 1/4 or 1/8 scale directly (DCT scaling): the full-size frame is
        # never in memory. draft() keeps the result at least as large as asked.
        im.draft(im.mode, _shrink_size(width, height))
        if im.size != (width, height):
            notes.append(f"decoded at reduced scale {im.size[0]}x{im.size[1]} (JPEG)")
    gate = memory_gate(decode_cost(*im.size, im.mode)) if memory_gate else contextlib.nullcontext()
    with gate:
        try:
            if getattr(im, "is_animated", False):
                im.seek(0)
                notes.append(f"animated {im.format}: used the first frame")
            im.load()
        except Exception as exc:
            raise ImageError(f"corrupt or truncated {im.format} image: {one_line(exc)}") from None
        notes.append(f"decoded {im.format} {width}x{height} ({im.mode})")
        im = _exif_upright(im, notes)
        gray = _pil_to_gray(im, notes)
    return gray, notes


def _declares_zero_size(data: bytes) -> bool:
    """Whether a PNG or GIF header declares a zero width or height (only for the message)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        return 0 in (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return 0 in (int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little"))
    return False


def _exif_upright(im: Image.Image, notes: list[str]) -> Image.Image:
    """Phones store photos sideways with an EXIF orientation tag; apply it."""
    try:
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
        if orientation in (1, None):
            return im
        upright = ImageOps.exif_transpose(im)
    except Exception:  # a malformed EXIF block should not make the picture unusable
        notes.append("EXIF orientation unreadable; image not rotated")
        return im
    notes.append(f"rotated upright per EXIF orientation {orientation}")
    return upright


def _pil_to_gray(im: Image.Image, notes: list[str]) -> np.ndarray:
    if im.mode in _SIXTEEN_BIT_MODES:
        # 16-bit grayscale PNG. Pillow's convert("L") would clip values above 255 rather than
        # scale them, so scale in NumPy, after Pillow's area-average reduction of the 16-bit
        # samples themselves (no full-size copy in any other type).
        size = _shrink_size(*im.size)
        if size is not None and im.mode != "I":
            notes.append(f"reduced {im.width}x{im.height} -> {size[0]}x{size[1]} (area average)")
            im = im.resize(size, Image.Resampling.BOX)
        gray = np.clip(np.asarray(im, dtype=np.float32) / 65535.0, 0.0, 1.0)
        notes.append("16-bit grayscale scaled to 0..1")
        return _shrink_float(gray, notes)
    if im.mode == "F":  # not produced by FORMATS today; kept for completeness
        return _shrink_float(_to_unit_float(np.asarray(im), "image"), notes)

    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    factor = _reduce_factor(*im.size)
    if factor > 1:
        # A large image is reduced by a whole factor first, in a mode whose box average is
        # right (premultiplied alpha), so the conversions below work on a small copy.
        size = im.size
        if has_alpha:
            # convert() to the same mode copies: only what is needed.
            im = (
                im.convert("RGBa")
                if im.mode in ("RGBA", "RGBa")
                else im.convert("RGBA").convert("RGBa")
            )
        elif im.mode not in ("L", "RGB", "LA", "La", "RGBa", "CMYK", "YCbCr", "I", "F"):
            im = im.convert("RGB")
        im = im.reduce(factor)
        if has_alpha:
            im = im.convert("RGBA")
        notes.append(f"reduced {size[0]}x{size[1]} -> {im.width}x{im.height} (box)")
    if has_alpha:
        # Premultiplied grayscale + alpha: area-averaging premultiplied values is correct at
        # transparent edges, and the composite below is then one multiply-add.
        im = im.convert("RGBA").convert("LA").convert("La")
    elif im.mode not in ("L", "RGB"):
        im = im.convert("RGB")  # P, 1, CMYK, YCbCr, ... -> RGB first, then ITU-R 601 luma
    if has_alpha or im.mode != "L":
        notes.append("converted to grayscale")
    if im.mode == "RGB":
        im = im.convert("L")
    im = _shrink_pil(im, notes)

    pixels = np.asarray(im, dtype=np.float32) / 255.0
    if not has_alpha:
        return pixels
    premultiplied, alpha = pixels[..., 0], pixels[..., 1]
    if alpha.min() >= 1.0:
        notes.append("alpha channel is fully opaque; ignored")
        return premultiplied
    # Composite onto the background that contrasts with the visible content: dark content
    # (a product cut-out) goes on white, like the studio photos Fashion-MNIST was made from;
    # light content (a light-on-transparent drawing) goes on black, so it does not vanish.
    coverage = float(alpha.sum())
    mean_content = float(premultiplied.sum()) / coverage if coverage > 0 else 0.0
    background = 0.0 if mean_content > 0.5 else 1.0
    notes.append(
        "composited transparency onto "
        + ("black (the content is light)" if background == 0.0 else "white (the content is dark)")
    )
    return premultiplied + background * (1.0 - alpha)


def _reduce_factor(width: int, height: int) -> int:
    """The whole factor that brings the longer side to at most 2 x WORK_MAX_SIDE (1: none)."""
    return max(1, -(-max(width, height) // (2 * WORK_MAX_SIDE)))


def _shrink_size(width: int, height: int) -> tuple[int, int] | None:
    longest = max(width, height)
    if longest <= WORK_MAX_SIDE:
        return None
    scale = WORK_MAX_SIDE / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def _shrink_pil(im: Image.Image, notes: list[str]) -> Image.Image:
    size = _shrink_size(*im.size)
    if size is None:
        return im
    notes.append(f"reduced {im.width}x{im.height} -> {size[0]}x{size[1]} (area average)")
    return im.resize(size, Image.Resampling.BOX)


def _shrink_float(gray: np.ndarray, notes: list[str]) -> np.ndarray:
    size = _shrink_size(gray.shape[1], gray.shape[0])
    if size is None:
        return gray
    return np.asarray(_shrink_pil(Image.fromarray(gray.astype(np.float32)), notes))


# ---------------------------------------------------------------------------------------------
# preprocessing


def preprocess(gray: np.ndarray, invert: Invert = "auto") -> tuple[np.ndarray, list[str]]:
    """Make a grayscale image look like a Fashion-MNIST item; return it as (28, 28) uint8 and
    the steps taken.

    Follows the pipeline of the Fashion-MNIST paper (Xiao et al. 2017, section 2): trim to the
    object, resize so the *longer side is 28* (the dataset's items touch two opposite edges of
    the frame, so any margin would make ours smaller than what the model was trained on),
    extend the shorter side and centre, light object on black. `invert` is True, False or
    "auto" (invert when the border's median is light, i.e. a dark object on a light page).
    """
    g = _to_unit_float(gray, "image")
    height, width = g.shape
    steps = [f"input {width}x{height} grayscale"]

    border = _border(g)
    level = float(np.median(border))
    if invert == "auto":
        do_invert = level > 0.5
        why = f"the border is light (median {level:.2f})" if do_invert else None
    elif isinstance(invert, bool):
        do_invert, why = invert, "as requested"
    else:
        raise ValueError(f"invert must be True, False or 'auto', not {invert!r}")
    if do_invert:
        g, border, level = 1.0 - g, 1.0 - border, 1.0 - level
        steps.append(f"inverted to a light object on a dark background: {why}")
    elif invert is False:
        steps.append("not inverted, as requested")
    else:
        steps.append(f"not inverted: the background is already dark (border median {level:.2f})")

    # Object = pixels that differ from the background by more than its noise.
    noise = 1.4826 * float(np.median(np.abs(border - level)))
    threshold = min(max(MIN_CONTRAST, 4.0 * noise), MAX_CONTRAST)
    mask = _drop_specks(np.abs(g - level) > threshold)
    pad_value = level
    if mask.any():
        # Background -> black and the object's bright end -> white: a grey page or a dim photo
        # would otherwise give a grey background, which Fashion-MNIST never has.
        top = float(np.percentile(g[mask], 99))
        if top - level > threshold / 2:
            g = np.clip((g - level) / (top - level), 0.0, 1.0)
            pad_value = 0.0
            steps.append(f"levels: background {level:.2f} -> black, object {top:.2f} -> white")
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        if (y1 - y0, x1 - x0) != g.shape:
            g = g[y0:y1, x0:x1]
            steps.append(f"cropped to the object: {x1 - x0}x{y1 - y0} at x={x0}, y={y0}")
    else:
        steps.append(
            f"no object stands out from the background (contrast < {threshold:.2f}); "
            "kept the whole image"
        )

    h, w = g.shape
    side = max(h, w)
    if h != w:
        square = np.full((side, side), pad_value, dtype=np.float32)
        y_off, x_off = (side - h) // 2, (side - w) // 2
        square[y_off : y_off + h, x_off : x_off + w] = g
        g = square
        steps.append(f"padded to a centred {side}x{side} square")
    if side != SIZE:
        # LANCZOS: Pillow widens the kernel when shrinking, so this is antialiased (no moire
        # from photo textures); slight sharpening mirrors the paper's sharpening step.
        g = np.asarray(Image.fromarray(g.astype(np.float32)).resize((SIZE, SIZE), _LANCZOS))
        steps.append(f"resized {side}x{side} -> {SIZE}x{SIZE} (longer side fills the frame)")
    steps.append("converted to 8-bit (0-255)")
    return _to_uint8(g), steps


def as_is(gray: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """No preprocessing: the image must already be 28x28 (light on black); only the dtype
    becomes uint8. Returns (image, steps) like `preprocess`."""
    g = np.asarray(gray)
    if g.shape != (SIZE, SIZE):
        shape = "x".join(str(n) for n in reversed(g.shape)) if g.ndim == 2 else str(g.shape)
        raise ImageError(
            f"image is {shape}; without preprocessing it must be exactly {SIZE}x{SIZE} "
            "(allow preprocessing to crop and resize it)"
        )
    if g.dtype == np.uint8:
        return g.copy(), ["used as is: 28x28, no preprocessing"]
    return _to_uint8(_to_unit_float(g, "image")), ["used as is: 28x28, no preprocessing"]


_LANCZOS = Image.Resampling.LANCZOS


def _border(g: np.ndarray) -> np.ndarray:
    """The outer ring of pixels, 2 % of the short side thick (at least one pixel)."""
    k = max(1, min(g.shape) // 50)
    if min(g.shape) <= 2 * k:
        return g.ravel()
    return np.concatenate(
        [g[:k].ravel(), g[-k:].ravel(), g[k:-k, :k].ravel(), g[k:-k, -k:].ravel()]
    )


def _drop_specks(mask: np.ndarray) -> np.ndarray:
    """Drop object pixels with fewer than two object neighbours (JPEG specks, dust) so one stray
    pixel cannot stretch the bounding box; a one-pixel-wide line keeps its pixels. If that
    leaves nothing, the raw mask is used (a lone dot is still better than no crop)."""
    padded = np.pad(mask, 1).astype(np.uint8)
    h, w = mask.shape
    count = sum(padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))
    cleaned = mask & (count >= 3)
    return cleaned if cleaned.any() else mask


def _to_unit_float(array: np.ndarray, what: str) -> np.ndarray:
    """uint8/integer 0..255 -> /255; float must already be in [0, 1]. Float32 out, 2-D only."""
    a = np.asarray(array)
    if a.ndim != 2 or a.size == 0:
        raise ImageError(f"{what} must be a non-empty 2-D grayscale array, got shape {a.shape}")
    is_number = np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
    if a.dtype == np.bool_ or not is_number:
        raise ImageError(f"{what} has unsupported dtype {a.dtype}; use uint8 0..255 or float 0..1")
    if np.issubdtype(a.dtype, np.integer):
        if a.min() < 0 or a.max() > 255:
            raise ImageError(f"{what} has integer values outside 0..255")
        return a.astype(np.float32) / 255.0
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise ImageError(f"{what} contains NaN or infinite values")
    if a.min() < -1e-6 or a.max() > 1.0 + 1e-6:
        raise ImageError(
            f"{what} has float values in [{a.min():.3g}, {a.max():.3g}]; expected 0..1 "
            "(divide 0..255 data by 255)"
        )
    return np.clip(a, 0.0, 1.0)


def _to_uint8(g: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(g * 255.0), 0, 255).astype(np.uint8)


__all__ = ["DEFAULT_MAX_PIXELS", "SIZE", "as_is", "load_image", "prepare_image", "preprocess"]
