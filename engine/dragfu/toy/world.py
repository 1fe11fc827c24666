"""The toy-faces world: procedural 128x128 faces whose landmarks are known exactly.

Every image is drawn from a `ToyParams` (30 numbers). Each number comes from one uniform draw in
[0, 1] (`params_from_unit`), so the world is also a deterministic function of a standard normal
vector through the normal CDF (`params_from_z`): that is how the embedded generator is trained.

Coordinates follow docs/architecture.md: x right, y down, continuous, pixel (i, j) covers
[i, i+1) x [j, j+1), so its centre is (i + 0.5, j + 0.5). Everything here is in 128-pixel units;
`render(params, size=S)` scales the drawing, and `landmarks(params, size=S)` scales with it.

Face frame: (u, v) with u along the face's own horizontal axis and v along its vertical (down) axis,
turned by `angle` degrees (positive angles turn clockwise on screen, since y points down):
    x = cx + u cos(a) - v sin(a),   y = cy + u sin(a) + v cos(a).
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass, fields
from typing import Protocol

import numpy as np

WORLD_SIZE = 128  # the world's native resolution; parameters are in these pixel units
SUPERSAMPLING = 4  # anti-aliasing: draw at 4x, then average each 4x4 block (area coverage)

# Layer labels of the supersampled label map, in drawing order.
BACKGROUND, FACE, HAIR, EYE, MOUTH = range(5)
PART_NAMES = ("background", "face", "hair", "eye", "mouth")

# Face-frame placement of the parts, in units of the face's semi-axes (from the world's spec).
EYE_U, EYE_V = 0.38, -0.22
MOUTH_V = 0.45
EYE_OPEN_MAX = 6.0  # px; the hair line always stays this far + HAIR_EYE_GAP above the eye centres
HAIR_EYE_GAP = 2.0

LANDMARK_NAMES = (
    "left_eye",
    "right_eye",
    "mouth",
    "mouth_left",
    "mouth_right",
    "mouth_top",
    "mouth_bottom",
    "face",
    "chin",
)


@dataclass(frozen=True)
class ToyParams:
    """One face. Colours are 0-255 RGB; lengths in 128-pixel units; angle in degrees.

    `mouth_width` is a fraction of rx in [0.25, 0.6]; `mouth_open` is a unit number mapped to a
    half-height in [1, 0.22 ry]; `hair_fraction` is the cap's share of the face's height.
    "left" means the viewer's left (smaller x when the face is upright).
    """

    bg_r: float
    bg_g: float
    bg_b: float
    grad_r: float  # vertical gradient: +grad at the bottom edge, -grad at the top
    grad_g: float
    grad_b: float
    cx: float
    cy: float
    rx: float
    ry: float
    angle: float
    skin_r: float
    skin_g: float
    skin_b: float
    hair_r: float
    hair_g: float
    hair_b: float
    hair_fraction: float
    hair_margin: float
    eye_r: float
    eye_g: float
    eye_b: float
    eye_width: float  # horizontal semi-axis of both eyes, px
    left_eye_open: float  # vertical semi-axis, px
    right_eye_open: float
    mouth_r: float
    mouth_g: float
    mouth_b: float
    mouth_width: float  # half-width as a fraction of rx
    mouth_open: float  # unit number: half-height = 1 + mouth_open * (0.22 ry - 1)

    def as_array(self) -> np.ndarray:
        return np.array(astuple(self), dtype=np.float64)

    @property
    def mouth_half_width(self) -> float:
        return self.mouth_width * self.rx

    @property
    def mouth_half_height(self) -> float:
        return 1.0 + self.mouth_open * (0.22 * self.ry - 1.0)

    @property
    def hair_line(self) -> float:
        """Face-frame v of the hair cap's lower edge: the top `hair_fraction` of the height,
        raised when needed so that it always stays above the widest-open eyes."""
        nominal = -self.ry + 2.0 * self.ry * self.hair_fraction
        return min(nominal, EYE_V * self.ry - EYE_OPEN_MAX - HAIR_EYE_GAP)


# (name, low, high) of the uniform each parameter is drawn from, in ToyParams field order.
PARAM_RANGES: tuple[tuple[str, float, float], ...] = (
    ("bg_r", 120.0, 200.0),
    ("bg_g", 150.0, 220.0),
    ("bg_b", 170.0, 240.0),
    ("grad_r", -15.0, 15.0),
    ("grad_g", -15.0, 15.0),
    ("grad_b", -15.0, 15.0),
    ("cx", 48.0, 80.0),
    ("cy", 48.0, 80.0),
    ("rx", 26.0, 38.0),
    ("ry", 30.0, 44.0),
    ("angle", -15.0, 15.0),
    ("skin_r", 205.0, 245.0),
    ("skin_g", 165.0, 205.0),
    ("skin_b", 130.0, 170.0),
    ("hair_r", 40.0, 80.0),
    ("hair_g", 25.0, 55.0),
    ("hair_b", 15.0, 45.0),
    ("hair_fraction", 0.20, 0.35),
    ("hair_margin", 2.0, 6.0),
    ("eye_r", 10.0, 30.0),
    ("eye_g", 20.0, 60.0),
    ("eye_b", 190.0, 250.0),
    ("eye_width", 3.0, 6.0),
    ("left_eye_open", 0.8, 6.0),
    ("right_eye_open", 0.8, 6.0),
    ("mouth_r", 175.0, 225.0),
    ("mouth_g", 5.0, 35.0),
    ("mouth_b", 15.0, 45.0),
    ("mouth_width", 0.25, 0.60),
    ("mouth_open", 0.0, 1.0),
)
NUM_PARAMS = len(PARAM_RANGES)
assert tuple(name for name, _, _ in PARAM_RANGES) == tuple(f.name for f in fields(ToyParams))

_LOW = np.array([low for _, low, _ in PARAM_RANGES])
_SPAN = np.array([high - low for _, low, high in PARAM_RANGES])


def params_from_unit(unit: np.ndarray) -> ToyParams:
    """Map NUM_PARAMS numbers in [0, 1] to a face (uniform in -> the world's distribution out)."""
    unit = np.asarray(unit, dtype=np.float64).reshape(-1)
    if unit.shape[0] != NUM_PARAMS:
        raise ValueError(f"need {NUM_PARAMS} unit numbers, got {unit.shape[0]}")
    values = _LOW + _SPAN * np.clip(unit, 0.0, 1.0)
    return ToyParams(*(float(v) for v in values))


def unit_from_params(params: ToyParams) -> np.ndarray:
    return (params.as_array() - _LOW) / _SPAN


def normal_cdf(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))


