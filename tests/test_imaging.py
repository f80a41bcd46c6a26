"""fashionlab.inference.imaging: decoding of every accepted format, preprocessing, and bad input.

All images are built here with Pillow, in memory or under tmp_path.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFile

from fashionlab.errors import ImageError
from fashionlab.inference.imaging import as_is, load_image, prepare_image, preprocess

# ------------------------------------------------------------------------------------------
# helpers


def encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def gradient(width: int = 40, height: int = 30) -> np.ndarray:
    """uint8 with distinct rows and columns, so flips and rotations are visible."""
    y, x = np.mgrid[0:height, 0:width]
    return ((x * 5 + y * 2) % 256).astype(np.uint8)


def photo_like(size=(300, 200), box=(30, 40, 90, 180)) -> Image.Image:
    """A light, slightly textured page with a dark, off-centre, tall garment-ish shape."""
    rng = np.random.default_rng(0)
    page = np.clip(235 + rng.normal(0, 3, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(page, "RGB")
    draw = ImageDraw.Draw(im)
    draw.rectangle(box, fill=(40, 30, 70))
    draw.ellipse((box[0] - 10, box[1], box[2] + 10, box[1] + 40), fill=(60, 50, 80))  # "collar"
    return im


def fashion_like() -> np.ndarray:
    """A 28x28 light item on pure black that already spans the full height."""
    img = np.zeros((28, 28), np.uint8)
    img[0:28, 8:20] = 180
    img[2:26, 10:18] = 255
    return img


def bbox(img: np.ndarray, level: int = 64) -> tuple[int, int, int, int]:
    rows = np.flatnonzero((img > level).any(axis=1))
    cols = np.flatnonzero((img > level).any(axis=0))
    return rows[0], rows[-1], cols[0], cols[-1]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but carries no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b""))
        + png_chunk(b"IEND", b"")
    )


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------
# formats


def test_png_gray_is_exact_float():
    arr = gradient()
    out = load_image(encode(Image.fromarray(arr), "PNG"))
    assert out.dtype == np.float32 and out.shape == arr.shape
    np.testing.assert_array_equal(np.rint(out * 255).astype(np.uint8), arr)
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_png_from_path_str_and_pathlib(tmp_path):
    arr = gradient()
    path = tmp_path / "item.png"
    Image.fromarray(arr).save(path)
    for source in (path, str(path)):
        np.testing.assert_allclose(load_image(source), arr / 255.0, atol=1e-6)


def test_jpeg_rgb_uses_luma():
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:, :16] = (255, 0, 0)  # red -> luma 0.299
    rgb[:, 16:] = (0, 0, 255)  # blue -> luma 0.114
    out = load_image(encode(Image.fromarray(rgb), "JPEG", quality=95))
    assert out.shape == (32, 32)
    assert abs(out[16, 4] - 0.299) < 0.03 and abs(out[16, 28] - 0.114) < 0.03


def test_webp_lossless_is_exact():
    arr = gradient()
    out = load_image(encode(Image.fromarray(arr).convert("RGB"), "WEBP", lossless=True))
    np.testing.assert_array_equal(np.rint(out * 255).astype(np.uint8), arr)


def test_gif_uses_first_frame():
    first = np.zeros((20, 20), np.uint8)
    first[:5, :5] = 255  # top-left
    second = np.zeros((20, 20), np.uint8)
    second[-5:, -5:] = 255  # bottom-right
    frames = [Image.fromarray(a).convert("P") for a in (first, second)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    out = load_image(data)
    assert out[2, 2] > 0.9 and out[-2, -2] < 0.1
    _, steps = prepare_image(data)
    assert any("first frame" in s for s in steps)


def test_16bit_png_is_scaled_not_clipped():
    arr = np.array([[0, 1000, 32768, 65535]] * 4, dtype=np.uint16)
    data = encode(Image.fromarray(arr), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = load_image(data)
    np.testing.assert_allclose(out[0], arr[0] / 65535.0, atol=1e-6)


def test_palette_png():
    arr = gradient()
    im = Image.fromarray(np.stack([arr] * 3, axis=-1), "RGB").convert("P")
    assert im.mode == "P"
    out = load_image(encode(im, "PNG"))
    expected = np.asarray(im.convert("L"), np.float32) / 255.0
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_palette_with_transparent_index_is_composited():
    im = Image.new("P", (20, 20), 0)
    im.putpalette([0, 0, 0, 10, 10, 10] + [0] * 762)
    ImageDraw.Draw(im).rectangle((5, 5, 14, 14), fill=1)  # dark square, rest transparent
    out = load_image(encode(im, "PNG", transparency=0))
    assert out[0, 0] == pytest.approx(1.0)  # dark content -> white background
    assert out[10, 10] == pytest.approx(10 / 255, abs=1e-3)


def test_rgba_dark_cutout_goes_on_white():
    rgba = np.zeros((30, 30, 4), np.uint8)  # fully transparent, hidden colour black
    rgba[10:20, 10:20] = (20, 20, 20, 255)
    out = load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert out[0, 0] == pytest.approx(1.0)
    assert out[15, 15] == pytest.approx(20 / 255, abs=1e-3)


def test_la_light_drawing_goes_on_black():
    la = np.zeros((30, 30, 2), np.uint8)
    la[..., 0] = 255  # hidden colour white: must not leak into the background
    la[5:25, 12:18, 1] = 255
    out = load_image(encode(Image.fromarray(la, "LA"), "PNG"))
    assert out[0, 0] == pytest.approx(0.0)
    assert out[15, 15] == pytest.approx(1.0)


def test_half_transparent_edge_blends():
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:, 5:, 3] = 128  # black at half opacity over white -> mid grey
    out = load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert out[5, 2] == pytest.approx(0.0) and out[5, 7] == pytest.approx(0.5, abs=0.01)


def test_exif_orientation_6_is_rotated_upright():
    # Stored landscape 60x40 with a bright block at the stored top-left. Orientation 6 means
    # "rotate 90 degrees clockwise to display": upright it is 40 wide, 60 tall, and the block
    # sits at the top-right.
    arr = np.zeros((40, 60), np.uint8)
    arr[:12, :12] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(arr), "JPEG", quality=95, exif=exif)
    out = load_image(data)
    assert out.shape == (60, 40)
    assert out[:12, -12:].mean() > 0.9
    assert out[:12, :12].mean() < 0.1 and out[-12:, :].mean() < 0.1
    _, steps = prepare_image(data)
    assert any("EXIF orientation 6" in s for s in steps)


def test_large_image_is_reduced_for_processing():
    data = encode(Image.new("L", (3000, 1000), 200), "PNG")
    out = load_image(data)
    assert out.shape == (683, 2048)
    assert out[0, 0] == pytest.approx(200 / 255, abs=1e-3)


# ------------------------------------------------------------------------------------------
# .npy


def test_npy_uint8_and_float(tmp_path):
    arr = fashion_like()
    np.testing.assert_allclose(load_image(npy_bytes(arr)), arr / 255.0, atol=1e-6)
    path = tmp_path / "x.npy"
    np.save(path, arr.astype(np.float64) / 255.0)
    np.testing.assert_allclose(load_image(path), arr / 255.0, atol=1e-6)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((28, 29), np.uint8), "shape"),
        (np.zeros((1, 28, 28), np.uint8), "shape"),
        (np.zeros((0,), np.uint8), "shape"),
        (np.full((28, 28), np.nan, np.float32), "NaN"),
        (np.full((28, 28), 2.0, np.float32), "0..1"),
        (np.full((28, 28), 300, np.int64), "0..255"),
        (np.zeros((28, 28), np.complex64), "dtype"),
    ],
)
def test_npy_bad_content(array, message):
    with pytest.raises(ImageError, match=message):
        load_image(npy_bytes(array))


def test_npy_with_pickle_is_refused():
    objects = np.empty((28, 28), dtype=object)
    objects[:] = 0
    with pytest.raises(ImageError, match="pickle"):
        load_image(npy_bytes(objects, allow_pickle=True))


def test_npy_header_declaring_a_huge_array_is_refused_before_allocation():
    # 80 bytes declaring an 80 TB array: np.load would try to allocate it before reading.
    buf = io.BytesIO()
    header = {"descr": "<f8", "fortran_order": False, "shape": (99_999_999, 99_999)}
    np.lib.format.write_array_header_1_0(buf, header)
    with pytest.raises(ImageError, match=r"shape \(99999999, 99999\)"):
        load_image(buf.getvalue())


def test_npy_truncated():
    data = npy_bytes(fashion_like())
    with pytest.raises(ImageError, match=r"\.npy"):
        load_image(data[:-100])


# ------------------------------------------------------------------------------------------
# bad input


def test_truncated_images_are_not_silently_accepted():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    rng = np.random.default_rng(1)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    for fmt in ("PNG", "JPEG"):
        data = encode(noise, fmt)
        with pytest.raises(ImageError, match="truncated"):
            load_image(data[: len(data) // 2])


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"hello, world", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image"),
        (encode(Image.new("L", (4, 4)), "TIFF"), "not an image"),  # decodable, not accepted
        (png_header_only(0, 10), "zero"),
        (png_header_only(8000, 6000), "decompression bomb"),  # 48 MP > our 40 MP limit
        (png_header_only(20000, 20000), "decompression bomb"),  # Pillow's own hard limit
    ],
)
def test_bad_bytes(data, message):
    with pytest.raises(ImageError, match=message) as info:
        load_image(data)
    assert "\n" not in str(info.value)


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillow_bomb_warning_as_error_is_converted():
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(png_header_only(10000, 10000))


def test_pixel_limit_is_checked_before_decoding():
    data = encode(Image.new("L", (100, 100)), "PNG")
    with pytest.raises(ImageError, match="limit of 9,999"):
        load_image(data, max_pixels=9_999)
    assert load_image(data, max_pixels=10_000).shape == (100, 100)


def test_missing_file_and_wrong_type(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path)  # a folder
    with pytest.raises(ImageError, match="expected image bytes"):
        load_image(123)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# preprocessing


def test_photo_on_white_is_inverted_cropped_and_fills_the_frame():
    out, steps = prepare_image(encode(photo_like(), "JPEG", quality=90))
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert any(s.startswith("inverted") for s in steps)
    assert any(s.startswith("cropped") for s in steps)
    # Light object on black, like Fashion-MNIST.
    assert out[:, :3].max() < 30 and out[:, -3:].max() < 30
    assert out[14, 14] > 200
    # The object is taller than wide: it spans the full height and is centred across.
    top, bottom, left, right = bbox(out)
    assert (top, bottom) == (0, 27)
    assert abs((left + right) / 2 - 13.5) <= 1.0
    assert 6 <= right - left <= 20


def test_wide_object_fills_the_width_and_is_centred_vertically():
    im = photo_like(size=(400, 400), box=(250, 300, 390, 360))  # in a corner
    out, _ = preprocess(np.asarray(im.convert("L")))
    top, bottom, left, right = bbox(out)
    assert (left, right) == (0, 27)
    assert abs((top + bottom) / 2 - 13.5) <= 1.0


def test_a_stray_speck_does_not_stretch_the_crop():
    im = photo_like()
    im.putpixel((295, 5), (0, 0, 0))  # one dark pixel in the far corner
    out, _ = preprocess(np.asarray(im.convert("L")))
    top, bottom, left, right = bbox(out)
    assert (top, bottom) == (0, 27) and right - left <= 20


def test_grey_background_becomes_black():
    page = np.full((100, 100), 100, np.uint8)  # grey page, darker than the inversion point
    page[20:80, 40:60] = 250
    out, steps = preprocess(page)
    assert not any(s.startswith("inverted") for s in steps)
    assert out[:, :2].max() == 0 and out[14, 14] == 255


def test_fashion_like_input_comes_through_preprocess_unchanged():
    img = fashion_like()
    out, steps = preprocess(img)
    # Cropped to its 12 columns and padded back to 28: a no-op, as is the levels step.
    assert not any(s.startswith(("inverted", "resized")) for s in steps)
    np.testing.assert_array_equal(out, img)


def test_uniform_image_keeps_the_whole_frame():
    out, steps = preprocess(np.full((50, 80), 0.9, np.float32))
    assert out.shape == (28, 28)
    assert any("no object" in s for s in steps)
    assert out.max() - out.min() <= 1  # still uniform after inversion and resizing


def test_invert_can_be_forced_either_way():
    img = fashion_like()
    out, steps = preprocess(img, invert=True)
    assert any("as requested" in s for s in steps)
    assert out[0, 0] == 255  # dark background became light
    out, steps = preprocess(np.full((28, 28), 240, np.uint8), invert=False)
    assert any("not inverted" in s for s in steps) and out[0, 0] == 240
    with pytest.raises(ValueError):
        preprocess(img, invert="yes")  # type: ignore[arg-type]


def test_black_background_28x28_passes_as_is_unchanged():
    img = fashion_like()
    out, steps = prepare_image(encode(Image.fromarray(img), "PNG"), preprocessing=False)
    np.testing.assert_array_equal(out, img)
    assert out.dtype == np.uint8 and steps[-1].startswith("used as is")
    out, _ = as_is(img)
    np.testing.assert_array_equal(out, img)
    assert out is not img


def test_as_is_needs_exactly_28x28():
    with pytest.raises(ImageError, match="exactly 28x28"):
        as_is(np.zeros((28, 30), np.uint8))
    with pytest.raises(ImageError, match="exactly 28x28"):
        prepare_image(encode(Image.new("L", (64, 64)), "PNG"), preprocessing=False)
