"""Fake `gimp` module of GIMP 2.10's Python-Fu (see README.md): images, layers, channels, vectors."""

import os
import tempfile

RGB, GRAY, INDEXED = 0, 1, 2
RGB_IMAGE, RGBA_IMAGE, GRAY_IMAGE, GRAYA_IMAGE, INDEXED_IMAGE, INDEXEDA_IMAGE = range(6)
NORMAL_MODE = 0

MESSAGES = []
PROGRESS = []
directory = os.path.join(tempfile.gettempdir(), "gimp2-shim-home")

_next_id = [1]


def _new_id():
    _next_id[0] += 1
    return _next_id[0]


FLUSHES = [0]  # gimp_displays_flush calls


def message(text):
    MESSAGES.append(str(text))


def progress_init(text=None):
    PROGRESS.append(("init", text))


def progress_update(fraction):
    PROGRESS.append(("update", float(fraction)))


def reset():
    del MESSAGES[:]
    del PROGRESS[:]


class Error(Exception):
    """gimp.error: a PDB call failed."""


error = Error


def _bpp_of(image_type):
    return {
        RGB_IMAGE: 3,
        RGBA_IMAGE: 4,
        GRAY_IMAGE: 1,
        GRAYA_IMAGE: 2,
        INDEXED_IMAGE: 1,
        INDEXEDA_IMAGE: 2,
    }[image_type]


class Image(object):
    def __init__(self, width, height, base_type=RGB):
        self.ID = _new_id()
        self.width = int(width)
        self.height = int(height)
        self.base_type = base_type
        self.layers = []  # top-level items, top first
        self.vectors = []  # top first
        self.active_layer = None
        self.active_vectors = None
        self.colormap = bytearray()
        self.selection = Channel(self, "Selection", self.width, self.height)
        self.undo_stack = []
        self.undo_frozen = 0  # gimp_image_undo_freeze/thaw: changes are not recorded (still dirty)
        self.layer_history = []  # the top-level layer names after every insert / remove
        self._group_depth = 0
        self._group = None
        self.dirty_count = 0

    # -- undo: one entry per change, undo groups collapse into one entry
    def _record(self, what):
        if what[0] in ("insert", "remove"):
            self.layer_history.append([layer.name for layer in self.all_layers()])
        if self.undo_frozen:
            self.dirty_count += 1
            return
        if self._group_depth:
            self._group.append(what)
        else:
            self.undo_stack.append(what)
        self.dirty_count += 1

    def undo_group_start(self):
        if not self._group_depth:
            self._group = []
        self._group_depth += 1

    def undo_group_end(self):
        if not self._group_depth:
            raise Error("gimp_image_undo_group_end: no group open")
        self._group_depth -= 1
        if not self._group_depth and self._group:
            self.undo_stack.append(("group", tuple(self._group)))
            self._group = None

    # -- item tree
    def all_layers(self):
        out = []

        def walk(items):
            for item in items:
                out.append(item)
                if isinstance(item, GroupLayer):
                    walk(item.children)

        walk(self.layers)
        return out

    def siblings(self, item):
        return item.parent.children if item.parent is not None else self.layers


class Drawable(object):
    is_group = False

    def __init__(self, image, name, width, height, bpp):
        self.ID = _new_id()
        self.image = image
        self.name = name
        self.width = int(width)
        self.height = int(height)
        self.bpp = bpp
        self.data = bytearray(self.width * self.height * bpp)
        self.offsets = (0, 0)
        self.parent = None
        self.visible = True
        self.attached = False  # inserted in the image
        self.flushed = True
        self.parasites = {}  # name -> Parasite (GIMP 2.10's item parasites)

    # GIMP 2.10's parasite calls on an item (gimp.Item.attach_new_parasite, parasite_find, ...)
    def attach_new_parasite(self, name, flags, data):
        if not isinstance(data, bytes):
            raise TypeError("parasite data must be a (byte) string")
        if self.attached:
            self.image._record("parasite %s" % name)
        self.parasites[name] = Parasite(name, flags, data)

    def parasite_find(self, name):
        return self.parasites.get(name)

    def parasite_detach(self, name):
        self.parasites.pop(name, None)

    def get_pixel_rgn(self, x, y, width, height, dirty=True, shadow=False):
        return PixelRegion(self, x, y, width, height, dirty, shadow)

    def flush(self):
        self.flushed = True

    def update(self, x, y, width, height):
        pass

    def merge_shadow(self, undo=True):
        pass


