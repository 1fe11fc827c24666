"""A "photo world": toy faces drawn into photo-sized pictures, with landmarks known exactly.

The embedded generator draws toy faces at 128 x 128; real users edit 12-24 MP photos where the
face covers 300-3000 px, sits anywhere, is turned and carries grain. `build_photo(PhotoSpec)`
draws such a photo analytically at its own resolution (never a 128 render upscaled), so a drag
benchmark can measure landmarks and grain at photo scale.

Geometry. A photo places the world (dragfu.toy.world, 128-pixel units) by a similarity: the world
point (64, 64) goes to `centre`, lengths grow by `scale`, and the whole world turns by `angle`
degrees (clockwise on screen, like ToyParams.angle, since y points down):

    photo = centre + scale * R(angle) @ (world - (64, 64)),   R(a) = [[cos a, -sin a],
                                                                      [sin a,  cos a]].

So the face turns on screen by params.angle + spec.angle. Photo coordinates follow the world's
convention: x right, y down, pixel (i, j) covers [i, i+1) x [j, j+1), its centre is (i+.5, j+.5).

Drawing. Each photo pixel is supersampled (4 x 4 samples when scale <= 2, where anti-aliasing
still matters at the face's size; 2 x 2 above, where the face is >= 500 px and the edge pixels are
few), each sample's world position is labelled by world.draw_labels (the same routine as
world.render, which only evaluates each part inside its bounding box), and the shares are mixed
with the parts' colours exactly as world.render does. At scale 1, angle 0, centre (64, 64) on a
128 canvas the photo *is* world.render(params), bit for bit; at scale S with S * 4 samples per
world pixel it is world.render(params, 128 * S) placed at centre - 64 S.

Background: the world's colour and vertical gradient, evaluated in world coordinates (so it turns
with the face); the gradient runs across the world's 128 square and holds its end colours beyond
it (world.background_colour), so it continues without a seam and never saturates far away.

Texture and grain (both added before rounding to uint8, both deterministic from `seed`):
- texture is attached to the content: value noise on a lattice in world coordinates with spacing
  1 / scale world units (about 1 photo px, i.e. detail the 128-px generator cannot draw), lattice
  values uniform in [-texture, texture] (hashed from the lattice index and seed), bilinearly
  interpolated at each pixel centre's world position, added equally to R, G and B. For a given
  scale and seed, the same world point always gets the same value, wherever the face is put.
- grain is fixed to the photo's pixel grid, like a sensor: N(0, grain^2) per pixel and channel,
  independent between channels.
Finally, `jpeg_quality` round-trips the photo through PIL's JPEG (its default 4:2:0 chroma
subsampling).

Memory: the canvas is built in bands of rows (about BAND_PIXELS pixels each), the face's label
map only inside the face's box, so a 6000 x 4000 photo needs a few hundred MB at most.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

from dragfu.toy import world
from dragfu.toy.world import (
    LANDMARK_NAMES,
    WORLD_SIZE,
    ToyParams,
    background_colour,
    composite,
    draw_labels,
    part_coverage,
)

WORLD_CENTRE = WORLD_SIZE / 2.0  # the world point that `PhotoSpec.centre` places
FINE_SCALE = 2.0  # up to this scale, 4 x 4 samples per photo pixel; above, 2 x 2
BAND_PIXELS = 1 << 20  # photo pixels per band of rows while building (bounds the temporaries)
GRAIN_STREAM = 0x6A41  # second word of the grain generator's seed (texture uses hashing instead)


def supersampling_for(scale: float) -> int:
    """Samples per photo pixel along each axis: 4 while the face is small (scale <= 2), else 2."""
    return world.SUPERSAMPLING if scale <= FINE_SCALE else 2


@dataclass(frozen=True)
class PhotoSpec:
    """One photo: a toy face (world units) placed, scaled and turned on a canvas.

    `supersampling` overrides `supersampling_for(scale)` (e.g. 4 at scale 4, to compare with a
    world render bit for bit); None applies the rule.
    """

    params: ToyParams  # the face, in world units
    canvas: tuple[int, int]  # (width, height) of the photo in px
    scale: float  # photo px per world px
    angle: float = 0.0  # extra clockwise turn of the whole world, degrees
    centre: tuple[float, float] | None = None  # photo position of world (64, 64); None: middle
    grain: float = 0.0  # sigma of per-pixel Gaussian noise, 0-255 units
    texture: float = 0.0  # amplitude of the world-attached fine texture, 0-255 units
    jpeg_quality: int | None = None  # None: no JPEG round trip
    seed: int = 0
    supersampling: int | None = None

    def __post_init__(self) -> None:
        width, height = self.canvas
        if int(width) != width or int(height) != height or width < 1 or height < 1:
            raise ValueError(f"canvas must be two positive integers, got {self.canvas}")
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        if self.grain < 0 or self.texture < 0:
            raise ValueError("grain and texture must be >= 0")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.supersampling is not None and self.supersampling < 1:
            raise ValueError(f"supersampling must be >= 1, got {self.supersampling}")

    @property
    def photo_centre(self) -> tuple[float, float]:
        """Where world (64, 64) lands: `centre`, or the canvas's middle."""
        if self.centre is not None:
            return float(self.centre[0]), float(self.centre[1])
        return self.canvas[0] / 2.0, self.canvas[1] / 2.0

    @property
    def samples_per_pixel(self) -> int:
        return (
            self.supersampling if self.supersampling is not None else supersampling_for(self.scale)
        )

    def _rotation(self) -> tuple[float, float]:
        a = math.radians(self.angle)
        return math.cos(a), math.sin(a)

    def world_xy(self, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World (x, y) of photo positions (broadcastable float64 arrays): the one formula that
        every photo->world mapping here uses, so that equal photo offsets give equal bits."""
        cos_a, sin_a = self._rotation()
        cx, cy = self.photo_centre
        dx, dy = px - cx, py - cy
        wx = WORLD_CENTRE + (cos_a * dx + sin_a * dy) / self.scale
        wy = WORLD_CENTRE + (cos_a * dy - sin_a * dx) / self.scale
        return wx, wy

    def to_photo(self, world_points) -> np.ndarray:
        """[N, 2] (or [2]) world coordinates -> photo coordinates."""
        w = np.asarray(world_points, dtype=np.float64)
        cos_a, sin_a = self._rotation()
        cx, cy = self.photo_centre
        dx, dy = w[..., 0] - WORLD_CENTRE, w[..., 1] - WORLD_CENTRE
        x = cx + self.scale * (cos_a * dx - sin_a * dy)
        y = cy + self.scale * (sin_a * dx + cos_a * dy)
        return np.stack([x, y], axis=-1)

    def to_world(self, photo_points) -> np.ndarray:
        """[N, 2] (or [2]) photo coordinates -> world coordinates (the inverse of to_photo)."""
        p = np.asarray(photo_points, dtype=np.float64)
        return np.stack(self.world_xy(p[..., 0], p[..., 1]), axis=-1)


@dataclass(frozen=True)
class Photo:
    """A built photo: `image` is [H, W, 3] uint8 RGB; geometry comes from `spec`."""

    image: np.ndarray
    spec: PhotoSpec

    def to_photo(self, world_points) -> np.ndarray:
        return self.spec.to_photo(world_points)

    def to_world(self, photo_points) -> np.ndarray:
        return self.spec.to_world(photo_points)

    @property
    def landmarks(self) -> dict[str, tuple[float, float]]:
        """The nine landmarks in photo px: world.landmarks mapped through to_photo (exact)."""
        points = self.landmark_array()
        return {
            name: (float(x), float(y)) for name, (x, y) in zip(LANDMARK_NAMES, points, strict=True)
        }

    def landmark_array(self) -> np.ndarray:
        """[9, 2] photo-px landmarks in LANDMARK_NAMES order."""
        return self.to_photo(world.landmark_array(self.spec.params))

    @property
    def face_box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) photo-px bounds of the subject: face ellipse and hair cap (exact, not
        clipped to the canvas)."""
        return face_box(self.spec)


def _ellipse_extremes(a: float, b: float, turn_deg: float) -> list[tuple[float, float]]:
    """Face-frame (u, v) of the leftmost, rightmost, top and bottom points of the ellipse with
    semi-axes a (along u) and b (along v), when the frame is turned by `turn_deg` on screen.

    On the outline x(t) ~ a cos t cos(T) - b sin t sin(T), extreme at t = atan2(-b sin T, a cos T);
    y(t) ~ a cos t sin(T) + b sin t cos(T), extreme at t = atan2(b cos T, a sin T); and t + pi.
    """
    turn = math.radians(turn_deg)
    points = []
    for t in (
        math.atan2(-b * math.sin(turn), a * math.cos(turn)),
        math.atan2(b * math.cos(turn), a * math.sin(turn)),
    ):
        for s in (t, t + math.pi):
            points.append((a * math.cos(s), b * math.sin(s)))
    return points


def face_box(spec: PhotoSpec) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) photo-px bounds of the face ellipse united with the hair cap.

    The cap is the part of the bigger (margin-grown) ellipse above the hair line: its bounds are
    among that ellipse's extreme points that lie above the line and the line's two ends on it.
    """
    p = spec.params
    turn = p.angle + spec.angle  # the face frame's turn on screen
    candidates = _ellipse_extremes(p.rx, p.ry, turn)
    a, b = p.rx + p.hair_margin, p.ry + p.hair_margin
    line = p.hair_line
    candidates += [(u, v) for u, v in _ellipse_extremes(a, b, turn) if v <= line]
    if abs(line) < b:
        half = a * math.sqrt(1.0 - (line / b) ** 2)
        candidates += [(-half, line), (half, line)]
    world_points = np.array([world.face_to_image(p, u, v) for u, v in candidates])
    photo_points = spec.to_photo(world_points)
    x0, y0 = photo_points.min(axis=0)
    x1, y1 = photo_points.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


class PhotoGrid:
    """world.SampleGrid over a rectangle of photo pixels: columns [px0, px0 + width), rows
    [py0, py0 + height), `spec.samples_per_pixel` ** 2 samples per pixel, at their world
    positions."""

    def __init__(self, spec: PhotoSpec, px0: int, py0: int, width: int, height: int) -> None:
        self.spec = spec
        self.px0, self.py0 = px0, py0
        self.s = spec.samples_per_pixel
        self._shape = (height * self.s, width * self.s)
        self._separable = spec._rotation()[1] == 0.0

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    def box(self, centre: tuple[float, float], radius: float) -> tuple[int, int, int, int]:
        # A disc stays a disc under the similarity: its photo centre, radius * scale, + 1 px.
        x, y = self.spec.to_photo(centre)
        r = radius * self.spec.scale + 1.0
        rows, cols = self._shape
        x0 = max(int(math.floor((x - r - self.px0) * self.s)), 0)
        x1 = min(int(math.ceil((x + r - self.px0) * self.s)), cols)
        y0 = max(int(math.floor((y - r - self.py0) * self.s)), 0)
        y1 = min(int(math.ceil((y + r - self.py0) * self.s)), rows)
        return x0, x1, y0, y1

    def points(self, x0: int, x1: int, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        px = self.px0 + (np.arange(x0, x1, dtype=np.float64) + 0.5) / self.s
        py = self.py0 + (np.arange(y0, y1, dtype=np.float64) + 0.5) / self.s
        if self._separable:
            # Unturned: x depends on the column only, y on the row only (the general formula's
            # other term is exactly +-0 then, so the values are the same bits).
            wx, _ = self.spec.world_xy(px[None, :], np.float64(self.spec.photo_centre[1]))
            _, wy = self.spec.world_xy(np.float64(self.spec.photo_centre[0]), py[:, None])
        else:
            wx, wy = self.spec.world_xy(px[None, :], py[:, None])
        return wx.astype(np.float32), wy.astype(np.float32)


def _background(spec: PhotoSpec, px0: int, px1: int, py0: int, py1: int) -> np.ndarray:
    """Float32 [rows, cols, 3] background at the pixel centres of a photo rectangle."""
    px = np.arange(px0, px1, dtype=np.float64)[None, :] + 0.5
    py = np.arange(py0, py1, dtype=np.float64)[:, None] + 0.5
    _, wy = spec.world_xy(px, py)
    # Same float32 steps as world.render: y = world y / 128 (0 top edge, 1 bottom edge).
    y = wy.astype(np.float32) / np.float32(WORLD_SIZE)
    colour = background_colour(spec.params, y)
    return np.broadcast_to(colour, (py1 - py0, px1 - px0, 3))


def _hash_unit(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Float32 in [-1, 1) from integer lattice indices (int64, any sign) and a seed: a 2-D
    multiply-xorshift hash (lowbias32 finaliser), so any lattice point's value is known alone."""
    with np.errstate(over="ignore"):
        h = ix.astype(np.uint32) * np.uint32(0x8DA6B343)
        h ^= iy.astype(np.uint32) * np.uint32(0xD8163841)
        h ^= np.uint32((seed * 0x9E3779B1 + 0x632BE5AB) & 0xFFFFFFFF)
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x7FEB352D)
        h ^= h >> np.uint32(15)
        h *= np.uint32(0x846CA68B)
        h ^= h >> np.uint32(16)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(2.0 / (1 << 24)) - np.float32(1.0)


