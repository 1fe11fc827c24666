"""The region of a photo the model sees: a similarity transform into the model's frame.

A photo's subject is anywhere, at any size, turned: the model draws it at one place, one size,
upright. `Similarity` maps the model's frame (its W x H image) onto the photo: the frame's centre
goes to `centre`, one model pixel becomes `scale` photo pixels, and the frame is turned by `angle`
degrees (clockwise on screen, as y points down). Drag points go through it into the model, and
the result comes back through its inverse (paste.py).

`search_alignment` finds it without help: the model's mean image (the average subject, e.g. the
average face) is matched against the photo over scales and turns by normalised cross-correlation
(OpenCV's template matching, translation for free), near the drag points (the subject is what the
user drags). `fit_similarity` gives it from point pairs (FFHQ-style alignment from eyes and mouth,
where such points exist). The axis-aligned crop of older versions is `Similarity.for_box`.

Coordinates: continuous, x right, y down, pixel (i, j) covers [i, i+1) x [j, j+1) (its centre is
(i + 0.5, j + 0.5)); OpenCV puts pixel centres at integers, hence the half-pixel shifts in
`cv2_matrix`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from dragfu.errors import BadInputError

Size = tuple[int, int]  # (width, height)

# Template matching: the model's frame drawn this many pixels wide; its middle share is matched
# (a turned template's corners would hold no image).
TEMPLATE_SIZE = 48
TEMPLATE_CORE = 0.72
SCALE_STEP = 1.12  # coarse ladder of frame sizes (the fine pass steps 1.03)
COARSE_ANGLES = tuple(range(-40, 41, 8))
MIN_MATCH = 0.25  # correlation below this: nothing like the model's subject near the points


@dataclass(frozen=True)
class Similarity:
    """Model frame -> photo: p = centre + scale * R(angle) (q - frame_centre)."""

    scale: float  # photo pixels per model pixel
    angle: float  # degrees, clockwise on screen
    centre: tuple[float, float]  # photo position of the model frame's centre
    model_size: Size  # (width, height) of the model's images

    def __post_init__(self) -> None:
        values = (self.scale, self.angle, *self.centre)
        if not all(math.isfinite(v) for v in values) or self.scale <= 0:
            raise BadInputError(f"alignment: scale must be > 0 and all values finite, got {self}")

    @classmethod
    def for_box(cls, x: float, y: float, width: float, height: float, model_size: Size):
        """The axis-aligned crop (x, y, width, height) stretched to the model's frame (a uniform
        scale when the box has the model's aspect ratio)."""
        scale = max(width / model_size[0], height / model_size[1])
        return cls(float(scale), 0.0, (x + width / 2.0, y + height / 2.0), tuple(model_size))

    @classmethod
    def from_dict(cls, data: dict, model_size: Size) -> Similarity:
        try:
            return cls(
                float(data["scale"]),
                float(data.get("angle", 0.0)),
                (float(data["centre"][0]), float(data["centre"][1])),
                tuple(model_size),
            )
        except (KeyError, TypeError, ValueError, IndexError):
            raise BadInputError(
                f"alignment {data!r}: expected {{'scale': S, 'angle': DEG, 'centre': [X, Y]}}"
            ) from None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["centre"] = [round(v, 4) for v in self.centre]
        data["model_size"] = list(self.model_size)
        data["scale"], data["angle"] = round(self.scale, 6), round(self.angle, 4)
        return data

    @property
    def _rotation(self) -> np.ndarray:
        a = math.radians(self.angle)
        return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])

    @property
    def frame_centre(self) -> np.ndarray:
        return np.array(self.model_size, dtype=np.float64) / 2.0

    def matrix(self) -> np.ndarray:
        """2x3 affine, model -> photo, in continuous coordinates."""
        linear = self.scale * self._rotation
        offset = np.asarray(self.centre) - linear @ self.frame_centre
        return np.hstack([linear, offset[:, None]])

    def to_photo(self, points) -> np.ndarray:
        q = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        m = self.matrix()
        return q @ m[:, :2].T + m[:, 2]

    def to_model(self, points) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        centred = p - np.asarray(self.centre)
        return centred @ self._rotation / self.scale + self.frame_centre

    def vectors_to_photo(self, vectors: np.ndarray) -> np.ndarray:
        """Displacements (..., 2) in model pixels -> photo pixels (turned and scaled)."""
        return vectors @ (self.scale * self._rotation).T

    def corners(self) -> np.ndarray:
        w, h = self.model_size
        return self.to_photo([(0, 0), (w, 0), (w, h), (0, h)])

    def photo_bounds(self, photo_size: Size, margin: float = 0.0) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1): the photo pixels the frame covers (plus margin), clipped."""
        corners = self.corners()
        x0 = max(int(math.floor(corners[:, 0].min() - margin)), 0)
        y0 = max(int(math.floor(corners[:, 1].min() - margin)), 0)
        x1 = min(int(math.ceil(corners[:, 0].max() + margin)), photo_size[0])
        y1 = min(int(math.ceil(corners[:, 1].max() + margin)), photo_size[1])
        return x0, y0, max(x1, x0), max(y1, y0)

    def shifted(self, dx: float, dy: float) -> Similarity:
        """The same frame on a photo cropped at (dx, dy) (positions minus the crop's origin)."""
        return Similarity(
            self.scale, self.angle, (self.centre[0] - dx, self.centre[1] - dy), self.model_size
        )

    def shrunk(self, factor: float) -> Similarity:
        """The same frame on the photo resized by 1 / factor."""
        return Similarity(
            self.scale / factor,
            self.angle,
            (self.centre[0] / factor, self.centre[1] / factor),
            self.model_size,
        )


def cv2_matrix(matrix: np.ndarray) -> np.ndarray:
    """A continuous-coordinate affine (2x3) as OpenCV's (pixel centres at integers)."""
    linear, offset = matrix[:, :2], matrix[:, 2]
    return np.hstack([linear, (offset + linear @ [0.5, 0.5] - 0.5)[:, None]]).astype(np.float64)


def sample_model_frame(
    photo: np.ndarray, alignment: Similarity, *, nearest: bool = False
) -> np.ndarray:
    """What the model sees: the photo through the alignment, at the model's size.

    Photo pixels are first averaged down to about one per model pixel (area resampling: no
    aliasing of the grain), then the frame is sampled bilinearly (nearest for masks). Outside
    the photo its edge pixels continue.
    """
    photo = np.ascontiguousarray(photo)
    height, width = photo.shape[:2]
    x0, y0, x1, y1 = alignment.photo_bounds((width, height), margin=2 * alignment.scale + 2)
    if x1 <= x0 or y1 <= y0:
        raise BadInputError("alignment: the model's frame lies outside the image")
    part = photo[y0:y1, x0:x1]
    frame = alignment.shifted(x0, y0)
    factor = alignment.scale
    if factor > 1.5 and not nearest:
        small = (max(1, round(part.shape[1] / factor)), max(1, round(part.shape[0] / factor)))
        factor = part.shape[1] / small[0]  # the exact factor of the rounded size
        part = cv2.resize(part, small, interpolation=cv2.INTER_AREA)
        frame = frame.shrunk(factor)
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(
        part,
        cv2_matrix(frame.matrix()),
        tuple(alignment.model_size),
        flags=flags | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def fit_similarity(model_points: Sequence, photo_points: Sequence, model_size: Size) -> Similarity:
    """Least-squares similarity taking model_points to photo_points (Umeyama, no reflection):
    e.g. a face model's canonical eye and mouth positions to those found in the photo."""
    q = np.asarray(model_points, dtype=np.float64).reshape(-1, 2)
    p = np.asarray(photo_points, dtype=np.float64).reshape(-1, 2)
    if len(q) < 2 or len(q) != len(p):
        raise BadInputError("alignment: need two or more matching point pairs")
    q_mean, p_mean = q.mean(0), p.mean(0)
    qc, pc = q - q_mean, p - p_mean
    # Complex-number form of a 2-D similarity: p = a q with a = s e^{i angle}.
    zq, zp = qc[:, 0] + 1j * qc[:, 1], pc[:, 0] + 1j * pc[:, 1]
    denominator = float(np.sum(np.abs(zq) ** 2))
    if denominator <= 1e-12:
        raise BadInputError("alignment: the model points coincide")
    a = np.sum(zp * np.conj(zq)) / denominator
    scale, angle = float(abs(a)), math.degrees(math.atan2(a.imag, a.real))
    frame_centre = np.array(model_size, dtype=np.float64) / 2.0
    rotation = np.array([[a.real, -a.imag], [a.imag, a.real]])
    centre = p_mean + rotation @ (frame_centre - q_mean)
    return Similarity(scale, angle, (float(centre[0]), float(centre[1])), tuple(model_size))


@dataclass(frozen=True)
class AlignmentMatch:
    alignment: Similarity
    score: float  # normalised cross-correlation with the model's mean image, -1..1
    searched: int  # templates tried


def _template(mean_image: np.ndarray, angle: float, size: int) -> np.ndarray:
    """The model's mean image at `size` px wide, turned by angle (as the frame is turned in the
    photo), cut to its middle share."""
    height = round(size * mean_image.shape[0] / mean_image.shape[1])
    small = cv2.resize(mean_image, (size, height), interpolation=cv2.INTER_AREA)
    # The frame turned clockwise on the photo: the photo shows the subject turned clockwise.
    rotation = cv2.getRotationMatrix2D(((size - 1) / 2.0, (height - 1) / 2.0), -angle, 1.0)
    turned = cv2.warpAffine(small, rotation, (size, height), borderMode=cv2.BORDER_REPLICATE)
    cw, ch = round(size * TEMPLATE_CORE), round(height * TEMPLATE_CORE)
    x0, y0 = (size - cw) // 2, (height - ch) // 2
    return np.ascontiguousarray(turned[y0 : y0 + ch, x0 : x0 + cw])


def _best_at_size(
    photo: np.ndarray,
    mean_image: np.ndarray,
    model_size: Size,
    frame_width: float,
    angles: Sequence[float],
    points: np.ndarray,
) -> tuple[float, Similarity | None, int]:
    """Best match of the frame `frame_width` photo px wide, over angles, every position whose
    frame holds every drag point."""
    factor = frame_width / TEMPLATE_SIZE  # photo px per search px
    # Only the neighbourhood of the points can hold a frame that contains them.
    reach = frame_width * 0.75 + 2
    x0 = max(int(points[:, 0].min() - reach), 0)
    y0 = max(int(points[:, 1].min() - reach), 0)
    x1 = min(int(points[:, 0].max() + reach) + 1, photo.shape[1])
    y1 = min(int(points[:, 1].max() + reach) + 1, photo.shape[0])
    size = (max(1, round((x1 - x0) / factor)), max(1, round((y1 - y0) / factor)))
    search = cv2.resize(photo[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
    sx, sy = (x1 - x0) / size[0], (y1 - y0) / size[1]
    local = (points - [x0, y0]) / [sx, sy]  # points in search pixels
    best_score, best, tried = -2.0, None, 0
    for angle in angles:
        template = _template(mean_image, angle, TEMPLATE_SIZE)
        th, tw = template.shape[:2]
        if search.shape[0] < th or search.shape[1] < tw:
            continue
        scores = cv2.matchTemplate(search, template, cv2.TM_CCOEFF_NORMED)
        tried += 1
        # Frame centre (search px, continuous) of each template position.
        cy, cx = np.mgrid[0 : scores.shape[0], 0 : scores.shape[1]].astype(np.float32)
        cx += tw / 2.0
        cy += th / 2.0
        a = math.radians(angle)
        half_w = TEMPLATE_SIZE / 2.0 * 0.9
        half_h = TEMPLATE_SIZE * model_size[1] / model_size[0] / 2.0 * 0.9
        holds = np.ones_like(scores, dtype=bool)
        for px, py in local:  # every point inside the (turned) frame, off its outer rim
            dx, dy = px - cx, py - cy
            u = dx * math.cos(a) + dy * math.sin(a)
            v = -dx * math.sin(a) + dy * math.cos(a)
            holds &= (np.abs(u) <= half_w) & (np.abs(v) <= half_h)
        scores = np.where(holds & np.isfinite(scores), scores, -2.0)
        index = int(np.argmax(scores))
        score = float(scores.flat[index])
        if score > best_score:
            j, i = divmod(index, scores.shape[1])
            centre = (x0 + (i + tw / 2.0) * sx, y0 + (j + th / 2.0) * sy)
            best_score = score
            best = Similarity(frame_width / model_size[0], float(angle), centre, model_size)
    return best_score, best, tried


def search_alignment(
    photo: np.ndarray,
    mean_image: np.ndarray,
    points: Sequence,
    *,
    min_width: float | None = None,
    max_width: float | None = None,
    angles: Sequence[float] = COARSE_ANGLES,
) -> AlignmentMatch | None:
    """The frame (scale, turn, position) where the photo looks most like the model's mean image,
    holding every drag point; None when nothing near the points looks like it (then the caller
    takes a crop around the points).

    photo: uint8 [H, W, 3]; mean_image: the model's image of its mean latent, [h, w, 3];
    points: drag points in photo coordinates; widths of the frame in photo pixels.
    """
    photo = np.ascontiguousarray(photo[..., :3])
    model_size = (mean_image.shape[1], mean_image.shape[0])
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        raise BadInputError("alignment: no drag points to align around")
    spread = float(np.ptp(pts, axis=0).max()) if len(pts) > 1 else 0.0
    limit = float(min(photo.shape[0] * model_size[0] / model_size[1], photo.shape[1]))
    low = max(min_width or 0.0, TEMPLATE_SIZE, spread * 1.3)
    high = min(max_width or limit * 1.2, limit * 1.2)
    if high < low:
        high = low
    widths = [low]
    while widths[-1] * SCALE_STEP <= high:
        widths.append(widths[-1] * SCALE_STEP)
    tried = 0
    best_score, best = -2.0, None
    for width in widths:
        score, found, n = _best_at_size(photo, mean_image, model_size, width, angles, pts)
        tried += n
        if found is not None and score > best_score:
            best_score, best = score, found
    if best is None or best_score < MIN_MATCH:
        return None
    # Fine pass around the coarse best: smaller steps of size and turn.
    coarse_step = (angles[1] - angles[0]) if len(angles) > 1 else 8
    width0 = best.scale * model_size[0]
    fine_angles = [best.angle + d for d in np.linspace(-coarse_step / 2, coarse_step / 2, 5)]
    for factor in (0.94, 0.97, 1.0, 1.03, 1.06):
        score, found, n = _best_at_size(
            photo, mean_image, model_size, width0 * factor, fine_angles, pts
        )
        tried += n
        if found is not None and score > best_score:
            best_score, best = score, found
    return AlignmentMatch(best, best_score, tried)
