"""Path strokes -> drags.

GIMP gives a Bezier stroke as a flat list of floats, 6 per anchor: the incoming control
point, the anchor, the outgoing control point (each x, y). Only anchors matter here: the first
anchor is the drag's handle, the last its target, anchors in between are waypoints the handle
should pass through. A stroke of a single anchor is a *pin*: a point that must stay where it is
while the others move (a Drag whose target is its handle, `is_pin`). Coordinates are image
coordinates (x right, y down; GIMP's path system).
"""

FLOATS_PER_ANCHOR = 6


class Drag(object):
    """One handle -> target drag, in whatever coordinate system its points were given in."""

    __slots__ = ("handle", "target", "waypoints", "source")

    def __init__(self, handle, target, waypoints=(), source=""):
        self.handle = (float(handle[0]), float(handle[1]))
        self.target = (float(target[0]), float(target[1]))
        self.waypoints = [(float(x), float(y)) for x, y in waypoints]
        self.source = source  # e.g. 'path "drag 1", stroke 2', for messages

    @property
    def is_pin(self):
        """A point that must stay where it is (one anchor): handle and target are the same."""
        return self.handle == self.target and not self.waypoints

    def points(self):
        """Handle, waypoints, target in order (a pin: its one point)."""
        if self.is_pin:
            return [self.handle]
        return [self.handle] + list(self.waypoints) + [self.target]

    def length(self):
        dx = self.target[0] - self.handle[0]
        dy = self.target[1] - self.handle[1]
        return (dx * dx + dy * dy) ** 0.5

    def translated(self, dx, dy):
        def move(p):
            return (p[0] + dx, p[1] + dy)

        return Drag(move(self.handle), move(self.target), [move(p) for p in self.waypoints], self.source)

    def __eq__(self, other):
        return (
            isinstance(other, Drag)
            and self.handle == other.handle
            and self.target == other.target
            and self.waypoints == other.waypoints
        )

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return "Drag(%r -> %r, waypoints=%r)" % (self.handle, self.target, self.waypoints)


def anchors_from_points(points):
    """Anchor (x, y) pairs from GIMP's flat control-point list (6 floats per anchor)."""
    points = list(points)
    if len(points) % FLOATS_PER_ANCHOR:
        raise ValueError(
            "stroke has %d control-point floats, expected a multiple of %d"
            % (len(points), FLOATS_PER_ANCHOR)
        )
    return [
        (float(points[i + 2]), float(points[i + 3]))
        for i in range(0, len(points), FLOATS_PER_ANCHOR)
    ]


def drags_from_strokes(strokes, min_length=0.5):
    """Turn strokes into drags.

    strokes: iterable of (points, closed, label): points is GIMP's flat float list, closed a
    bool, label a short human description ('path "a", stroke 1') for messages.
    Returns (drags, notes): drags include pins (single-anchor strokes, `is_pin`); notes are
    one-line messages about strokes that were skipped (closed strokes: a closed outline has no
    direction; zero-length drags, whose last anchor comes back to the first). Duplicate
    consecutive anchors are merged (two clicks on one spot make a pin).
    """
    drags = []
    notes = []
    for points, closed, label in strokes:
        if closed:
            notes.append("%s is closed: ignored (a drag is an open stroke from handle to target)" % label)
            continue
        anchors = []
        for anchor in anchors_from_points(points):
            if not anchors or _distance(anchors[-1], anchor) > 1e-6:
                anchors.append(anchor)
        if len(anchors) == 1:
            drags.append(Drag(anchors[0], anchors[0], (), label))  # a pin
            continue
        if not anchors:
            continue
        drag = Drag(anchors[0], anchors[-1], anchors[1:-1], label)
        if drag.length() < min_length:
            notes.append("%s ends where it starts: ignored (zero-length drag)" % label)
            continue
        drags.append(drag)
    return drags, notes


def split_pins(drags):
    """(moving drags, pins) from a list that holds both."""
    return [d for d in drags if not d.is_pin], [d for d in drags if d.is_pin]


def _distance(a, b):
    return ((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) ** 0.5
