"""Fake `gimpfu` of GIMP 2.10 (see README.md): register/main, PF_* constants, pdb."""

import gimp
from gimp import (  # noqa: F401  (gimpfu re-exports these)
    GRAY,
    GRAY_IMAGE,
    GRAYA_IMAGE,
    INDEXED,
    INDEXED_IMAGE,
    INDEXEDA_IMAGE,
    NORMAL_MODE,
    RGB,
    RGB_IMAGE,
    RGBA_IMAGE,
)

(
    PF_INT8,
    PF_INT16,
    PF_INT32,
    PF_INT,
    PF_FLOAT,
    PF_STRING,
    PF_VALUE,
    PF_COLOR,
    PF_COLOUR,
    PF_ITEM,
    PF_DISPLAY,
    PF_IMAGE,
    PF_LAYER,
    PF_CHANNEL,
    PF_DRAWABLE,
    PF_VECTORS,
    PF_TOGGLE,
    PF_BOOL,
    PF_SLIDER,
    PF_SPINNER,
    PF_ADJUSTMENT,
    PF_FONT,
    PF_FILE,
    PF_BRUSH,
    PF_PATTERN,
    PF_GRADIENT,
    PF_RADIO,
    PF_TEXT,
    PF_PALETTE,
    PF_FILENAME,
    PF_DIRNAME,
    PF_OPTION,
) = range(32)

CHANNEL_OP_ADD, CHANNEL_OP_SUBTRACT, CHANNEL_OP_REPLACE, CHANNEL_OP_INTERSECT = range(4)
VECTORS_STROKE_TYPE_BEZIER = 0

PROCEDURES = {}


class Procedure(object):
    def __init__(self, name, params, function, menu, label):
        self.name = name
        self.params = params
        self.function = function
        self.menu = menu
        self.label = label


def register(
    proc_name,
    blurb,
    help,
    author,
    copyright,
    date,
    label,
    imagetypes,
    params,
    results,
    function,
    menu=None,
    domain=None,
    on_query=None,
    on_run=None,
):
    names = [p[1] for p in params]
    if len(set(names)) != len(names):
        raise ValueError("parameter names must be unique")
    for p in params:
        if len(p) < 4:
            raise ValueError("parameter %r needs (type, name, description, default)" % (p,))
    if not proc_name.startswith(
        ("python-fu-", "python_fu_", "plug-in-", "plug_in_", "extension-", "file-")
    ):
        proc_name = "python-fu-" + proc_name
    PROCEDURES[proc_name] = Procedure(proc_name, list(params), function, menu, label)


def main():
    """GIMP runs the plug-in's query/run through this; here it does nothing."""


def call(name, *positional, **named):
    """Run a registered procedure the way a non-interactive PDB call does: every parameter is
    given, missing ones take their registered defaults (what scripts and batch mode pass)."""
    proc = PROCEDURES[name]
    args = list(positional)
    for p in proc.params[len(positional) :]:
        args.append(named.pop(p[1], p[3]))
    if named:
        raise TypeError("unknown arguments %s" % sorted(named))
    return proc.function(*args)


def _bool(v):
    return 1 if v else 0