def texture_values(spec: PhotoSpec, wx: np.ndarray, wy: np.ndarray) -> np.ndarray:
    """Float32 texture (before the amplitude) at world positions: value noise on the lattice of
    spacing 1 / spec.scale world units, bilinear between lattice values in [-1, 1)."""
    gx, gy = wx * spec.scale, wy * spec.scale
    ix, iy = np.floor(gx), np.floor(gy)
    fx, fy = (gx - ix).astype(np.float32), (gy - iy).astype(np.float32)
    ix, iy = ix.astype(np.int64), iy.astype(np.int64)
    top = _hash_unit(ix, iy, spec.seed) * (1 - fx) + _hash_unit(ix + 1, iy, spec.seed) * fx
    bottom = (
        _hash_unit(ix, iy + 1, spec.seed) * (1 - fx) + _hash_unit(ix + 1, iy + 1, spec.seed) * fx
    )
    return top * (1 - fy) + bottom * fy


def build_photo(spec: PhotoSpec) -> Photo:
    """Draw the photo described by `spec` (see the module docstring)."""
    width, height = int(spec.canvas[0]), int(spec.canvas[1])
    s = spec.samples_per_pixel
    # Pixels that can show the face: its box + 1 px, clipped to the canvas (may be empty).
    bx0, by0, bx1, by1 = face_box(spec)
    fx0, fx1 = max(int(math.floor(bx0)) - 1, 0), min(int(math.ceil(bx1)) + 1, width)
    fy0, fy1 = max(int(math.floor(by0)) - 1, 0), min(int(math.ceil(by1)) + 1, height)
    rng = np.random.default_rng([spec.seed, GRAIN_STREAM]) if spec.grain > 0 else None
    out = np.empty((height, width, 3), dtype=np.uint8)
    band = max(1, BAND_PIXELS // width)
    for top in range(0, height, band):
        bottom = min(top + band, height)
        image = np.array(_background(spec, 0, width, top, bottom))  # writable copy
        ry0, ry1 = max(top, fy0), min(bottom, fy1)
        if ry0 < ry1 and fx0 < fx1:
            grid = PhotoGrid(spec, fx0, ry0, fx1 - fx0, ry1 - ry0)
            coverage = part_coverage(draw_labels(spec.params, grid), s)
            face = composite(coverage, _background(spec, fx0, fx1, ry0, ry1), spec.params)
            image[ry0 - top : ry1 - top, fx0:fx1] = face
        if spec.texture > 0:
            px = np.arange(width, dtype=np.float64)[None, :] + 0.5
            py = np.arange(top, bottom, dtype=np.float64)[:, None] + 0.5
            wx, wy = spec.world_xy(px, py)
            image += (np.float32(spec.texture) * texture_values(spec, wx, wy))[:, :, None]
        if rng is not None:
            noise = rng.standard_normal((bottom - top, width, 3), dtype=np.float32)
            image += np.float32(spec.grain) * noise
        out[top:bottom] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    if spec.jpeg_quality is not None:
        out = jpeg_round_trip(out, spec.jpeg_quality)
    return Photo(image=out, spec=spec)


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode [H, W, 3] uint8 RGB as JPEG with PIL at `quality` and decode it again."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB")).copy()


