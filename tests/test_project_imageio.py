"""dragfu.imageio: every input mode -> RGB uint8 with the documented conversion; one-line errors."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from dragfu.errors import BadInputError
from dragfu.imageio import (
    MAX_PIXELS,
    as_rgb_uint8,
    read_image,
    read_mask,
    resize_image,
    resize_weight,
    write_image,
)


def _rng_image(h=20, w=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_rgb16(values: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one), big-endian samples."""
    h, w, _ = values.shape
    raw = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(h))
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


def test_rgb_png_round_trip_is_exact(tmp_path):
    rgb = _rng_image()
    path = write_image(tmp_path / "a.png", rgb)
    back = read_image(path)
    assert back.dtype == np.uint8 and back.shape == (20, 30, 3)
    np.testing.assert_array_equal(back, rgb)
    back, alpha = read_image(path, with_alpha=True)
    assert alpha is None


def test_grey_is_copied_into_three_channels(tmp_path):
    grey = np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)
    Image.fromarray(grey).save(tmp_path / "g.png")
    rgb = read_image(tmp_path / "g.png")
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], grey)


def test_one_bit_image_becomes_black_and_white(tmp_path):
    bits = np.zeros((8, 8), dtype=bool)
    bits[:, 4:] = True
    Image.fromarray(bits).convert("1").save(tmp_path / "b.png")
    rgb = read_image(tmp_path / "b.png")
    assert set(np.unique(rgb)) == {0, 255}
    assert (rgb[:, 4:] == 255).all() and (rgb[:, :4] == 0).all()