def params_from_z(z: np.ndarray) -> ToyParams:
    """The generator's target: the first NUM_PARAMS entries of z ~ N(0, I), through the normal
    CDF, are the face's unit numbers; so z ~ N(0, I) gives exactly the world's distribution."""
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    return params_from_unit(normal_cdf(z[:NUM_PARAMS]))


def sample_params(rng: np.random.Generator) -> ToyParams:
    """One face from the world's distribution (every parameter uniform in its range)."""
    return params_from_unit(rng.random(NUM_PARAMS))


# --------------------------------------------------------------------------------------------
# Geometry


def _rotation(params: ToyParams) -> tuple[float, float]:
    a = math.radians(params.angle)
    return math.cos(a), math.sin(a)


def face_to_image(params: ToyParams, u: float, v: float) -> tuple[float, float]:
    cos_a, sin_a = _rotation(params)
    return params.cx + u * cos_a - v * sin_a, params.cy + u * sin_a + v * cos_a


def chin_point(cx: float, cy: float, rx: float, ry: float, angle_deg: float) -> tuple[float, float]:
    """Lowest point (largest y) of the ellipse centre (cx, cy), semi-axes rx, ry, turned by angle.

    On the outline, y(t) = cy + rx sin(a) cos(t) + ry cos(a) sin(t); its maximum is at
    t* = atan2(ry cos(a), rx sin(a)).
    """
    a = math.radians(angle_deg)
    t = math.atan2(ry * math.cos(a), rx * math.sin(a))
    u, v = rx * math.cos(t), ry * math.sin(t)
    return cx + u * math.cos(a) - v * math.sin(a), cy + u * math.sin(a) + v * math.cos(a)