# --------------------------------------------------------------------------------------------
# Measuring


def _pixel_range(low: float, high: float, limit: int) -> tuple[int, int]:
    """Pixels [i0, i1) whose centres i + 0.5 lie in [low, high], clipped to [0, limit)."""
    i0 = max(int(math.ceil(low - 0.5)), 0)
    i1 = min(int(math.floor(high - 0.5)) + 1, limit)
    return i0, max(i1, i0)


def photo_crop(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The pixels of `image` ([H, W, ...]) whose centres lie in box (x0, y0, x1, y1), photo px;
    `image` may also be a Photo."""
    image = image.image if isinstance(image, Photo) else np.asarray(image)
    x0, x1 = _pixel_range(box[0], box[2], image.shape[1])
    y0, y1 = _pixel_range(box[1], box[3], image.shape[0])
    return image[y0:y1, x0:x1]


HF_SIGMA = 1.5  # px: the Gaussian blur that high_frequency_energy subtracts


def high_frequency_energy(
    image: np.ndarray, box: tuple[float, float, float, float] | None = None
) -> float:
    """Grain's high-frequency energy: mean of (grey - GaussianBlur(grey, sigma 1.5 px))^2 over the
    pixels whose centres lie in `box` (x0, y0, x1, y1; None: the whole image), 0-255 units^2.

    grey = 0.299 R + 0.587 G + 0.114 B in float (not rounded). The blur sees a margin of 4 sigma
    around the box where the image has one (edges reflect), so the box's own border pixels are
    measured like its inside. On a smooth region this is ~0; white noise of sigma g per channel
    gives about 0.447 * 0.89 * g^2 = 0.40 g^2 (the luma weights' squares, times what the blur
    leaves: 1 - 2 k(0) + sum k^2 for the sigma-1.5 kernel k).
    For a benchmark, compare it inside the same region before and after an edit.
    """
    import cv2

    image = image.image if isinstance(image, Photo) else np.asarray(image)
    height, width = image.shape[:2]
    if box is None:
        box = (0.0, 0.0, float(width), float(height))
    x0, x1 = _pixel_range(box[0], box[2], width)
    y0, y1 = _pixel_range(box[1], box[3], height)
    if x0 >= x1 or y0 >= y1:
        raise ValueError(f"box {box} holds no pixel of a {width} x {height} image")
    margin = int(math.ceil(4 * HF_SIGMA))
    mx0, my0 = max(x0 - margin, 0), max(y0 - margin, 0)
    mx1, my1 = min(x1 + margin, width), min(y1 + margin, height)
    patch = image[my0:my1, mx0:mx1].astype(np.float32)
    if patch.ndim == 3:
        grey = patch[..., 0] * 0.299 + patch[..., 1] * 0.587 + patch[..., 2] * 0.114
    else:
        grey = patch
    blurred = cv2.GaussianBlur(grey, (0, 0), HF_SIGMA, borderType=cv2.BORDER_REFLECT)
    residual = (grey - blurred)[y0 - my0 : y1 - my0, x0 - mx0 : x1 - mx0]
    return float(np.mean(np.square(residual, dtype=np.float64)))
