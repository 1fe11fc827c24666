"""Landmark detector for toy-world images (renders and generator outputs alike).

Colour segmentation with linear unmixing, so that the anti-aliased edge pixels count by their
coverage and the estimates are sub-pixel:

1. background: per channel a + b * y (the world's flat colour + vertical gradient), fitted robustly
   on the image border;
2. skin colour: median of skin-like pixels that are not background;
3. inner parts: each pixel's colour minus the skin colour is unmixed into eye, mouth and hair shares
   (3 channels, 3 nominal part colours). A blob counts only if its pixels mix skin with that one
   part, its mass is plausible and skin rings it (so noise and stray colours are not taken for a
   part); eyes = the heaviest pair at a plausible separation and tilt, mouth = the heaviest blob
   below them. Their coverage-weighted centroids are the centres, and second moments along the
   face axes (the eye line, and eyes-to-mouth) give the mouth's corners, top and bottom and the
   parts' sizes (a filled ellipse with semi-axis a has variance a^2 / 4 along it; pixel area adds
   1/12). Without eyes the face's turn is unknown and the mouth is measured upright;
4. face outline: the skin-vs-background share crosses 1/2 at the outline; those sub-pixel points
   below the eyes get a least-squares ellipse (conic) fit, whose centre is the face centre and
   whose lowest point is the chin. Where the outline cannot be fitted (skin too close to the
   background colour), the face centre and chin come from the eyes and mouth and the world's
   proportions instead.

Coordinates: x right, y down, pixel centres at integer + 0.5 (docs/architecture.md).
On 500 renders the mean errors are ~0.015 px for the eye and mouth centres and <= 0.06 px for the
others (max < 0.35 px); see tests/test_toy_detect.py and docs/benchmarks.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dragfu.toy.world import EYE_U, EYE_V, LANDMARK_NAMES, MOUTH_V, WORLD_SIZE, chin_point

# Nominal part colours: the centres of the world's colour ranges.
SKIN = np.array([225.0, 185.0, 150.0])
EYE = np.array([20.0, 40.0, 220.0])
MOUTH = np.array([200.0, 20.0, 30.0])
HAIR = np.array([60.0, 40.0, 30.0])

PART_THRESHOLD = 0.3  # share above which a pixel seeds an eye / mouth blob
MIN_EYE_MASS = 2.0  # px of full coverage, at 128 px (the smallest eye covers 7.5 px)
MIN_MOUTH_MASS = 4.0  # (the smallest mouth covers 20 px)
BACKGROUND_DISTANCE = 20.0  # RGB distance from the background model that counts as foreground
MIN_OUTLINE_CONTRAST = 20.0  # skin-vs-background RGB distance needed to trust the outline
MIN_OUTLINE_POINTS = 40  # at 128 px; a face shows 150+ below its eyes
MIN_SKIN_AREA = 700.0  # px at 128 of skin colour needed to call it a face (the smallest: ~1400)
MAX_EYE_MASS = 250.0  # px at 128 (the largest eye covers 113 px)
MAX_MOUTH_MASS = 1000.0  # (the largest mouth covers 695 px)
# Plausible geometry, in px at 128, with room for faces edited by dragging: the world's eyes are
# 19.8-28.9 px apart and their midpoint is 20-29.5 px above the mouth; faces turn by <= 15 deg.
EYE_SEPARATION = (10.0, 60.0)
EYE_MOUTH_DISTANCE = (8.0, 60.0)
MAX_TILT = 35.0
MAX_FACE_OFFSET = 15.0  # px at 128 between the outline's centre and the eyes+mouth estimate


@dataclass
class Detection:
    """Landmarks found in one image: `points[name] = (x, y)`; `missing` lists those not found."""

    points: dict[str, tuple[float, float]] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    # Measured part sizes in px (semi-axes): "left_eye_width", "left_eye_open", "right_eye_...",
    # "mouth_width", "mouth_open" (half-width, half-height), "face_minor", "face_major".
    sizes: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # how parts were found, e.g. "face from eyes+mouth"

    @property
    def complete(self) -> bool:
        return not self.missing

    def array(self) -> np.ndarray:
        """[9, 2] in LANDMARK_NAMES order; NaN rows for missing landmarks."""
        out = np.full((len(LANDMARK_NAMES), 2), np.nan)
        for i, name in enumerate(LANDMARK_NAMES):
            if name in self.points:
                out[i] = self.points[name]
        return out


# --------------------------------------------------------------------------------------------
# Small numpy helpers (no scipy)


def _dilate(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    out = mask.copy()
    h, w = mask.shape
    padded = np.pad(mask, radius)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            out |= padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w]
    return out


def _erode(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    return ~_dilate(~mask, radius)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Add the pixels enclosed by the mask along both their row and their column (the face and its
    hair cap are close to convex, so this fills their holes without a flood fill)."""
    enclosed = np.ones_like(mask)
    for axis in (0, 1):
        before = np.logical_or.accumulate(mask, axis=axis)
        after = np.flip(np.logical_or.accumulate(np.flip(mask, axis=axis), axis=axis), axis=axis)
        enclosed &= before & after
    return mask | enclosed


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """8-connected components of a (sparse) boolean mask, each as an [K, 2] array of (row, col)."""
    remaining = {(int(r), int(c)) for r, c in zip(*np.nonzero(mask), strict=True)}
    components = []
    while remaining:
        seed = remaining.pop()
        stack, members = [seed], [seed]
        while stack:
            r, c = stack.pop()
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    neighbour = (r + dr, c + dc)
                    if neighbour in remaining:
                        remaining.remove(neighbour)
                        stack.append(neighbour)
                        members.append(neighbour)
        components.append(np.array(members))
    return components