class _PDB(object):
    """The PDB procedures used by Drag-Fu's plug-in and its tests, with GIMP 2.10 semantics."""

    # ---- images and items
    def gimp_image_new(self, width, height, base_type):
        return gimp.Image(width, height, base_type)

    def gimp_image_width(self, image):
        return image.width

    def gimp_image_height(self, image):
        return image.height

    def gimp_image_base_type(self, image):
        return image.base_type

    def gimp_image_get_layers(self, image):
        return len(image.layers), tuple(layer.ID for layer in image.layers)

    def gimp_image_get_active_layer(self, image):
        return image.active_layer

    def gimp_image_set_active_layer(self, image, layer):
        image.active_layer = layer

    def gimp_image_get_colormap(self, image):
        return len(image.colormap), tuple(image.colormap)

    def gimp_image_set_colormap(self, image, num_bytes, colormap):
        image.colormap = bytearray(colormap[:num_bytes])

    def gimp_layer_new(self, image, width, height, image_type, name, opacity, mode):
        return gimp.Layer(image, name, width, height, image_type, opacity, mode)

    def gimp_layer_group_new(self, image):
        return gimp.GroupLayer(image)

    def gimp_layer_copy(self, layer, add_alpha):
        return layer.copy(add_alpha)

    def gimp_layer_set_offsets(self, layer, x, y):
        layer.offsets = (int(x), int(y))
        if layer.attached:
            layer.image._record(("offsets", layer.ID))

    def gimp_image_insert_layer(self, image, layer, parent, position):
        if layer.attached:
            raise gimp.Error("gimp_image_insert_layer: the layer is already in an image")
        if layer.image is not image:
            raise gimp.Error("gimp_image_insert_layer: the layer belongs to another image")
        if parent is not None and not parent.is_group:
            raise gimp.Error("gimp_image_insert_layer: the parent is not a layer group")
        if image.base_type == gimp.INDEXED and layer.is_rgb:
            raise gimp.Error(
                "gimp_image_insert_layer: an RGB layer cannot go into an indexed image"
            )
        siblings = parent.children if parent is not None else image.layers
        position = max(0, min(int(position), len(siblings)))
        siblings.insert(position, layer)
        layer.parent = parent
        layer.attached = True
        if image.active_layer is None:
            image.active_layer = layer
        image._record(("insert", layer.ID))

    def gimp_image_remove_layer(self, image, layer):
        image.siblings(layer).remove(layer)
        layer.attached = False
        if image.active_layer is layer:
            image.active_layer = image.layers[0] if image.layers else None
        image._record(("remove", layer.ID))

    def gimp_image_get_item_position(self, image, item):
        return image.siblings(item).index(item)

    def gimp_item_get_parent(self, item):
        return item.parent

    def gimp_item_get_name(self, item):
        return item.name

    def gimp_item_set_name(self, item, name):
        item.name = name
        if getattr(item, "attached", False):
            item.image._record(("name", item.ID))

    def gimp_item_get_visible(self, item):
        return _bool(item.visible)

    def gimp_item_set_visible(self, item, visible):
        item.visible = bool(visible)
        if getattr(item, "attached", False):
            item.image._record(("visible", item.ID))

    def gimp_item_is_group(self, item):
        return _bool(getattr(item, "is_group", False))

    def gimp_item_is_layer(self, item):
        return _bool(isinstance(item, gimp.Layer))

    def gimp_drawable_width(self, drawable):
        return drawable.width

    def gimp_drawable_height(self, drawable):
        return drawable.height

    def gimp_drawable_offsets(self, drawable):
        return drawable.offsets

    def gimp_drawable_bpp(self, drawable):
        return drawable.bpp

    def gimp_drawable_has_alpha(self, drawable):
        return _bool(drawable.has_alpha)

    def gimp_drawable_is_rgb(self, drawable):
        return _bool(drawable.is_rgb)

    def gimp_drawable_is_gray(self, drawable):
        return _bool(drawable.is_gray)

    def gimp_drawable_is_indexed(self, drawable):
        return _bool(drawable.is_indexed)

    def gimp_image_convert_rgb(self, image):
        if image.base_type != gimp.INDEXED:
            raise gimp.Error("gimp_image_convert_rgb: the image is already RGB")
        cmap = image.colormap
        for layer in image.all_layers():
            if layer.is_group or not layer.is_indexed:
                continue
            step = layer.bpp
            out = bytearray()
            for k in range(0, len(layer.data), step):
                index = layer.data[k] * 3
                out += cmap[index : index + 3]
                if step == 2:
                    out.append(layer.data[k + 1])
            layer.data = out
            layer.type = gimp.RGBA_IMAGE if step == 2 else gimp.RGB_IMAGE
            layer.bpp = step + 2
        image.base_type = gimp.RGB
        image._record(("convert", image.ID))

    # ---- undo
    def gimp_image_undo_group_start(self, image):
        image.undo_group_start()

    def gimp_image_undo_group_end(self, image):
        image.undo_group_end()

    def gimp_image_get_layer_by_name(self, image, name):
        return next((item for item in image.all_layers() if item.name == name), None)

    def gimp_image_undo_freeze(self, image):
        image.undo_frozen += 1
        return True

    def gimp_image_undo_thaw(self, image):
        if not image.undo_frozen:
            raise gimp.Error("gimp_image_undo_thaw: the undo stack is not frozen")
        image.undo_frozen -= 1
        return True

    def gimp_image_is_dirty(self, image):
        return image.dirty_count > 0

    def gimp_image_clean_all(self, image):
        image.dirty_count = 0

    # ---- selection
    def gimp_image_get_selection(self, image):
        return image.selection

    def gimp_selection_bounds(self, image):
        sel = image.selection
        xs, ys = [], []
        for j in range(sel.height):
            row = sel.data[j * sel.width : (j + 1) * sel.width]
            if any(row):
                ys.append(j)
                nz = [i for i, v in enumerate(row) if v]
                xs += [nz[0], nz[-1]]
        if not ys:
            return 0, 0, 0, image.width, image.height
        return 1, min(xs), min(ys), max(xs) + 1, max(ys) + 1

    def gimp_selection_is_empty(self, image):
        return _bool(not any(image.selection.data))

    def gimp_selection_none(self, image):
        image.selection.data = bytearray(len(image.selection.data))
        image._record(("selection", image.ID))

    def gimp_image_select_rectangle(self, image, operation, x, y, width, height):
        sel = image.selection
        x1, y1 = max(0, int(x)), max(0, int(y))
        x2, y2 = min(sel.width, int(x + width)), min(sel.height, int(y + height))
        if operation == CHANNEL_OP_REPLACE:
            sel.data = bytearray(len(sel.data))
        for j in range(y1, y2):
            for i in range(x1, x2):
                sel.data[j * sel.width + i] = 0 if operation == CHANNEL_OP_SUBTRACT else 255
        image._record(("selection", image.ID))

    # ---- vectors (paths)
    def gimp_vectors_new(self, image, name):
        return gimp.Vectors(image, name)

    def gimp_image_insert_vectors(self, image, vectors, parent, position):
        image.vectors.insert(int(position), vectors)
        image.active_vectors = vectors
        image._record(("insert-vectors", vectors.ID))

    def gimp_image_get_vectors(self, image):
        # As in GIMP 2.10's Python-Fu: an INT32ARRAY of IDs, not objects (use image.vectors).
        return len(image.vectors), tuple(v.ID for v in image.vectors)

    def gimp_image_get_active_vectors(self, image):
        return image.active_vectors

    def gimp_image_set_active_vectors(self, image, vectors):
        image.active_vectors = vectors

    def gimp_vectors_stroke_new_from_points(
        self, vectors, stroke_type, num_points, controlpoints, closed
    ):
        if num_points != len(controlpoints) or num_points % 6:
            raise gimp.Error("gimp_vectors_stroke_new_from_points: need 6 floats per anchor")
        return vectors.add_stroke(controlpoints, closed)

    def gimp_vectors_get_strokes(self, vectors):
        return len(vectors.order), tuple(vectors.order)

    def gimp_vectors_stroke_get_points(self, vectors, stroke_id):
        points, closed = vectors.strokes[stroke_id]
        return VECTORS_STROKE_TYPE_BEZIER, len(points), points, _bool(closed)

    # ---- progress, messages, displays
    def gimp_progress_init(self, message, gdisplay=None):
        gimp.progress_init(message)

    def gimp_progress_update(self, fraction):
        gimp.progress_update(fraction)

    def gimp_progress_set_text(self, message):
        gimp.PROGRESS.append(("text", message))

    def gimp_progress_end(self):
        gimp.PROGRESS.append(("end", None))

    def gimp_message(self, message):
        gimp.message(message)

    def gimp_displays_flush(self):
        gimp.FLUSHES[0] += 1


pdb = _PDB()
