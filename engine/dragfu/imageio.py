"""Reading and writing user images: any file or array -> RGB `uint8` `[H, W, 3]` (+ optional alpha).

Used by `dragfu project`, `dragfu drag IMAGE`, and the server. Every failure a user can cause (missing,
unreadable, empty, 1x1 or huge image, an unwritable output) is a one-line `BadInputError`.

Documented conversions (what happens to each kind of input):
- RGB: used as is. RGBA / LA / PA / palette with transparency: colour as RGB, alpha returned
  separately (callers may use it as a weight: transparent pixels do not count).
- Grey (L, 1-bit): the grey value is copied into R, G and B.
- Palette (P): expanded through its palette.
- 16-bit grey (I;16*) and 32-bit integer (I, as Pillow opens 16-bit PNG/TIFF): 0..65535 is mapped to
  0..255 by `round(v / 257)` (values outside 0..65535 are clipped first). 16-bit RGB PNGs are reduced to
  8 bits by Pillow itself when read (it keeps the high byte).
- 32-bit float (F): values in [0, 1] are scaled by 255, otherwise clipped to [0, 255].
- CMYK, YCbCr, LAB, HSV: converted to RGB by Pillow.
- EXIF orientation is applied (the image is read upright, as viewers show it).
- Multi-frame files (GIF, TIFF pages): the first frame.
- Arrays (`as_rgb_uint8`): [H, W] grey, [H, W, 1], [H, W, 2] grey+alpha, [H, W, 3], [H, W, 4];
  dtype uint8 as is, uint16 as 16-bit (v / 257), bool as 0/255, float in [0, 1] scaled by 255 (other
  floats clipped to [0, 255]; NaN is an error), other integers clipped to [0, 255].
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dragfu.errors import BadInputError

# Smallest side we accept: a 1x1 (or 2x2) "image" carries nothing to project or drag.
MIN_SIDE = 4
# Largest image we decode (pixels): a 10000x10000 photo fits; anything bigger is almost surely a
# mistake or a decompression bomb, and resampling it would cost seconds of CPU and GiBs of memory.
MAX_PIXELS = 100_000_000


def read_image(
    path: str | os.PathLike, *, with_alpha: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    """Read an image file as RGB `uint8` `[H, W, 3]`; with `with_alpha`, also its alpha `[H, W]` or None."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"image not found: {path}")
    if path.is_dir():
        raise BadInputError(f"image path is a folder, not a file: {path}")
    if path.stat().st_size == 0:
        raise BadInputError(f"image file is empty (0 bytes): {path}")
    try:
        with warnings.catch_warnings():
            # Our own MAX_PIXELS check below is the one that counts; silence Pillow's bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as pil:
                _check_size(pil.size, str(path))  # from the header, before decoding any pixels
                pil.seek(0)
                pil.load()
                rgb, alpha = pil_to_rgb(pil)
    except BadInputError:
        raise
    except Image.DecompressionBombError:
        raise BadInputError(
            f"image is too large: {path}", hint=f"at most {MAX_PIXELS // 1_000_000} megapixels"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BadInputError(f"cannot read image {path}: {reason}") from None
    return (rgb, alpha) if with_alpha else rgb


def pil_to_rgb(pil: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert a Pillow image of any mode to (RGB uint8 [H, W, 3], alpha uint8 [H, W] or None)."""
    try:
        pil = ImageOps.exif_transpose(pil)
    except Exception:  # a broken EXIF block must not make a readable image unreadable
        pass
    _check_size(pil.size, "image")
    mode = pil.mode
    if mode == "P":
        pil = pil.convert("RGBA" if "transparency" in pil.info else "RGB")
    elif mode == "PA":
        pil = pil.convert("RGBA")
    elif mode == "1":
        pil = pil.convert("L")
    mode = pil.mode
    if mode.startswith("I") or mode == "F":
        grey = _high_depth_to_uint8(np.asarray(pil), mode)
        return np.repeat(grey[:, :, None], 3, axis=2), None
    if mode == "L":
        grey = np.asarray(pil, dtype=np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2), None
    if mode == "LA":
        la = np.asarray(pil, dtype=np.uint8)
        return np.repeat(la[:, :, :1], 3, axis=2), la[:, :, 1].copy()
    if mode in ("RGBA", "RGBa"):
        rgba = np.asarray(pil.convert("RGBA"), dtype=np.uint8)
        return np.ascontiguousarray(rgba[:, :, :3]), rgba[:, :, 3].copy()
    if mode != "RGB":
        pil = pil.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX...
    return np.asarray(pil, dtype=np.uint8).copy(), None


def as_rgb_uint8(image: np.ndarray, *, name: str = "image") -> tuple[np.ndarray, np.ndarray | None]:
    """Normalise an in-memory array (see the module doc) to (RGB uint8 [H, W, 3], alpha or None)."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise BadInputError(
            f"{name} must be [H, W], [H, W, 1|2|3|4]; got shape {list(np.shape(image))}"
        )
    _check_size((array.shape[1], array.shape[0]), name)
    array = _to_uint8(array, name)
    channels = array.shape[2]
    if channels in (1, 2):
        rgb = np.repeat(array[:, :, :1], 3, axis=2)
    else:
        rgb = np.ascontiguousarray(array[:, :, :3])
    alpha = array[:, :, -1].copy() if channels in (2, 4) else None
    return rgb, alpha


def resize_image(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resample `[H, W]` or `[H, W, C]` uint8 to `size` (an int = square; else (width, height)).

    Lanczos (Pillow) both ways: antialiased when shrinking a photo to the model resolution, sharp when
    enlarging. Non-square images are stretched: the caller (the plug-in) decides any crop beforehand.
    """
    width, height = (size, size) if isinstance(size, int) else size
    if image.shape[0] == height and image.shape[1] == width:
        return image
    squeeze = image.ndim == 3 and image.shape[2] == 1
    pil = Image.fromarray(image[:, :, 0] if squeeze else image)
    out = np.array(pil.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=None))
    return out[:, :, None] if squeeze else out


def resize_weight(weight: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resample a float weight map `[H, W]` in [0, 1] to `size` (int = square, else (width, height)).

    Box filter when shrinking (each output pixel = the fraction of it that the mask covers), bilinear
    when enlarging; the result stays in [0, 1].
    """
    width, height = (size, size) if isinstance(size, int) else size
    weight = np.asarray(weight, dtype=np.float32)
    if weight.shape == (height, width):
        return weight
    shrinking = weight.shape[0] > height or weight.shape[1] > width
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    out = np.asarray(Image.fromarray(weight, mode="F").resize((width, height), resample))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a weight mask image as float32 `[H, W]` in [0, 1]: grey value, times alpha when present."""
    rgb, alpha = read_image(path, with_alpha=True)
    weight = rgb.astype(np.float32).mean(axis=2) / 255.0
    if alpha is not None:
        weight *= alpha.astype(np.float32) / 255.0
    return weight


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write RGB uint8 `[H, W, 3]` (format from the suffix; PNG when none); one-line error on failure."""
    path = Path(path)
    if path.suffix == "":
        path = path.with_suffix(".png")
    rgb, _ = as_rgb_uint8(image, name="output image")
    try:
        Image.fromarray(rgb).save(path)
    except (OSError, ValueError, KeyError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BadInputError(f"cannot write image {path}: {reason}") from None
    return path


def _check_size(size: tuple[int, int], where: str) -> None:
    width, height = size
    if width == 0 or height == 0:
        raise BadInputError(f"{where} is empty ({width}x{height} pixels)")
    if width < MIN_SIDE or height < MIN_SIDE:
        raise BadInputError(
            f"{where} is too small ({width}x{height} pixels)",
            hint=f"at least {MIN_SIDE}x{MIN_SIDE}",
        )
    if width * height > MAX_PIXELS:
        raise BadInputError(
            f"{where} is too large ({width}x{height} pixels)",
            hint=f"at most {MAX_PIXELS // 1_000_000} megapixels; scale it down first",
        )


def _high_depth_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    if mode == "F":
        values = values.astype(np.float64)
        if not np.isfinite(values).all():
            values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values = values * 255.0
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    values = np.clip(values.astype(np.int64), 0, 65535)
    return ((values + 128) // 257).astype(np.uint8)  # = round(v / 257): 65535 -> 255


def _to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise BadInputError(f"{name} contains NaN or infinite values")
        if array.size and array.min() >= 0.0 and array.max() <= 1.0:
            array = array * 255.0
        return np.clip(np.rint(array), 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        return np.clip(array, 0, 255).astype(np.uint8)
    raise BadInputError(f"{name} has unsupported dtype {array.dtype}")