def _fit_background(image: np.ndarray) -> np.ndarray:
    """[H, 3] background colour per row: a + b * y per channel, fitted on the border pixels with
    iterative trimming (the face may cover parts of the border)."""
    h, w, _ = image.shape
    rows = np.arange(h)
    ys = np.concatenate([rows, rows, np.zeros(w, int), np.full(w, h - 1)])
    xs = np.concatenate([np.zeros(h, int), np.full(h, w - 1), np.arange(w), np.arange(w)])
    samples = image[ys, xs]  # [K, 3]
    design = np.stack([np.ones_like(ys, dtype=np.float64), (ys + 0.5) / h], axis=1)
    keep = np.ones(len(ys), bool)
    for _ in range(4):
        coef, *_ = np.linalg.lstsq(design[keep], samples[keep], rcond=None)
        residual = np.linalg.norm(samples - design @ coef, axis=1)
        limit = max(6.0, 3.0 * float(np.median(residual[keep])))
        new_keep = residual < limit
        if new_keep.sum() < 8 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    row_design = np.stack([np.ones(h), (rows + 0.5) / h], axis=1)
    return row_design @ coef


def _weighted_centroid(weights: np.ndarray, rows: np.ndarray, cols: np.ndarray):
    total = weights.sum()
    return float((weights * (cols + 0.5)).sum() / total), float(
        (weights * (rows + 0.5)).sum() / total
    )


def _blob_weights(share: np.ndarray, component: np.ndarray, region: np.ndarray):
    """Coverage weights of one blob: its pixels plus a 1-px ring (the faint anti-aliased edge),
    share clipped at 0 so that the weights stay linear in coverage."""
    mask = np.zeros(share.shape, bool)
    mask[component[:, 0], component[:, 1]] = True
    mask = _dilate(mask, 1) & region
    rows, cols = np.nonzero(mask)
    return np.maximum(share[rows, cols], 0.0), rows, cols


