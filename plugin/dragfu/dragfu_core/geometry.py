"""Rectangles and coordinate maths: image <-> layer <-> crop, and the region sent to the model.

Three coordinate systems, all with x right, y down, pixel (i, j) covering [i, i+1) x [j, j+1):
  image: GIMP's canvas (paths and the selection live here)
  layer: the source drawable's own pixels; image = layer + layer offsets
  crop:  the region sent to the model, a rectangle inside the layer; layer = crop + crop origin
"""

import math

# The subject around the drag points (and the selection): a context square big enough for the
# engine to find the subject in it and align it to the model; never the whole layer by default.
REGION_AUTO = "auto"
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


def grow_to_size(rect, bounds, width, height):
    """A width x height rectangle centred on rect, moved inside bounds.

    Where the layer is too small for it, that side is cut to the layer (the crop then does not
    have the model's aspect ratio, and the engine stretches it a little).
    """
    cx = rect.x + rect.width / 2.0
    cy = rect.y + rect.height / 2.0
    grown = Rect(int(round(cx - width / 2.0)), int(round(cy - height / 2.0)), width, height)
    return fit_inside(grown, bounds)


def model_shaped_size(width, height, min_side, model_size=None):
    """The smallest size of the model's aspect ratio that holds width x height, with its shorter
    side at least min_side. model_size: (width, height) of the model's images; None = square.

    The engine resizes the crop to the model's size, so a crop of the model's shape is resized
    without distortion: square for square models, twice as high as wide for StyleGAN-Human.
    """
    model_w, model_h = model_size or (1, 1)
    scale = max(float(width) / model_w, float(height) / model_h, float(min_side) / min(model_w, model_h))
    return max(int(width), int(round(scale * model_w))), max(int(height), int(round(scale * model_h)))


# Side of the context region around the drag points (layer px), capped by the layer's size: a
# face drawn 8x the toy model's scale (a 1024 px frame) still fits.
CONTEXT_SIDE = 1536


def context_region(layer_size, drag_points, selection=None, model_size=None):
    """REGION_AUTO: a region of the model's aspect ratio centred on the drag points, CONTEXT_SIDE
    (or ten times the points' spread) on its shorter side, grown to hold the selection, inside
    the layer. The engine finds the subject in it (its alignment); only what the drag moves
    changes."""
    layer = Rect(0, 0, layer_size[0], layer_size[1])
    points = points_bounds(drag_points)
    side = max(CONTEXT_SIDE, 10 * max(points.width, points.height))
    model_w, model_h = model_size or (1, 1)
    # The model's shape, its shorter side `side`, shrunk until it fits inside the layer.
    scale = min(float(side) / min(model_w, model_h), float(layer_size[0]) / model_w,
                float(layer_size[1]) / model_h)
    width, height = int(round(scale * model_w)), int(round(scale * model_h))
    crop = grow_to_size(points, layer, width, height)
    if selection is not None and not selection.is_empty():
        crop = crop.union(selection)
    return crop.union(points.intersect(layer)).intersect(layer)


def choose_region(mode, layer_size, drag_points, selection=None, min_side=64, model_size=None):
    """The crop (a Rect in layer coordinates) sent to the model, and notes for the user.

    mode: one of REGION_MODES. layer_size: (width, height). drag_points: every handle, waypoint
    and target in layer coordinates. selection: the selection's bounds in layer coordinates
    (already clipped to the layer), or None when there is no selection. model_size: (width,
    height) of the model's images, None for a square model.
    The crop always contains every drag point (grown when the chosen region does not), and is
    grown to the model's aspect ratio (a square for square models) where the layer allows.
    """
    layer = Rect(0, 0, layer_size[0], layer_size[1])
    notes = []
    square = model_size is None or model_size[0] == model_size[1]
    if mode not in REGION_MODES:
        raise ValueError("unknown region mode %r (one of %s)" % (mode, ", ".join(REGION_MODES)))
    if mode == REGION_AUTO:
        return context_region(layer_size, drag_points, selection, model_size), notes
    if mode == REGION_SELECTION and (selection is None or selection.is_empty()):
        notes.append(
            "no selection on this layer: using a %s around the drag points"
            % ("square" if square else "region of the model's shape")
        )
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
        width, height = model_shaped_size(region.width, region.height, min_side, model_size)
    else:
        # Square around the points with context: the drag's own extent again on every side,
        # so the model sees what surrounds the handle and target. (For a model that is not
        # square: that square is the shorter side, the longer side sees more.)
        extent = max(points.width, points.height)
        region = points
        side = max(2 * extent + 2 * max(16, extent // 2), min_side)
        width, height = model_shaped_size(side, side, side, model_size)
    crop = grow_to_size(region, layer, width, height)
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