def test_palette_image_is_expanded_through_its_palette(tmp_path):
    indices = np.array([[0, 1, 2, 1]] * 4, dtype=np.uint8)
    pil = Image.fromarray(indices).convert("P")
    pil.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    pil.save(tmp_path / "p.png")
    rgb, alpha = read_image(tmp_path / "p.png", with_alpha=True)
    assert alpha is None
    np.testing.assert_array_equal(rgb[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(rgb[0, 1], [0, 255, 0])
    np.testing.assert_array_equal(rgb[0, 2], [0, 0, 255])


def test_palette_transparency_becomes_alpha(tmp_path):
    indices = np.array([[0, 1] * 2] * 4, dtype=np.uint8)
    pil = Image.fromarray(indices).convert("P")
    pil.putpalette([10, 20, 30, 200, 100, 50] + [0] * (256 * 3 - 6))
    pil.save(tmp_path / "t.png", transparency=0)
    rgb, alpha = read_image(tmp_path / "t.png", with_alpha=True)
    assert alpha is not None
    assert (alpha[:, 0] == 0).all() and (alpha[:, 1] == 255).all()
    np.testing.assert_array_equal(rgb[0, 1], [200, 100, 50])


def test_sixteen_bit_grey_is_scaled_by_257(tmp_path):
    values = np.array([[0, 257, 32896, 65535]] * 4, dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    rgb = read_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 1, 128, 255])
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_sixteen_bit_rgb_png_keeps_the_high_byte(tmp_path):
    values = np.zeros((4, 4, 3), dtype=np.uint16)
    values[..., 0] = 0xFF00
    values[..., 1] = 0x8080
    values[..., 2] = 0x0100
    (tmp_path / "c16.png").write_bytes(_png_rgb16(values))
    rgb = read_image(tmp_path / "c16.png")
    assert rgb.shape == (4, 4, 3)
    np.testing.assert_allclose(rgb[0, 0].astype(int), [255, 128, 1], atol=1)


def test_rgba_and_la_return_alpha(tmp_path):
    rgba = np.dstack([_rng_image(8, 8), np.full((8, 8), 77, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb, alpha = read_image(tmp_path / "a.png", with_alpha=True)
    np.testing.assert_array_equal(rgb, rgba[:, :, :3])
    assert (alpha == 77).all()
    la = np.dstack([np.full((8, 8), 9, np.uint8), np.full((8, 8), 200, np.uint8)])
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    rgb, alpha = read_image(tmp_path / "la.png", with_alpha=True)
    assert (rgb == 9).all() and (alpha == 200).all()


def test_cmyk_jpeg_is_converted(tmp_path):
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    rgb = read_image(tmp_path / "c.jpg")
    assert rgb.shape == (8, 16, 3)
    assert rgb[..., 0].mean() > 200 and rgb[..., 1].mean() < 60  # red


def test_exif_orientation_is_applied(tmp_path):
    pil = Image.fromarray(_rng_image(10, 20))
    exif = pil.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    pil.save(tmp_path / "o.jpg", exif=exif)
    assert read_image(tmp_path / "o.jpg").shape == (20, 10, 3)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: None, "not found"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("hello, not an image"), "cannot read"),
        (lambda p: Image.new("RGB", (1, 1)).save(p, format="PNG"), "too small"),
    ],
    ids=["missing", "empty-file", "not-an-image", "1x1"],
)
def test_bad_files_give_one_line_errors(tmp_path, make, fragment):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(BadInputError) as error:
        read_image(path)
    assert fragment in _one_line(error)


def test_truncated_png_gives_a_one_line_error(tmp_path):
    Image.fromarray(_rng_image(64, 64)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError) as error:
        read_image(tmp_path / "cut.png")
    assert "cannot read" in _one_line(error)


def test_huge_image_is_refused_from_its_header(tmp_path):
    side = int(MAX_PIXELS**0.5) + 10  # the header claims it; no pixel data is ever decoded
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IEND", b"")
    (tmp_path / "huge.png").write_bytes(data)
    with pytest.raises(BadInputError) as error:
        read_image(tmp_path / "huge.png")
    assert "too large" in _one_line(error)


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(BadInputError) as error:
        read_image(tmp_path)
    assert "folder" in _one_line(error)


def test_arrays_of_every_documented_kind():
    grey = np.full((6, 7), 100, np.uint8)
    rgb, alpha = as_rgb_uint8(grey)
    assert rgb.shape == (6, 7, 3) and alpha is None and (rgb == 100).all()
    rgb, alpha = as_rgb_uint8(np.dstack([grey, grey // 2]))
    assert (rgb == 100).all() and (alpha == 50).all()
    rgb, alpha = as_rgb_uint8(np.full((6, 7, 4), 65535, np.uint16))
    assert (rgb == 255).all() and (alpha == 255).all()
    rgb, _ = as_rgb_uint8(np.full((6, 7, 3), 0.5, np.float32))
    assert (rgb == 128).all()
    rgb, _ = as_rgb_uint8(np.ones((6, 7), dtype=bool))
    assert (rgb == 255).all()


@pytest.mark.parametrize(
    "array",
    [np.zeros((5, 5, 5), np.uint8), np.zeros((0, 5, 3), np.uint8), np.zeros((1, 1, 3), np.uint8),
     np.full((6, 6, 3), np.nan, np.float32), np.zeros((6,), np.uint8)],
    ids=["5-channels", "empty", "1x1", "nan", "1-d"],
)  # fmt: skip
def test_bad_arrays_give_one_line_errors(array):
    with pytest.raises(BadInputError) as error:
        as_rgb_uint8(array)
    _one_line(error)


def test_downscaling_is_antialiased():
    # A one-pixel checkerboard shrunk 4x must become flat grey, not an aliasing pattern.
    checker = ((np.indices((256, 256)).sum(axis=0) % 2) * 255).astype(np.uint8)
    small = resize_image(np.dstack([checker] * 3), 64)
    assert small.shape == (64, 64, 3)
    assert abs(float(small.mean()) - 127.5) < 3 and float(small.std()) < 4


def test_resize_keeps_a_smooth_image_and_stretches_to_the_size():
    ramp = np.tile(np.linspace(0, 255, 100).astype(np.uint8), (50, 1))
    out = resize_image(np.dstack([ramp] * 3), 64)
    assert out.shape == (64, 64, 3)
    assert np.all(np.diff(out[32, 2:-2, 0].astype(int)) >= 0)  # still increasing left to right
    same = _rng_image(64, 64)
    assert resize_image(same, 64) is same


def test_resize_weight_is_coverage_and_stays_in_range():
    weight = np.zeros((64, 64), np.float32)
    weight[:, :16] = 1
    small = resize_weight(weight, 8)
    np.testing.assert_allclose(small[0], [1, 1, 0, 0, 0, 0, 0, 0])
    big = resize_weight(weight, (100, 80))
    assert big.shape == (80, 100) and big.min() >= 0 and big.max() <= 1


def test_read_mask_uses_grey_and_alpha(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, :4] = 255
    rgba[:, :2, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "m.png")
    mask = read_mask(tmp_path / "m.png")
    assert mask.dtype == np.float32
    np.testing.assert_allclose(mask[0], [0, 0, 1, 1, 0, 0, 0, 0])


def test_write_image_into_a_missing_folder_fails_cleanly(tmp_path):
    with pytest.raises(BadInputError) as error:
        write_image(tmp_path / "nowhere" / "x.png", _rng_image(8, 8))
    assert "cannot write" in _one_line(error)