def _fit_conic(x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """Direct least-squares ellipse fit (Fitzgibbon, Pilu & Fisher; Halir & Flusser's stable form).

    Returns conic coefficients (A, B, C, D, E, F) of A x^2 + B xy + C y^2 + D x + E y + F = 0 in
    the given coordinates, or None when the points do not define an ellipse.
    """
    mx, my, s = x.mean(), y.mean(), max(x.std(), y.std(), 1e-9)
    xn, yn = (x - mx) / s, (y - my) / s
    quad = np.stack([xn * xn, xn * yn, yn * yn], axis=1)
    lin = np.stack([xn, yn, np.ones_like(xn)], axis=1)
    s1, s2, s3 = quad.T @ quad, quad.T @ lin, lin.T @ lin
    try:
        t = -np.linalg.solve(s3, s2.T)
    except np.linalg.LinAlgError:
        return None
    m = s1 + s2 @ t
    m = np.array([m[2] / 2.0, -m[1], m[0] / 2.0])
    try:
        eigval, eigvec = np.linalg.eig(m)
    except np.linalg.LinAlgError:
        return None
    eigvec = np.real(eigvec)
    cond = 4.0 * eigvec[0] * eigvec[2] - eigvec[1] ** 2
    candidates = np.nonzero(cond > 0)[0]
    if len(candidates) == 0:
        return None
    a1 = eigvec[:, candidates[0]]
    a2 = t @ a1
    a, b, c, d, e, f = (*a1, *a2)
    # Undo the normalisation: xn = (x - mx) / s.
    A, B, C = a / s**2, b / s**2, c / s**2
    D = d / s - 2 * A * mx - B * my
    E = e / s - 2 * C * my - B * mx
    F = f + A * mx**2 + B * mx * my + C * my**2 - d * mx / s - e * my / s
    return np.array([A, B, C, D, E, F])


def _conic_geometry(conic: np.ndarray):
    """(cx, cy, semi-axis 1, semi-axis 2) of an ellipse conic, or None."""
    A, B, C, D, E, F = conic
    det = 4 * A * C - B * B
    if det <= 0:
        return None
    cx = (B * E - 2 * C * D) / det
    cy = (B * D - 2 * A * E) / det
    value = A * cx * cx + B * cx * cy + C * cy * cy + D * cx + E * cy + F
    eig = np.linalg.eigvalsh(np.array([[A, B / 2], [B / 2, C]]))
    if value == 0 or np.any(-value / eig <= 0):
        return None
    axes = np.sqrt(-value / eig)
    return float(cx), float(cy), float(axes[0]), float(axes[1])


def _conic_lowest_point(conic: np.ndarray) -> tuple[float, float] | None:
    """The point of largest y on the ellipse: where its tangent is horizontal (dF/dx = 0)."""
    A, B, C, D, E, F = conic
    # x = -(B y + D) / (2 A); substitute: a2 y^2 + a1 y + a0 = 0.
    a2 = C - B * B / (4 * A)
    a1 = E - B * D / (2 * A)
    a0 = F - D * D / (4 * A)
    disc = a1 * a1 - 4 * a2 * a0
    if disc < 0 or a2 == 0:
        return None
    roots = [(-a1 + sgn * math.sqrt(disc)) / (2 * a2) for sgn in (-1.0, 1.0)]
    y = max(roots)
    return float(-(B * y + D) / (2 * A)), float(y)


def _outline_points(
    image: np.ndarray, background: np.ndarray, skin: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Sub-pixel points where the skin-vs-background share crosses 1/2, from pixel pairs that are
    both plain skin/background mixtures (so the hair, eyes and mouth are left out)."""
    diff = skin[None, :] - background  # [H, 3]
    norm2 = (diff * diff).sum(axis=1)
    if np.sqrt(norm2.min()) < MIN_OUTLINE_CONTRAST:
        return None
    rel = image - background[:, None, :]
    share = (rel * diff[:, None, :]).sum(axis=2) / norm2[:, None]  # [H, W]
    model = background[:, None, :] + share[:, :, None] * diff[:, None, :]
    plain = np.linalg.norm(image - model, axis=2) < 12.0
    plain &= (share > -0.25) & (share < 1.25)
    xs_all, ys_all = [], []
    for axis in (0, 1):  # 0: pairs down a column, 1: pairs along a row
        if axis == 0:
            s0, s1 = share[:-1, :], share[1:, :]
            ok = plain[:-1, :] & plain[1:, :]
            # Use a pair only where the outline runs more across it than along it.
            across = np.abs(s1 - s0)
            along = np.abs(np.gradient(share, axis=1))
            along = np.maximum(along[:-1, :], along[1:, :])
        else:
            s0, s1 = share[:, :-1], share[:, 1:]
            ok = plain[:, :-1] & plain[:, 1:]
            across = np.abs(s1 - s0)
            along = np.abs(np.gradient(share, axis=0))
            along = np.maximum(along[:, :-1], along[:, 1:])
        crossing = ok & ((s0 - 0.5) * (s1 - 0.5) < 0) & (across >= along)
        r, c = np.nonzero(crossing)
        t = (0.5 - s0[r, c]) / (s1[r, c] - s0[r, c])
        if axis == 0:
            xs_all.append(c + 0.5)
            ys_all.append(r + 0.5 + t)
        else:
            xs_all.append(c + 0.5 + t)
            ys_all.append(r + 0.5)
    return np.concatenate(xs_all), np.concatenate(ys_all)


def _fit_face_outline(
    x: np.ndarray, y: np.ndarray, size: int
) -> tuple[np.ndarray, tuple[float, float, float, float]] | None:
    """Ellipse through outline points, refitted once without points more than 1 px off."""
    for _ in range(2):
        if len(x) < MIN_OUTLINE_POINTS * size / WORLD_SIZE:
            return None
        conic = _fit_conic(x, y)
        if conic is None:
            return None
        geometry = _conic_geometry(conic)
        if geometry is None:
            return None
        A, B, C, D, E, F = conic
        value = A * x * x + B * x * y + C * y * y + D * x + E * y + F
        gx, gy = 2 * A * x + B * y + D, B * x + 2 * C * y + E
        distance = np.abs(value) / np.maximum(np.hypot(gx, gy), 1e-12)
        keep = distance < 1.0
        if keep.all():
            break
        x, y = x[keep], y[keep]
    cx, cy, a1, a2 = geometry
    scale = size / WORLD_SIZE
    if not (0 <= cx < size and 0 <= cy < size and 10 * scale < min(a1, a2)):
        return None
    if max(a1, a2) > 80 * scale:
        return None
    return conic, geometry


# --------------------------------------------------------------------------------------------


def detect(image: np.ndarray) -> Detection:
    """Find the nine landmarks of a toy-world image ([H, W, 3] uint8 RGB, square, any size)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] != image.shape[1]:
        raise ValueError(f"expected a square [H, W, 3] RGB image, got shape {image.shape}")
    size = image.shape[0]
    scale = size / WORLD_SIZE
    pixels = image.astype(np.float64)
    notes: list[str] = []

    background = _fit_background(pixels)
    foreground = np.linalg.norm(pixels - background[:, None, :], axis=2) > BACKGROUND_DISTANCE
    skin_like = foreground & (np.linalg.norm(pixels - SKIN, axis=2) < 50.0)
    skin = np.median(pixels[skin_like], axis=0) if skin_like.sum() >= 20 else SKIN.copy()
    foreground |= np.linalg.norm(pixels - skin, axis=2) < BACKGROUND_DISTANCE
    # Eye/skin mixtures can match the background colour: fill such holes. The inner parts never
    # touch the outline, so the anti-aliased outline ring (a mixture of skin and background that
    # can look like a faint eye or mouth) is kept out by an erosion.
    interior = _erode(_fill_holes(foreground), 2)

    skin_area = int((np.linalg.norm(pixels - skin, axis=2) < 30.0).sum())
    if skin_area < MIN_SKIN_AREA * scale * scale:
        return Detection(missing=LANDMARK_NAMES, notes=("no face",))
    skin_near = np.linalg.norm(pixels - skin, axis=2) < 35.0

    endmembers = np.stack([EYE - skin, MOUTH - skin, HAIR - skin], axis=1)  # [3 channels, 3 parts]
    try:
        shares = (pixels - skin) @ np.linalg.inv(endmembers).T  # [H, W, 3]
    except np.linalg.LinAlgError:
        return Detection(missing=LANDMARK_NAMES, notes=("no face",))

    points: dict[str, tuple[float, float]] = {}

    def blobs(part: int, min_mass: float, max_mass: float):
        """Blobs of one part on skin: pixels that mix skin with that part alone, grouped, of a
        plausible size, and ringed by skin (so noise and stray colours are not taken for it)."""
        share = shares[:, :, part]
        others = np.delete(shares, part, axis=2)
        seeds = (share > PART_THRESHOLD) & (share < 1.7) & (np.abs(others) < 0.35).all(axis=2)
        found = []
        for component in _components(seeds & interior):
            weights, rows, cols = _blob_weights(share, component, interior)
            mass = float(weights.sum())
            if not min_mass * scale * scale <= mass <= max_mass * scale * scale:
                continue
            blob = np.zeros(share.shape, bool)
            blob[component[:, 0], component[:, 1]] = True
            ring = _dilate(blob, 2) & ~_dilate(blob, 1)
            if ring.any() and skin_near[ring].mean() < 0.5:
                continue
            found.append((mass, weights, rows, cols))
        return sorted(found, key=lambda blob: -blob[0])

    eye_blobs = blobs(0, MIN_EYE_MASS, MAX_EYE_MASS)[:4]
    mouth_blobs = blobs(1, MIN_MOUTH_MASS, MAX_MOUTH_MASS)[:3]
    eye_pairs = []  # (mass, (left centre, right centre), (left blob, right blob))
    for i in range(len(eye_blobs)):
        for j in range(i + 1, len(eye_blobs)):
            (left, left_blob), (right, right_blob) = sorted(
                ((_weighted_centroid(*eye_blobs[k][1:]), eye_blobs[k]) for k in (i, j)),
                key=lambda item: item[0][0],
            )
            dx, dy = right[0] - left[0], right[1] - left[1]
            separation = math.hypot(dx, dy) / scale
            if EYE_SEPARATION[0] <= separation <= EYE_SEPARATION[1]:
                if abs(math.degrees(math.atan2(dy, dx))) <= MAX_TILT:
                    mass = eye_blobs[i][0] + eye_blobs[j][0]
                    eye_pairs.append((mass, (left, right), (left_blob, right_blob)))
    eye_pairs.sort(key=lambda pair: -pair[0])
    mouth_centres = [_weighted_centroid(*blob[1:]) for blob in mouth_blobs]

    def mouth_fits(eyes, mouth) -> bool:
        """The mouth lies below the eyes' midpoint, about square to the eye line."""
        (lx, ly), (rx_, ry_) = eyes
        mid = ((lx + rx_) / 2, (ly + ry_) / 2)
        dx, dy = mouth[0] - mid[0], mouth[1] - mid[1]
        distance = math.hypot(dx, dy) / scale
        turn = math.degrees(math.atan2(dy, dx) - math.atan2(ry_ - ly, rx_ - lx)) % 360
        return EYE_MOUTH_DISTANCE[0] <= distance <= EYE_MOUTH_DISTANCE[1] and abs(turn - 90) <= 35

    mouth_blob = None
    chosen = eye_pairs[0] if eye_pairs else None
    for pair in eye_pairs or [None]:
        eyes = pair[1] if pair is not None else None
        fitting = [k for k, m in enumerate(mouth_centres) if eyes is None or mouth_fits(eyes, m)]
        if fitting:
            chosen, mouth_blob = pair, mouth_blobs[fitting[0]]
            points["mouth"] = mouth_centres[fitting[0]]
            break
    if chosen is not None:
        points["left_eye"], points["right_eye"] = chosen[1]

    # Face angle: the eye line runs along u; eyes-to-mouth runs along v. Average both readings.
    angles = []
    if "left_eye" in points:
        (lx, ly), (rx_, ry_) = points["left_eye"], points["right_eye"]
        angles.append(math.atan2(ry_ - ly, rx_ - lx))
        if "mouth" in points:
            mid = ((lx + rx_) / 2, (ly + ry_) / 2)
            mx, my = points["mouth"]
            angles.append(math.atan2(-(mx - mid[0]), my - mid[1]))
    angle = math.atan2(sum(map(math.sin, angles)), sum(map(math.cos, angles))) if angles else 0.0
    axis_u = np.array([math.cos(angle), math.sin(angle)])
    axis_v = np.array([-math.sin(angle), math.cos(angle)])

    def semi_axes(blob, centre) -> tuple[float, float]:
        """Semi-axes of a filled ellipse along u and v from the blob's second moments: variance
        a^2 / 4 along a semi-axis a, plus 1/12 from the pixels' area."""
        _, weights, rows, cols = blob
        offsets = np.stack([cols + 0.5, rows + 0.5], axis=1) - np.asarray(centre)
        total = weights.sum()
        var_u = float((weights * (offsets @ axis_u) ** 2).sum() / total) - 1.0 / 12.0
        var_v = float((weights * (offsets @ axis_v) ** 2).sum() / total) - 1.0 / 12.0
        return 2.0 * math.sqrt(max(var_u, 0.0)), 2.0 * math.sqrt(max(var_v, 0.0))

    sizes: dict[str, float] = {}
    if chosen is not None:
        for side, centre, blob in zip(("left_eye", "right_eye"), chosen[1], chosen[2], strict=True):
            sizes[f"{side}_width"], sizes[f"{side}_open"] = semi_axes(blob, centre)
    if mouth_blob is not None:
        centre = np.array(points["mouth"])
        half_w, half_h = semi_axes(mouth_blob, centre)
        sizes["mouth_width"], sizes["mouth_open"] = half_w, half_h
        points["mouth_left"] = tuple(centre - half_w * axis_u)
        points["mouth_right"] = tuple(centre + half_w * axis_u)
        points["mouth_top"] = tuple(centre - half_h * axis_v)
        points["mouth_bottom"] = tuple(centre + half_h * axis_v)

    # The face from eyes and mouth (world proportions): used to pick outline points, and as the
    # fallback when the outline cannot be fitted.
    geometric = None
    if "left_eye" in points and "mouth" in points:
        eye_l, eye_r, mouth = (np.array(points[k]) for k in ("left_eye", "right_eye", "mouth"))
        mid = (eye_l + eye_r) / 2
        span_v = float(np.linalg.norm(mouth - mid))
        ry_est = span_v / (MOUTH_V - EYE_V)
        rx_est = float(np.linalg.norm(eye_r - eye_l)) / (2 * EYE_U)
        centre = mid + (mouth - mid) * (-EYE_V / (MOUTH_V - EYE_V))
        geometric = (float(centre[0]), float(centre[1]), rx_est, ry_est)

    outline = _outline_points(pixels, background, skin)
    fitted = None
    if outline is not None:
        xs, ys = outline
        if geometric is not None:
            # Keep only the outline below the eyes: the hair cap always ends above them.
            gx, gy, _, ry_est = geometric
            v = (xs - gx) * axis_v[0] + (ys - gy) * axis_v[1]
            below = v > EYE_V * ry_est
            xs, ys = xs[below], ys[below]
        fitted = _fit_face_outline(xs, ys, size)
    if fitted is not None and geometric is not None:
        # An outline far from where the eyes and mouth put the face is some other edge.
        offset = math.hypot(fitted[1][0] - geometric[0], fitted[1][1] - geometric[1])
        if offset > MAX_FACE_OFFSET * scale:
            fitted = None
    if fitted is not None:
        conic, (cx, cy, axis_1, axis_2) = fitted
        points["face"] = (cx, cy)
        sizes["face_minor"], sizes["face_major"] = sorted((axis_1, axis_2))
        chin = _conic_lowest_point(conic)
        if chin is not None:
            points["chin"] = chin
    elif geometric is not None:
        notes.append("face and chin from eyes+mouth proportions")
        gx, gy, rx_est, ry_est = geometric
        points["face"] = (gx, gy)
        points["chin"] = chin_point(gx, gy, rx_est, ry_est, math.degrees(angle))

    missing = tuple(name for name in LANDMARK_NAMES if name not in points)
    points = {name: (float(points[name][0]), float(points[name][1])) for name in points}
    return Detection(points=points, missing=missing, sizes=sizes, notes=tuple(notes))