class Parasite(object):
    def __init__(self, name, flags, data):
        self.name = name
        self.flags = flags
        self.data = data

    def is_persistent(self):
        return bool(self.flags & 1)


class Layer(Drawable):
    def __init__(
        self, image, name, width, height, image_type=RGB_IMAGE, opacity=100.0, mode=NORMAL_MODE
    ):
        Drawable.__init__(self, image, name, width, height, _bpp_of(image_type))
        self.type = image_type
        self.opacity = opacity
        self.mode = mode

    @property
    def has_alpha(self):
        return self.type in (RGBA_IMAGE, GRAYA_IMAGE, INDEXEDA_IMAGE)

    @property
    def is_rgb(self):
        return self.type in (RGB_IMAGE, RGBA_IMAGE)

    @property
    def is_gray(self):
        return self.type in (GRAY_IMAGE, GRAYA_IMAGE)

    @property
    def is_indexed(self):
        return self.type in (INDEXED_IMAGE, INDEXEDA_IMAGE)

    def copy(self, add_alpha=False):
        twin = Layer(
            self.image,
            self.name + " copy",
            self.width,
            self.height,
            self.type,
            self.opacity,
            self.mode,
        )
        twin.data = bytearray(self.data)
        twin.offsets = self.offsets
        twin.parasites = dict(self.parasites)  # GIMP copies an item's parasites with it
        return twin


class GroupLayer(Layer):
    is_group = True

    def __init__(self, image, name="Layer Group"):
        Layer.__init__(self, image, name, 1, 1, RGBA_IMAGE)
        self.children = []

    def get_pixel_rgn(self, *args):
        raise Error("a layer group has no pixels of its own")


class Channel(Drawable):
    def __init__(self, image, name, width, height):
        Drawable.__init__(self, image, name, width, height, 1)
        self.attached = True


class Vectors(object):
    def __init__(self, image, name):
        self.ID = _new_id()
        self.image = image
        self.name = name
        self.strokes = {}  # id -> (points tuple, closed)
        self.order = []
        self.visible = False  # GIMP: a new path is not visible
        self._next = 0

    def add_stroke(self, points, closed):
        self._next += 1
        self.strokes[self._next] = (tuple(float(v) for v in points), bool(closed))
        self.order.append(self._next)
        return self._next


class PixelRegion(object):
    """rgn[x1:x2, y1:y2] in drawable coordinates, inside the region's rectangle."""

    def __init__(self, drawable, x, y, width, height, dirty, shadow):
        if x < 0 or y < 0 or x + width > drawable.width or y + height > drawable.height:
            raise Error("pixel region outside the drawable")
        self.drawable = drawable
        self.x, self.y, self.w, self.h = x, y, width, height
        self.dirty = dirty
        self.shadow = shadow
        self.bpp = drawable.bpp

    def _bounds(self, key):
        if not (isinstance(key, tuple) and len(key) == 2):
            raise TypeError("index a pixel region with [x1:x2, y1:y2] or [x, y]")
        xs, ys = key
        if isinstance(xs, int):
            xs = slice(xs, xs + 1)
        if isinstance(ys, int):
            ys = slice(ys, ys + 1)
        x1, x2, y1, y2 = xs.start, xs.stop, ys.start, ys.stop
        if (
            x1 < self.x
            or y1 < self.y
            or x2 > self.x + self.w
            or y2 > self.y + self.h
            or x1 >= x2
            or y1 >= y2
        ):
            raise IndexError("subscript out of range")
        return x1, x2, y1, y2

    def __getitem__(self, key):
        x1, x2, y1, y2 = self._bounds(key)
        d = self.drawable
        out = bytearray()
        for j in range(y1, y2):
            start = (j * d.width + x1) * d.bpp
            out += d.data[start : start + (x2 - x1) * d.bpp]
        return bytes(out)

    def __setitem__(self, key, value):
        if not self.dirty:
            raise Error("pixel region is not writable (dirty=False)")
        x1, x2, y1, y2 = self._bounds(key)
        d = self.drawable
        value = bytearray(value)
        row = (x2 - x1) * d.bpp
        if len(value) != row * (y2 - y1):
            raise TypeError("string is the wrong length")
        for j in range(y1, y2):
            start = (j * d.width + x1) * d.bpp
            d.data[start : start + row] = value[(j - y1) * row : (j - y1 + 1) * row]
        d.flushed = False
        if d.attached and d.image is not None:
            d.image._record(("pixels", d.ID))
