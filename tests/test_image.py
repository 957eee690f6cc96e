"""Tests of nst_core.image: loading every mode, 16-bit precision, errors, atomic saving, resizing."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, ImageOps

from nst_core.image import pillow_decode, png16
from nst_core.errors import ConfigError, InputError
from nst_core.image import (
    DEFAULT_MAX_PIXELS,
    LoadedImage,
    load_image,
    long_side_size,
    resize_to,
    save_image,
    to_array,
    to_tensor,
)

from .conftest import IMAGES

PHOTO = IMAGES / "tubingen.jpg"
RNG = np.random.default_rng(1234)


# --------------------------------------------------------------------------- helpers


def _one_line_error(excinfo: pytest.ExceptionInfo, path: Path | str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "\r" not in message
    assert "Traceback" not in message
    assert Path(path).name in message
    return message


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _filter_row(kind: int, raw: bytes, prior: bytes, bpp: int) -> bytes:
    """One PNG scanline with filter ``kind`` (straightforward reference implementation)."""
    out = bytearray([kind])
    for i, x in enumerate(raw):
        a = raw[i - bpp] if i >= bpp else 0
        b = prior[i]
        c = prior[i - bpp] if i >= bpp else 0
        predictor = [0, a, b, (a + b) // 2, _paeth(a, b, c)][kind]
        out.append((x - predictor) & 0xFF)
    return bytes(out)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


_ADAM7 = [
    (0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)
]


def _png_bytes(arr: np.ndarray, *, interlace: bool = False, before_idat: list[bytes] = ()) -> bytes:
    """A PNG of ``arr`` (uint8/uint16, H×W[×C]); row ``y`` of each pass uses filter ``y % 5``."""
    arr = arr if arr.ndim == 3 else arr[:, :, None]
    height, width, channels = arr.shape
    depth = 16 if arr.dtype == np.uint16 else 8
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    bpp = channels * depth // 8

    def scanlines(sub: np.ndarray) -> bytes:
        rows = sub.astype(">u2" if depth == 16 else np.uint8).reshape(sub.shape[0], -1)
        prior = bytes(rows.shape[1] * rows.itemsize)
        data = b""
        for y in range(rows.shape[0]):
            raw = rows[y].tobytes()
            data += _filter_row(y % 5, raw, prior, bpp)
            prior = raw
        return data

    if interlace:
        data = b""
        for x0, y0, dx, dy in _ADAM7:
            sub = arr[y0::dy, x0::dx]
            if sub.size:
                data += scanlines(sub)
    else:
        data = scanlines(arr)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, int(interlace))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + b"".join(before_idat)
        + _chunk(b"IDAT", zlib.compress(data))
        + _chunk(b"IEND", b"")
    )


def _exif_chunk(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = exif.tobytes()
    return _chunk(b"eXIf", data[6:] if data.startswith(b"Exif\x00\x00") else data)


def _without_zlib_checksum(png: bytes) -> bytes:
    """``png`` with its IDAT zlib stream missing the final Adler-32 (chunk CRC still right)."""
    start = png.index(b"IDAT") - 4
    length = struct.unpack(">I", png[start : start + 4])[0]
    stream = png[start + 8 : start + 8 + length]
    return png[:start] + _chunk(b"IDAT", stream[:-4]) + png[start + 12 + length :]


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]


def _u16(shape) -> np.ndarray:
    """Random 16-bit samples whose low byte is never 0, so no value is exact in 8 bits."""
    values = RNG.integers(0, 65536, size=shape).astype(np.uint16)
    return values | np.uint16(1)


def _lzw_encode(data: bytes) -> bytes:
    """TIFF LZW (MSB first, libtiff code-width switching); slow, for tiny test images only."""
    out, acc, nacc = bytearray(), 0, 0

    def emit(code: int, width: int) -> None:
        nonlocal acc, nacc
        acc, nacc = (acc << width) | code, nacc + width
        while nacc >= 8:
            nacc -= 8
            out.append((acc >> nacc) & 0xFF)
        acc &= (1 << nacc) - 1

    table = {bytes([i]): i for i in range(256)}
    nxt, width, word = 258, 9, b""
    emit(256, width)
    for byte in data:
        candidate = word + bytes([byte])
        if candidate in table:
            word = candidate
            continue
        emit(table[word], width)
        table[candidate], nxt = nxt, nxt + 1
        if nxt == 4094:
            emit(256, width)
            table, nxt, width = {bytes([i]): i for i in range(256)}, 258, 9
        elif nxt > (1 << width) - 1:
            width += 1
        word = bytes([byte])
    if word:
        emit(table[word], width)
        nxt += 1
        if nxt > (1 << width) - 1 and nxt != 4094:
            width += 1
    emit(257, width)
    if nacc:
        out.append((acc << (8 - nacc)) & 0xFF)
    return bytes(out)


# --------------------------------------------------------------------------- modes


def test_default_max_pixels_is_pillows_error_limit():
    assert DEFAULT_MAX_PIXELS == 178_956_970 == 2 * int(1024 * 1024 * 1024 // 4 // 3)


def test_rgb_png_loads_exactly(tmp_path):
    arr = RNG.integers(0, 256, (9, 13, 3)).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.png")
    loaded = load_image(tmp_path / "x.png")
    assert isinstance(loaded, LoadedImage)
    assert loaded.rgb.shape == (9, 13, 3) and loaded.rgb.dtype == np.float32
    assert loaded.rgb.flags.c_contiguous
    np.testing.assert_array_equal(np.round(loaded.rgb * 255).astype(np.uint8), arr)
    assert loaded.alpha is None and loaded.bit_depth == 8 and not loaded.grayscale
    assert loaded.path == tmp_path / "x.png"
    with pytest.raises(AttributeError):
        loaded.bit_depth = 16  # frozen


def test_rgba_png_gives_alpha(tmp_path):
    arr = RNG.integers(0, 256, (7, 5, 4)).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.png")
    loaded = load_image(tmp_path / "x.png")
    assert loaded.rgb.shape == (7, 5, 3) and loaded.alpha.shape == (7, 5)
    assert loaded.alpha.dtype == np.float32
    np.testing.assert_array_equal(np.round(loaded.alpha * 255).astype(np.uint8), arr[:, :, 3])
    np.testing.assert_array_equal(np.round(loaded.rgb * 255).astype(np.uint8), arr[:, :, :3])


@pytest.mark.parametrize("mode", ["L", "LA"])
def test_gray_png_is_replicated(tmp_path, mode):
    gray = RNG.integers(0, 256, (6, 8)).astype(np.uint8)
    arr = gray if mode == "L" else np.dstack([gray, 255 - gray])
    Image.fromarray(arr, mode=mode).save(tmp_path / "g.png")
    loaded = load_image(tmp_path / "g.png")
    assert loaded.grayscale and loaded.bit_depth == 8
    assert loaded.rgb.shape == (6, 8, 3)
    for c in range(3):
        np.testing.assert_allclose(loaded.rgb[:, :, c], gray / 255, atol=1e-7)
    if mode == "LA":
        np.testing.assert_allclose(loaded.alpha, (255 - gray) / 255, atol=1e-7)
    else:
        assert loaded.alpha is None


def test_bilevel_png(tmp_path):
    im = Image.new("1", (8, 4), 0)
    im.putpixel((2, 1), 1)
    im.save(tmp_path / "b.png")
    with Image.open(tmp_path / "b.png") as im:
        assert im.mode == "1"
    loaded = load_image(tmp_path / "b.png")
    assert loaded.grayscale and loaded.rgb.shape == (4, 8, 3)
    assert set(np.unique(loaded.rgb)) == {0.0, 1.0}
    assert loaded.rgb[1, 2].tolist() == [1.0, 1.0, 1.0] and loaded.rgb.sum() == 3.0


def _palette_image() -> Image.Image:
    im = Image.new("P", (4, 3), 0)
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    im.putpixel((1, 1), 1)
    im.putpixel((3, 2), 2)
    return im


def test_palette_png_without_transparency(tmp_path):
    _palette_image().save(tmp_path / "p.png")
    loaded = load_image(tmp_path / "p.png")
    assert loaded.alpha is None and not loaded.grayscale and loaded.bit_depth == 8
    assert loaded.rgb[0, 0].tolist() == [1.0, 0.0, 0.0]
    assert loaded.rgb[1, 1].tolist() == [0.0, 1.0, 0.0]
    assert loaded.rgb[2, 3].tolist() == [0.0, 0.0, 1.0]


def test_palette_png_with_transparent_index_gives_alpha(tmp_path):
    _palette_image().save(tmp_path / "p.png", transparency=1)
    loaded = load_image(tmp_path / "p.png")
    assert loaded.alpha is not None and loaded.alpha.shape == (3, 4)
    assert loaded.alpha[1, 1] == 0.0
    assert loaded.alpha.sum() == 3 * 4 - 1


def test_palette_png_with_per_entry_alpha(tmp_path):
    _palette_image().save(tmp_path / "p.png", transparency=bytes([255, 128, 0]))
    loaded = load_image(tmp_path / "p.png")
    assert loaded.alpha[0, 0] == 1.0
    assert loaded.alpha[1, 1] == pytest.approx(128 / 255)
    assert loaded.alpha[2, 3] == 0.0


def test_rgb_png_with_transparent_colour_gives_alpha(tmp_path):
    im = Image.new("RGB", (4, 3), (10, 20, 30))
    im.putpixel((2, 0), (1, 2, 3))
    im.save(tmp_path / "t.png", transparency=(1, 2, 3))
    loaded = load_image(tmp_path / "t.png")
    assert loaded.alpha[0, 2] == 0.0 and loaded.alpha.sum() == 11


def test_cmyk_tiff_becomes_rgb(tmp_path):
    Image.new("CMYK", (5, 4), (0, 255, 255, 0)).save(tmp_path / "c.tif")
    loaded = load_image(tmp_path / "c.tif")
    assert loaded.rgb.shape == (4, 5, 3) and not loaded.grayscale and loaded.bit_depth == 8
    np.testing.assert_array_equal(loaded.rgb[0, 0], [1.0, 0.0, 0.0])


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)
    loaded = load_image(tmp_path / "c.jpg")
    assert loaded.rgb.shape == (16, 16, 3)
    np.testing.assert_allclose(loaded.rgb[8, 8], [1.0, 0.0, 0.0], atol=0.05)


def test_gray_jpeg_is_grayscale(tmp_path):
    Image.new("L", (16, 8), 100).save(tmp_path / "g.jpg")
    loaded = load_image(tmp_path / "g.jpg")
    assert loaded.grayscale and loaded.rgb.shape == (8, 16, 3)
    np.testing.assert_allclose(loaded.rgb, 100 / 255, atol=2 / 255)


def test_16bit_gray_png_keeps_precision(tmp_path):
    gray = _u16((5, 7))
    Image.fromarray(gray).save(tmp_path / "g16.png")  # Pillow writes I;16 as 16-bit gray
    loaded = load_image(tmp_path / "g16.png")
    assert loaded.grayscale and loaded.bit_depth == 16 and loaded.alpha is None
    np.testing.assert_array_equal(np.round(loaded.rgb[:, :, 1] * 65535).astype(np.uint16), gray)


def test_16bit_pgm_mode_i(tmp_path):
    gray = np.array([[0, 1000, 65535]], dtype=np.uint16)
    Image.fromarray(gray).save(tmp_path / "g.pgm")
    with Image.open(tmp_path / "g.pgm") as im:
        assert im.mode in ("I", "I;16", "I;16B")
    loaded = load_image(tmp_path / "g.pgm")
    assert loaded.grayscale and loaded.bit_depth == 16
    np.testing.assert_allclose(loaded.rgb[0, :, 0], gray[0] / 65535, atol=1e-7)


def test_float_tiff_is_clipped(tmp_path):
    values = np.array([[-0.5, 0.0, 0.25], [0.5, 1.0, 3.0]], dtype=np.float32)
    Image.fromarray(values, mode="F").save(tmp_path / "f.tif")
    loaded = load_image(tmp_path / "f.tif")
    assert loaded.grayscale and loaded.bit_depth == 16
    np.testing.assert_array_equal(loaded.rgb[:, :, 2], np.clip(values, 0, 1))


@pytest.mark.parametrize(
    ("mode", "value", "expect_rgb", "expect_alpha", "gray", "depth"),
    [
        ("F", 0.25, [0.25] * 3, None, True, 16),
        ("F", 7.0, [1.0] * 3, None, True, 16),
        ("I", 1000, [1000 / 65535] * 3, None, True, 16),
        ("I;16", 1000, [1000 / 65535] * 3, None, True, 16),
        ("I;16B", 1000, [1000 / 65535] * 3, None, True, 16),
        ("La", (100, 255), [100 / 255] * 3, 1.0, True, 8),
        ("RGBa", (10, 20, 30, 255), [10 / 255, 20 / 255, 30 / 255], 1.0, False, 8),
        ("YCbCr", (255, 128, 128), [1.0, 1.0, 1.0], None, False, 8),
        ("HSV", (0, 255, 255), [1.0, 0.0, 0.0], None, False, 8),
        ("LAB", (138, 128, 128), [0.5] * 3, None, False, 8),
    ],
)
def test_pillow_modes(mode, value, expect_rgb, expect_alpha, gray, depth):
    im = Image.new(mode, (3, 2), value)
    raw = pillow_decode.decode_pillow(im, "'mem'")
    assert raw.grayscale is gray and raw.bit_depth == depth
    colour = raw.color if raw.color.ndim == 3 else np.dstack([raw.color] * 3)
    assert colour.dtype == np.float32 and colour.shape == (2, 3, 3)
    np.testing.assert_allclose(colour[1, 2], expect_rgb, atol=0.02)
    if expect_alpha is None:
        assert raw.alpha is None
    else:
        np.testing.assert_allclose(raw.alpha, expect_alpha)


def test_palette_with_alpha_mode_pa():
    im = Image.new("PA", (2, 2))
    im.putpalette([0, 0, 255] * 256)
    im.putpixel((0, 0), (0, 64))
    raw = pillow_decode.decode_pillow(im, "'mem'")
    assert raw.alpha[0, 0] == pytest.approx(64 / 255) and raw.alpha[1, 1] == 0.0
    np.testing.assert_array_equal(raw.color[0, 0], [0.0, 0.0, 1.0])


def test_gif_first_frame(tmp_path):
    frames = [Image.new("L", (8, 8), 40), Image.new("L", (8, 8), 200)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    loaded = load_image(tmp_path / "a.gif")
    assert loaded.rgb.shape == (8, 8, 3)
    np.testing.assert_allclose(loaded.rgb, 40 / 255, atol=1e-6)


def test_webp_with_alpha_round_trip(tmp_path):
    rgb = np.full((16, 16, 3), 0.5, np.float32)
    alpha = np.zeros((16, 16), np.float32)
    alpha[4:12, 4:12] = 1.0
    save_image(tmp_path / "a.webp", rgb, alpha=alpha)
    loaded = load_image(tmp_path / "a.webp")
    assert loaded.alpha is not None and loaded.bit_depth == 8
    np.testing.assert_allclose(loaded.alpha, alpha, atol=1 / 255)
    np.testing.assert_allclose(loaded.rgb[6:10, 6:10], 0.5, atol=0.03)


def test_real_photo_loads(tmp_path):
    assert PHOTO.exists(), f"test photo {PHOTO} missing; ../shared must sit beside the checkout"
    loaded = load_image(PHOTO)
    with Image.open(PHOTO) as im:
        width, height = im.size
    assert loaded.rgb.shape == (height, width, 3) and loaded.rgb.dtype == np.float32
    assert 0.0 <= loaded.rgb.min() and loaded.rgb.max() <= 1.0 and loaded.rgb.std() > 0.05
    assert loaded.bit_depth == 8 and not loaded.grayscale and loaded.alpha is None


# --------------------------------------------------------------------------- EXIF orientation


def test_jpeg_exif_orientation_6_rotates_clockwise(tmp_path):
    arr = np.zeros((16, 32, 3), np.uint8)
    arr[:, :] = (0, 0, 255)
    arr[:8, :8] = (255, 0, 0)  # marked top-left block
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(tmp_path / "o.jpg", exif=exif, quality=95, subsampling=0)
    loaded = load_image(tmp_path / "o.jpg")
    assert loaded.rgb.shape == (32, 16, 3)  # transposed
    top_right = loaded.rgb[1:7, 9:15].mean(axis=(0, 1))
    assert top_right[0] > 0.8 and top_right[2] < 0.2  # the red block moved to the top right
    top_left = loaded.rgb[1:7, 1:7].mean(axis=(0, 1))
    assert top_left[2] > 0.8 and top_left[0] < 0.2


@pytest.mark.parametrize("orientation", range(1, 9))
def test_all_orientations_match_pillow(tmp_path, orientation):
    arr = RNG.integers(0, 256, (3, 5, 3)).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(tmp_path / "o.png", exif=exif)
    with Image.open(tmp_path / "o.png") as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    loaded = load_image(tmp_path / "o.png")
    np.testing.assert_array_equal(np.round(loaded.rgb * 255).astype(np.uint8), expected)


def test_16bit_png_orientation(tmp_path):
    arr = _u16((3, 5, 4))
    (tmp_path / "o.png").write_bytes(_png_bytes(arr, before_idat=[_exif_chunk(8)]))
    loaded = load_image(tmp_path / "o.png")
    expected = np.rot90(arr, 1)  # orientation 8: rotate 90° counter-clockwise
    assert loaded.rgb.shape == (5, 3, 3) and loaded.bit_depth == 16
    np.testing.assert_array_equal(np.round(loaded.rgb * 65535).astype(np.uint16), expected[:, :, :3])
    np.testing.assert_array_equal(np.round(loaded.alpha * 65535).astype(np.uint16), expected[:, :, 3])


# --------------------------------------------------------------------------- 16-bit precision


def test_pillow_reduces_16bit_rgb_png_to_8_bits(tmp_path):
    """Documents why 16-bit PNGs are not decoded by Pillow."""
    arr = np.full((2, 2, 3), 1000, np.uint16)
    (tmp_path / "x.png").write_bytes(_png_bytes(arr))
    with Image.open(tmp_path / "x.png") as im:
        assert im.mode == "RGB" and np.asarray(im)[0, 0, 0] == 1000 >> 8


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize("band", [None, 3])
def test_16bit_png_all_filters_and_interlace(tmp_path, monkeypatch, channels, interlace, band):
    if band is not None:  # several bands per image: rows carried over from band to band
        monkeypatch.setattr(png16, "_png_band_rows", lambda width, bpp: band)
    arr = _u16((11, 10, channels))
    arr[3:6] = 1000  # flat rows give the filters something predictable to do
    arr[6:9] = RNG.integers(0, 3, (3, 10, channels)) * 257  # few values: many Paeth ties
    (tmp_path / "x.png").write_bytes(_png_bytes(arr, interlace=interlace))
    loaded = load_image(tmp_path / "x.png")
    assert loaded.bit_depth == 16 and loaded.grayscale == (channels <= 2)
    colour = arr[:, :, :1].repeat(3, axis=2) if channels <= 2 else arr[:, :, :3]
    np.testing.assert_array_equal(np.round(loaded.rgb * 65535).astype(np.uint16), colour)
    if channels in (2, 4):
        np.testing.assert_array_equal(np.round(loaded.alpha * 65535).astype(np.uint16), arr[:, :, -1])
    else:
        assert loaded.alpha is None


def test_16bit_png_with_only_sub_and_up_rows(tmp_path):
    arr = _u16((6, 5, 3))
    rows = arr.astype(">u2").reshape(6, -1).view(np.uint8)
    data, prior = b"", bytes(rows.shape[1])
    for y in range(6):
        data += _filter_row([1, 2, 0][y % 3], rows[y].tobytes(), prior, 6)
        prior = rows[y].tobytes()
    ihdr = struct.pack(">IIBBBBB", 5, 6, 16, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(data))
    png += _chunk(b"IEND", b"")
    (tmp_path / "s.png").write_bytes(png)
    loaded = load_image(tmp_path / "s.png")
    np.testing.assert_array_equal(np.round(loaded.rgb * 65535).astype(np.uint16), arr)


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda d: d[:-12], "IEND"),  # IEND chunk missing
        (lambda d: d.replace(b"IDAT", b"IDAX"), ""),  # no image data chunk at all
        (lambda d: _flip(d, d.index(b"IDAT") + 9), "checksum"),  # a damaged byte in the data
        (lambda d: d[: d.index(b"IDAT") + 20] + d[d.index(b"IDAT") + 21 :], ""),  # one byte lost
        (_without_zlib_checksum, "ends early"),  # all pixels there, but the stream is cut short
    ],
)
def test_damaged_16bit_png(tmp_path, damage, words):
    data = _png_bytes(_u16((8, 8, 3)))
    (tmp_path / "d.png").write_bytes(damage(data))
    with pytest.raises(InputError) as excinfo:
        load_image(tmp_path / "d.png")
    message = _one_line_error(excinfo, "d.png")
    assert "truncated or corrupt" in message and words in message


@pytest.mark.parametrize("channels", [1, 3])
def test_16bit_png_transparent_colour(tmp_path, channels):
    arr = _u16((4, 4, channels))
    arr[1, 2] = 1001
    key = struct.pack(">" + "H" * channels, *([1001] * channels))
    (tmp_path / "t.png").write_bytes(_png_bytes(arr, before_idat=[_chunk(b"tRNS", key)]))
    loaded = load_image(tmp_path / "t.png")
    assert loaded.alpha is not None and loaded.alpha[1, 2] == 0.0 and loaded.alpha.sum() == 15


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff"])
@pytest.mark.parametrize("with_alpha", [False, True])
def test_16bit_round_trip_is_exact(tmp_path, suffix, with_alpha):
    rgb = _u16((6, 9, 3)).astype(np.float32) / 65535
    rgb[0, 0] = 1000 / 65535  # not representable in 8 bits
    alpha = _u16((6, 9)).astype(np.float32) / 65535 if with_alpha else None
    out = save_image(tmp_path / f"x{suffix}", rgb, alpha=alpha, bit_depth=16)
    assert out == tmp_path / f"x{suffix}"
    loaded = load_image(out)
    assert loaded.bit_depth == 16 and not loaded.grayscale
    assert np.abs(loaded.rgb - rgb).max() <= 0.5 / 65535 + 1e-7
    assert loaded.rgb[0, 0, 0] == pytest.approx(1000 / 65535, abs=1e-9)
    if with_alpha:
        assert np.abs(loaded.alpha - alpha).max() <= 0.5 / 65535 + 1e-7
    else:
        assert loaded.alpha is None


@pytest.mark.parametrize("filter_type", [None, 0, 1, 2, 3, 4])
def test_16bit_png_encoder_filters(tmp_path, filter_type):
    pixels = _u16((9, 7, 4))
    pixels[:, :3] = 40000  # flat areas
    buffer = io.BytesIO()
    png16.encode_png16(buffer, pixels, filter_type=filter_type)
    (tmp_path / "e.png").write_bytes(buffer.getvalue())
    loaded = load_image(tmp_path / "e.png")
    np.testing.assert_array_equal(np.round(loaded.rgb * 65535).astype(np.uint16), pixels[:, :, :3])
    # an independent decoder (Pillow's, which keeps the high byte) agrees
    with Image.open(tmp_path / "e.png") as im:
        np.testing.assert_array_equal(np.asarray(im), (pixels >> 8).astype(np.uint8))


def test_16bit_planar_and_gray_alpha_tiffs(tmp_path):
    import tifffile

    planar = _u16((3, 4, 5))
    tifffile.imwrite(tmp_path / "p.tif", planar, photometric="rgb", planarconfig="separate")
    loaded = load_image(tmp_path / "p.tif")
    np.testing.assert_array_equal(
        np.round(loaded.rgb * 65535).astype(np.uint16), np.moveaxis(planar, 0, -1)
    )
    gray_alpha = _u16((4, 5, 2))
    tifffile.imwrite(
        tmp_path / "ga.tif", gray_alpha, photometric="minisblack", extrasamples=["unassalpha"]
    )
    loaded = load_image(tmp_path / "ga.tif")  # Pillow cannot even open this one
    assert loaded.grayscale and loaded.bit_depth == 16
    gray = np.round(loaded.rgb[:, :, 0] * 65535).astype(np.uint16)
    np.testing.assert_array_equal(gray, gray_alpha[:, :, 0])
    np.testing.assert_array_equal(np.round(loaded.alpha * 65535).astype(np.uint16), gray_alpha[:, :, 1])


def test_16bit_miniswhite_tiff_is_inverted(tmp_path):
    import tifffile

    gray = _u16((3, 4))
    tifffile.imwrite(tmp_path / "w.tif", gray, photometric="miniswhite")
    loaded = load_image(tmp_path / "w.tif")
    assert loaded.grayscale and loaded.bit_depth == 16
    np.testing.assert_array_equal(np.round(loaded.rgb[:, :, 0] * 65535).astype(np.uint16), 65535 - gray)


def test_16bit_lzw_tiff_falls_back_to_pillow(tmp_path, monkeypatch):
    """Without imagecodecs tifffile cannot decode LZW; Pillow reads it at 8-bit precision."""
    import tifffile

    pixels = _u16((5, 6, 3))
    monkeypatch.setitem(
        tifffile.TIFF.COMPRESSORS._codecs, 5, lambda data, *a, **k: _lzw_encode(bytes(data))
    )
    tifffile.imwrite(tmp_path / "l.tif", pixels, photometric="rgb", compression="lzw")
    monkeypatch.undo()
    loaded = load_image(tmp_path / "l.tif")
    assert loaded.bit_depth == 16 and loaded.rgb.shape == (5, 6, 3)
    assert np.abs(loaded.rgb - pixels / 65535).max() <= 1 / 255 + 1e-6


@pytest.mark.parametrize(
    ("suffix", "with_alpha"),
    [(".png", False), (".png", True), (".tif", False), (".tiff", True), (".bmp", False)],
)
def test_8bit_round_trip_is_exact(tmp_path, suffix, with_alpha):
    rgb = RNG.integers(0, 256, (5, 7, 3)).astype(np.float32) / 255
    alpha = RNG.integers(0, 256, (5, 7)).astype(np.float32) / 255 if with_alpha else None
    loaded = load_image(save_image(tmp_path / f"x{suffix}", rgb, alpha=alpha))
    assert loaded.bit_depth == 8
    np.testing.assert_array_equal(loaded.rgb, rgb)
    if with_alpha:
        np.testing.assert_array_equal(loaded.alpha, alpha)


def test_save_rounds_and_clips(tmp_path):
    rgb = np.array([[[0.4 / 255, 0.6 / 255, 254.6 / 255], [-3.0, 7.0, np.nan]]], np.float32)
    loaded = load_image(save_image(tmp_path / "r.png", rgb))
    assert (np.round(loaded.rgb * 255).astype(int)[0].tolist()) == [[0, 1, 255], [0, 255, 0]]


def test_16bit_request_for_jpeg_writes_8bit(tmp_path):
    rgb = np.full((8, 8, 3), 0.5, np.float32)
    loaded = load_image(save_image(tmp_path / "x.JPG", rgb, bit_depth=16))
    assert loaded.bit_depth == 8
    np.testing.assert_allclose(loaded.rgb, 0.5, atol=2 / 255)


# --------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as excinfo:
        load_image(tmp_path / "nope.png")
    assert "no such file" in _one_line_error(excinfo, "nope.png")


def test_directory(tmp_path):
    (tmp_path / "d.png").mkdir()
    with pytest.raises(InputError) as excinfo:
        load_image(tmp_path / "d.png")
    assert "directory" in _one_line_error(excinfo, "d.png")


@pytest.mark.parametrize(
    "content", [b"", b"hello, this is text\n" * 20, RNG.integers(0, 256, 5000, dtype=np.uint8).tobytes()]
)
def test_not_an_image(tmp_path, content):
    path = tmp_path / "n.jpg"
    path.write_bytes(content)
    with pytest.raises(InputError) as excinfo:
        load_image(path)
    _one_line_error(excinfo, path)


def _truncated_cases() -> dict[str, bytes]:
    import tifffile

    arr = RNG.integers(0, 256, (48, 48, 3)).astype(np.uint8)
    cases = {}
    for name, fmt, kwargs in [
        ("a.png", "PNG", {}),
        ("a.jpg", "JPEG", {"quality": 90}),
        ("a.tif", "TIFF", {}),
        ("a.webp", "WEBP", {"lossless": True}),
    ]:
        buffer = io.BytesIO()
        Image.fromarray(arr).save(buffer, format=fmt, **kwargs)
        cases[name] = buffer.getvalue()
    cases["a16.png"] = _png_bytes(_u16((24, 24, 3)))
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, _u16((24, 24, 3)), photometric="rgb")
    cases["a16.tif"] = buffer.getvalue()
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, _u16((24, 24, 3)), photometric="rgb", compression="zlib")
    cases["a16z.tif"] = buffer.getvalue()
    if PHOTO.exists():
        cases["photo.jpg"] = PHOTO.read_bytes()
    return cases


def test_truncated_files(tmp_path):
    for name, data in _truncated_cases().items():
        path = tmp_path / name
        path.write_bytes(data)
        load_image(path)  # the whole file is fine
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(InputError) as excinfo:
            load_image(path)
        message = _one_line_error(excinfo, name)
        assert "truncated or corrupt" in message, (name, message)


def test_truncation_detected_even_if_pillow_is_told_to_accept_it(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = _truncated_cases()["a.png"]
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError):
        load_image(tmp_path / "t.png")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


def test_corrupt_png_data(tmp_path):
    data = bytearray(_png_bytes(RNG.integers(0, 256, (16, 16, 3)).astype(np.uint8)))
    start = data.index(b"IDAT") + 8
    data[start : start + 20] = bytes(20)  # wreck the zlib stream
    (tmp_path / "c.png").write_bytes(bytes(data))
    with pytest.raises(InputError) as excinfo:
        load_image(tmp_path / "c.png")
    assert "truncated or corrupt" in _one_line_error(excinfo, "c.png")


def test_bomb_refused_before_decoding(tmp_path, monkeypatch):
    Image.new("RGB", (64, 64)).save(tmp_path / "b.png")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(InputError) as excinfo:
        load_image(tmp_path / "b.png", max_pixels=1000)
    message = _one_line_error(excinfo, "b.png")
    assert "64×64" in message and "megapixels" in message and "limit" in message


def test_bomb_header_with_default_limit(tmp_path):
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
    data += _chunk(b"IDAT", zlib.compress(b"\0" * 100)) + _chunk(b"IEND", b"")
    (tmp_path / "x.png").write_bytes(data)
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(InputError) as excinfo:
        load_image(tmp_path / "x.png")
    message = _one_line_error(excinfo, "x.png")
    assert message == (
        f"image '{tmp_path / 'x.png'}' is 20000×20000 = 400.0 megapixels, "
        "above the limit of 179.0 megapixels"
    )
    assert Image.MAX_IMAGE_PIXELS == before  # Pillow's global is restored


def test_bomb_tiff_refused_before_decoding(tmp_path, monkeypatch):
    import tifffile

    tifffile.imwrite(
        tmp_path / "b.tif", _u16((40, 40, 2)), photometric="minisblack", extrasamples=["unassalpha"]
    )
    monkeypatch.setattr(tifffile.TiffPage, "asarray", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(InputError) as excinfo:
        load_image(tmp_path / "b.tif", max_pixels=1599)
    assert "40×40" in _one_line_error(excinfo, "b.tif")


def test_limit_above_pillows_default_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # pretend Pillow's limit is tiny
    Image.new("RGB", (16, 16)).save(tmp_path / "s.png")
    assert load_image(tmp_path / "s.png", max_pixels=1000).rgb.shape == (16, 16, 3)
    assert Image.MAX_IMAGE_PIXELS == 100


# --------------------------------------------------------------------------- saving


def test_unknown_suffix(tmp_path):
    rgb = np.zeros((2, 2, 3), np.float32)
    for name in ("x.gif", "noext"):
        with pytest.raises(InputError) as excinfo:
            save_image(tmp_path / name, rgb)
        message = _one_line_error(excinfo, name)
        assert ".png" in message and ".jpg" in message and ".tif" in message and ".webp" in message
        assert not (tmp_path / name).exists()


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".bmp"])
def test_alpha_refused_for_formats_without_it(tmp_path, suffix):
    with pytest.raises(InputError) as excinfo:
        save_image(tmp_path / f"x{suffix}", np.zeros((2, 2, 3)), alpha=np.ones((2, 2)))
    assert ".png" in _one_line_error(excinfo, f"x{suffix}")
    assert list(tmp_path.iterdir()) == []


def test_missing_output_directory(tmp_path):
    with pytest.raises(InputError) as excinfo:
        save_image(tmp_path / "no" / "x.png", np.zeros((2, 2, 3)))
    assert "does not exist" in _one_line_error(excinfo, "x.png")


def test_bad_bit_depth(tmp_path):
    with pytest.raises(InputError):
        save_image(tmp_path / "x.png", np.zeros((2, 2, 3)), bit_depth=12)


def test_protected_input_is_not_overwritten(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    source = sub / "in.jpg"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(source)
    original = source.read_bytes()
    os.link(source, tmp_path / "hard.jpg")
    (tmp_path / "soft.jpg").symlink_to(source)
    rgb = np.ones((8, 8, 3), np.float32)
    spellings = [source, str(source), sub / ".." / "sub" / "in.jpg"]
    for target in spellings + [tmp_path / "hard.jpg", tmp_path / "soft.jpg"]:
        with pytest.raises(InputError) as excinfo:
            save_image(target, rgb, protect=[source])
        assert _one_line_error(excinfo, target).startswith("refusing to overwrite input file")
    assert source.read_bytes() == original
    assert sorted(p.name for p in sub.iterdir()) == ["in.jpg"]
    save_image(sub / "out.jpg", rgb, protect=[source, None])  # other paths are fine
    assert (sub / "out.jpg").exists()


def test_save_replaces_existing_file_with_normal_permissions(tmp_path):
    target = tmp_path / "x.png"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    save_image(target, np.full((3, 3, 3), 0.25, np.float32))
    assert load_image(target).rgb[0, 0, 0] == pytest.approx(64 / 255)
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


@pytest.mark.parametrize(
    ("error", "expected"),
    [(OSError(28, "No space left on device"), InputError), (RuntimeError("boom"), RuntimeError)],
)
def test_failed_write_keeps_old_file(tmp_path, monkeypatch, error, expected):
    target = tmp_path / "x.png"
    target.write_bytes(b"previous content")

    def failing_save(self, fp, *args, **kwargs):
        fp.write(b"partial garbage")
        raise error

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(expected) as excinfo:
        save_image(target, np.zeros((4, 4, 3), np.float32))
    if expected is InputError:
        assert "No space left" in _one_line_error(excinfo, "x.png")
    assert target.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]  # no .tmp left behind


def test_failed_16bit_write_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "x.png"
    target.write_bytes(b"previous content")

    def failing(kind, data):
        if kind == b"IDAT":
            raise OSError(5, "Input/output error")
        return b"header"

    monkeypatch.setattr(png16, "_png_chunk", failing)
    with pytest.raises(InputError):
        save_image(target, np.zeros((4, 4, 3), np.float32), bit_depth=16)
    assert target.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_save_through_symlink_keeps_link(tmp_path):
    real = tmp_path / "real.png"
    Image.new("RGB", (2, 2)).save(real)
    link = tmp_path / "link.png"
    link.symlink_to(real)
    assert save_image(link, np.ones((3, 3, 3), np.float32)) == link
    assert link.is_symlink() and load_image(real).rgb.shape == (3, 3, 3)


def test_shape_errors_are_programming_errors(tmp_path):
    with pytest.raises(ValueError):
        save_image(tmp_path / "x.png", np.zeros((2, 2)))
    with pytest.raises(ValueError):
        save_image(tmp_path / "x.png", np.zeros((2, 2, 3)), alpha=np.zeros((3, 2)))


# --------------------------------------------------------------------------- arrays


def test_long_side_size():
    assert long_side_size((768, 1024), 512) == (384, 512)
    assert long_side_size((1024, 768), 512) == (512, 384)
    assert long_side_size((100, 100), 300) == (300, 300)
    assert long_side_size((1, 1000), 10) == (1, 10)
    assert long_side_size((3, 1000), 10) == (1, 10)
    assert long_side_size((333, 500), None) == (333, 500)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ConfigError):
            long_side_size((10, 10), bad)


@pytest.mark.parametrize("shape", [(20, 30, 3), (20, 30)])
@pytest.mark.parametrize("size", [(10, 15), (41, 7), (20, 30)])
def test_resize_shapes_and_constant(shape, size):
    constant = np.full(shape, 0.3, np.float32)
    out = resize_to(constant, size)
    assert out.shape == size + shape[2:] and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.3, atol=1e-5)


def test_resize_same_size_is_a_copy():
    arr = RNG.random((5, 6, 3)).astype(np.float32)
    out = resize_to(arr, (5, 6))
    np.testing.assert_array_equal(out, arr)
    out[0, 0, 0] = 9
    assert arr[0, 0, 0] != 9


def test_resize_antialiases_and_clips():
    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)
    small = resize_to(checker, (8, 8))
    np.testing.assert_allclose(small, 0.5, atol=0.02)  # no aliasing when shrinking
    steps = np.zeros((8, 8, 3), np.float32)
    steps[:, 4:] = 1.0
    big = resize_to(steps, (32, 32))
    assert big.min() >= 0.0 and big.max() <= 1.0  # bicubic overshoot clipped
    assert big[:, :8].max() == 0.0 and big[:, -8:].min() > 1.0 - 1e-5


def test_tensor_round_trip():
    arr = RNG.random((5, 7, 3)).astype(np.float32)
    tensor = to_tensor(arr)
    assert tensor.shape == (1, 3, 5, 7) and tensor.dtype == torch.float32 and tensor.is_contiguous()
    assert torch.equal(tensor[0, :, 2, 3], torch.from_numpy(arr[2, 3]))
    tensor.add_(0)  # a copy: changing it leaves the array alone
    tensor[0, 0, 0, 0] = 5.0
    assert arr[0, 0, 0] != 5.0
    tensor[0, 0, 0, 0] = float(arr[0, 0, 0])
    back = to_array(tensor.requires_grad_(True) * 1.0)
    assert back.shape == (5, 7, 3) and back.dtype == np.float32 and isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, arr)
    assert to_tensor(np.zeros((2, 2, 3), np.float64), device="cpu").dtype == torch.float32


def test_to_array_clips():
    tensor = torch.tensor([[-1.0, 0.5], [2.0, 1.0]]).expand(1, 3, 2, 2)
    np.testing.assert_array_equal(to_array(tensor)[:, :, 0], [[0.0, 0.5], [1.0, 1.0]])
