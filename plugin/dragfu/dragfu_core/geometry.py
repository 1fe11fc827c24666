"""Rectangles and coordinate maths: image <-> layer <-> crop, and the region sent to the model.

Three coordinate systems, all with x right, y down, pixel (i, j) covering [i, i+1) x [j, j+1):
  image: GIMP's canvas (paths and the selection live here)
  layer: the source drawable's own pixels; image = layer + layer offsets
  crop:  the region sent to the model, a rectangle inside the layer; layer = crop + crop origin
"""

import math

REGION_AUTO = "auto"  # the selection's bounds when there is a selection, else the whole layer
REGION_SELECTION = "selection"
REGION_POINTS = "points"
REGION_LAYER = "layer"
REGION_MODES = (REGION_AUTO, REGION_SELECTION, REGION_POINTS, REGION_LAYER)


class Rect(object):
    """Integer rectangle: origin (x, y), size (width, height)."""

    __slots__ = ("x", "y", "width", "height")

    def __init__(self, x, y, width, height):
        self.x, self.y = int(x), int(y)
        self.width, self.height = max(0, int(width)), max(0, int(height))

    @classmethod
    def from_corners(cls, x1, y1, x2, y2):
        return cls(x1, y1, x2 - x1, y2 - y1)

    @property
    def x2(self):
        return self.x + self.width

    @property
    def y2(self):
        return self.y + self.height

    def is_empty(self):
        return self.width <= 0 or self.height <= 0

    def intersect(self, other):
        x1, y1 = max(self.x, other.x), max(self.y, other.y)
        x2, y2 = min(self.x2, other.x2), min(self.y2, other.y2)
        return Rect(x1, y1, max(0, x2 - x1), max(0, y2 - y1))

    def union(self, other):
        if self.is_empty():
            return Rect(other.x, other.y, other.width, other.height)
        if other.is_empty():
            return Rect(self.x, self.y, self.width, self.height)
        x1, y1 = min(self.x, other.x), min(self.y, other.y)
        return Rect(x1, y1, max(self.x2, other.x2) - x1, max(self.y2, other.y2) - y1)

    def translated(self, dx, dy):
        return Rect(self.x + dx, self.y + dy, self.width, self.height)

    def contains_point(self, x, y):
        return self.x <= x <= self.x2 and self.y <= y <= self.y2

    def as_tuple(self):
        return (self.x, self.y, self.width, self.height)

    def __eq__(self, other):
        return isinstance(other, Rect) and self.as_tuple() == other.as_tuple()

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return "Rect(x=%d, y=%d, width=%d, height=%d)" % self.as_tuple()


def points_bounds(points):
    """Smallest integer Rect containing every (x, y) point (continuous coordinates)."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x1, y1 = int(math.floor(min(xs))), int(math.floor(min(ys)))
    x2, y2 = int(math.ceil(max(xs))), int(math.ceil(max(ys)))
    return Rect(x1, y1, max(1, x2 - x1), max(1, y2 - y1))


def fit_inside(rect, bounds):
    """Shift rect (shrinking only where it is larger) so that it lies inside bounds."""
    width, height = min(rect.width, bounds.width), min(rect.height, bounds.height)
    x = min(max(rect.x, bounds.x), bounds.x2 - width)
    y = min(max(rect.y, bounds.y), bounds.y2 - height)
    return Rect(x, y, width, height)


def grow_to_square(rect, bounds, side=None):
    """A square of `side` (default: rect's longer side) centred on rect, moved inside bounds.

    The model sees square images, so a square crop is resized without distortion; where the
    layer is too narrow for the square, that side is cut to the layer and the crop is not square.
    """
    if side is None:
        side = max(rect.width, rect.height)
    cx = rect.x + rect.width / 2.0
    cy = rect.y + rect.height / 2.0
    square = Rect(int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side, side)
    return fit_inside(square, bounds)


def choose_region(mode, layer_size, drag_points, selection=None, min_side=64):
    """The crop (a Rect in layer coordinates) sent to the model, and notes for the user.

    mode: one of REGION_MODES. layer_size: (width, height). drag_points: every handle, waypoint
    and target in layer coordinates. selection: the selection's bounds in layer coordinates
    (already clipped to the layer), or None when there is no selection.
    The crop always contains every drag point (grown when the chosen region does not), and is
    grown to a square where the layer allows.
    """
    layer = Rect(0, 0, layer_size[0], layer_size[1])
    notes = []
    if mode not in REGION_MODES:
        raise ValueError("unknown region mode %r (one of %s)" % (mode, ", ".join(REGION_MODES)))
    if mode == REGION_AUTO:
        mode = REGION_SELECTION if selection is not None and not selection.is_empty() else REGION_LAYER
    if mode == REGION_SELECTION and (selection is None or selection.is_empty()):
        notes.append("no selection on this layer: using a square around the drag points")
        mode = REGION_POINTS
    if mode == REGION_LAYER:
        return layer, notes

    points = points_bounds(drag_points)
    if mode == REGION_SELECTION:
        region = selection
        outside = [p for p in drag_points if not selection.contains_point(p[0], p[1])]
        if outside:
            notes.append(
                "%d drag point(s) lie outside the selection: the region was grown to include them"
                % len(outside)
            )
            region = region.union(points)
        side = max(region.width, region.height, min_side)
    else:
        # Square around the points with context: the drag's own extent again on every side,
        # so the model sees what surrounds the handle and target.
        extent = max(points.width, points.height)
        region = points
        side = max(2 * extent + 2 * max(16, extent // 2), min_side)
    crop = grow_to_square(region, layer, side)
    # Shifting into the layer never loses points (they lie inside the layer), but cutting a
    # side to the layer can; keep the union with the points' bounds, clipped to the layer.
    crop = crop.union(points.intersect(layer)).intersect(layer)
    return crop, notes


def image_to_layer(point, offsets):
    return (point[0] - offsets[0], point[1] - offsets[1])


def layer_to_crop(point, crop):
    return (point[0] - crop.x, point[1] - crop.y)


def scale_point(point, sx, sy):
    """Scale a point between two pixel grids covering the same area (pixel-edge convention)."""
    return (point[0] * sx, point[1] * sy)