def landmarks(params: ToyParams, size: int = WORLD_SIZE) -> dict[str, tuple[float, float]]:
    """The nine landmarks (x, y), continuous, pixel centres at integer + 0.5, for a `size` image."""
    scale = size / WORLD_SIZE
    mouth_v = MOUTH_V * params.ry
    half_w, half_h = params.mouth_half_width, params.mouth_half_height
    face_points = {
        "left_eye": (-EYE_U * params.rx, EYE_V * params.ry),
        "right_eye": (EYE_U * params.rx, EYE_V * params.ry),
        "mouth": (0.0, mouth_v),
        "mouth_left": (-half_w, mouth_v),
        "mouth_right": (half_w, mouth_v),
        "mouth_top": (0.0, mouth_v - half_h),
        "mouth_bottom": (0.0, mouth_v + half_h),
        "face": (0.0, 0.0),
    }
    points = {name: face_to_image(params, u, v) for name, (u, v) in face_points.items()}
    points["chin"] = chin_point(params.cx, params.cy, params.rx, params.ry, params.angle)
    return {name: (x * scale, y * scale) for name, (x, y) in points.items()}


def landmark_array(params: ToyParams, size: int = WORLD_SIZE) -> np.ndarray:
    """[9, 2] landmarks in LANDMARK_NAMES order."""
    points = landmarks(params, size)
    return np.array([points[name] for name in LANDMARK_NAMES], dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Rendering


def _ellipse_mask(
    xs: np.ndarray,
    ys: np.ndarray,
    centre: tuple[float, float],
    semi_u: float,
    semi_v: float,
    cos_a: float,
    sin_a: float,
) -> np.ndarray:
    """Boolean mask of a turned filled ellipse over the sample grid (xs: [1, W], ys: [H, 1])."""
    dx, dy = xs - centre[0], ys - centre[1]
    u = dx * cos_a + dy * sin_a
    v = -dx * sin_a + dy * cos_a
    return (u / semi_u) ** 2 + (v / semi_v) ** 2 <= 1.0


class SampleGrid(Protocol):
    """Where the supersamples of a label map sit in world coordinates.

    The drawing routine (`draw_labels`) only needs, for each part, the index box of supersamples
    that can hold it and those samples' world positions; a grid may be the world's own square
    (`WorldGrid`) or any other pattern, e.g. a photo's pixels turned and scaled into the world
    (dragfu.toy.photo).
    """

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the label map."""
        ...

    def box(self, centre: tuple[float, float], radius: float) -> tuple[int, int, int, int]:
        """Index box [x0, x1) x [y0, y1) of the samples that may lie within `radius` (world
        units) of `centre`; clipped to the map, possibly empty."""
        ...

    def points(self, x0: int, x1: int, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """World (x, y) of the samples in the index box, float32, broadcastable to
        [y1 - y0, x1 - x0]."""
        ...


class WorldGrid:
    """The world's own grid: a square `size` image, SUPERSAMPLING^2 samples per pixel."""

    def __init__(self, size: int = WORLD_SIZE) -> None:
        self.scale = size / WORLD_SIZE
        self.n = size * SUPERSAMPLING
        # Supersample centres in world units: sub-pixel k of pixel i sits at i + (k + 0.5) / 4.
        self.coords = (np.arange(self.n, dtype=np.float32) + 0.5) / (SUPERSAMPLING * self.scale)

    @property
    def shape(self) -> tuple[int, int]:
        return self.n, self.n

    def box(self, centre: tuple[float, float], radius: float) -> tuple[int, int, int, int]:
        s = self.scale * SUPERSAMPLING
        x0 = max(int(math.floor((centre[0] - radius - 1) * s)), 0)
        x1 = min(int(math.ceil((centre[0] + radius + 1) * s)), self.n)
        y0 = max(int(math.floor((centre[1] - radius - 1) * s)), 0)
        y1 = min(int(math.ceil((centre[1] + radius + 1) * s)), self.n)
        return x0, x1, y0, y1

    def points(self, x0: int, x1: int, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        return self.coords[None, x0:x1], self.coords[y0:y1, None]


def draw_labels(params: ToyParams, grid: SampleGrid, max_samples: int = 1 << 22) -> np.ndarray:
    """uint8 map (grid.shape) of which part covers each sample, in drawing order.

    Each part is evaluated only inside its own bounding box, in bands of rows of at most
    `max_samples` samples (the tests are per sample, so the banding changes no value; it only
    bounds the temporary arrays for big faces).
    """
    labels = np.zeros(grid.shape, dtype=np.uint8)
    cos_a, sin_a = _rotation(params)

    def paint(label: int, centre, semi_u: float, semi_v: float, extra=None) -> None:
        x0, x1, y0, y1 = grid.box(centre, max(semi_u, semi_v))
        if x0 >= x1 or y0 >= y1:
            return
        band = max(1, max_samples // (x1 - x0))
        for top in range(y0, y1, band):
            bottom = min(top + band, y1)
            xs, ys = grid.points(x0, x1, top, bottom)
            mask = _ellipse_mask(xs, ys, centre, semi_u, semi_v, cos_a, sin_a)
            if extra is not None:
                mask &= extra(xs, ys)
            labels[top:bottom, x0:x1][mask] = label

    centre = (params.cx, params.cy)
    paint(FACE, centre, params.rx, params.ry)

    hair_line = params.hair_line

    def above_hair_line(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        v = -(xs - params.cx) * sin_a + (ys - params.cy) * cos_a
        return v <= hair_line

    margin = params.hair_margin
    paint(HAIR, centre, params.rx + margin, params.ry + margin, above_hair_line)
    for sign, openness in ((-1.0, params.left_eye_open), (1.0, params.right_eye_open)):
        eye_centre = face_to_image(params, sign * EYE_U * params.rx, EYE_V * params.ry)
        paint(EYE, eye_centre, params.eye_width, openness)
    mouth_centre = face_to_image(params, 0.0, MOUTH_V * params.ry)
    paint(MOUTH, mouth_centre, params.mouth_half_width, params.mouth_half_height)
    return labels


def label_map(params: ToyParams, size: int = WORLD_SIZE) -> np.ndarray:
    """[size*4, size*4] uint8 map of which part covers each supersample (drawing order applied)."""
    return draw_labels(params, WorldGrid(size))


def part_coverage(labels: np.ndarray, supersampling: int = SUPERSAMPLING) -> np.ndarray:
    """[5, H, W] float32 share of each pixel covered by each part (area down-sampling of a
    [H * supersampling, W * supersampling] label map)."""
    s = supersampling
    h, w = labels.shape[0] // s, labels.shape[1] // s
    blocks = labels.reshape(h, s, w, s)
    return np.stack(
        [(blocks == part).mean(axis=(1, 3), dtype=np.float32) for part in range(len(PART_NAMES))]
    )


def part_colours(params: ToyParams) -> np.ndarray:
    """[4, 3] float32 RGB of face, hair, eye and mouth (the labels after BACKGROUND)."""
    return np.array(
        [
            [params.skin_r, params.skin_g, params.skin_b],
            [params.hair_r, params.hair_g, params.hair_b],
            [params.eye_r, params.eye_g, params.eye_b],
            [params.mouth_r, params.mouth_g, params.mouth_b],
        ],
        dtype=np.float32,
    )


def background_colour(params: ToyParams, y: np.ndarray) -> np.ndarray:
    """The background at `y` (float32, in units of the world's height: 0 top edge, 1 bottom),
    shape y.shape + (3,): flat colour + vertical gradient, -grad at the top edge, +grad at the
    bottom. The gradient holds its end colours beyond the world's square (y < 0 or > 1), so a
    bigger canvas continues it without a seam and never saturates far away."""
    base = np.array([params.bg_r, params.bg_g, params.bg_b], dtype=np.float32)
    grad = np.array([params.grad_r, params.grad_g, params.grad_b], dtype=np.float32)
    t = np.clip(2.0 * y[..., None] - 1.0, -1.0, 1.0)
    return base + grad * t


def composite(coverage: np.ndarray, background: np.ndarray, params: ToyParams) -> np.ndarray:
    """Float32 [H, W, 3] colour of coverage ([5, H, W]) over `background` (broadcastable to
    [H, W, 3]): each pixel mixes the parts' flat colours by their shares (not yet rounded)."""
    image = coverage[BACKGROUND][:, :, None] * background
    return image + np.einsum("khw,kc->hwc", coverage[1:], part_colours(params))


def render_with_coverage(
    params: ToyParams, size: int = WORLD_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """The image ([size, size, 3] uint8) and each part's pixel coverage ([5, size, size] float32)."""
    coverage = part_coverage(label_map(params, size))
    # Background at each pixel centre; the gradient is linear, so this is its mean over the pixel.
    y = (np.arange(size, dtype=np.float32) + 0.5) / size  # 0 at the top edge, 1 at the bottom
    image = composite(coverage, background_colour(params, y)[:, None, :], params)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), coverage


def render(params: ToyParams, size: int = WORLD_SIZE) -> np.ndarray:
    """[size, size, 3] uint8 RGB image of the face, anti-aliased by 4x4 supersampling."""
    return render_with_coverage(params, size)[0]
