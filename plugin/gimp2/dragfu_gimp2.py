#!/usr/bin/env python2
# -*- coding: utf-8 -*-
"""Drag-Fu for GIMP 2.10 (Python 2.7 + gimpfu): the host adapter.

The installer copies dragfu_core/ next to this file; the work itself (strokes -> drags, crop
maths, the engine conversation, compositing) is the same core the GIMP 3 plug-in uses.
GIMP 2.10's pixel regions hand plug-ins 8-bit data, so on high bit depth images the region
written back is 8-bit precision; everything outside it is an exact copy of the source.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# dragfu_core/ sits next to this file once installed, in ../dragfu/ in a source checkout.
# Appended, never inserted first: a folder holding a dragfu.py must not shadow other modules.
for _candidate in (HERE, os.path.join(HERE, "..", "dragfu")):
    if os.path.isdir(os.path.join(_candidate, "dragfu_core")):
        if _candidate not in sys.path:
            sys.path.append(_candidate)
        break

import gimp  # noqa: E402
from gimpfu import (  # noqa: E402
    GRAY_IMAGE,
    NORMAL_MODE,
    PF_DRAWABLE,
    PF_IMAGE,
    PF_OPTION,
    PF_SPINNER,
    PF_STRING,
    PF_TOGGLE,
    RGB_IMAGE,
    main,
    pdb,
    register,
)

from dragfu_core import config as config_mod  # noqa: E402
from dragfu_core import geometry, job  # noqa: E402
from dragfu_core import source as dragfu_source  # noqa: E402

PROCEDURE = "python-fu-dragfu"
PARASITE_PERSISTENT = 1  # GIMP's GIMP_PARASITE_PERSISTENT: kept in the XCF
PREVIEW_NAME = "Drag-Fu preview"
PATH_MODES = [job.PATHS_SELECTED, job.PATHS_VISIBLE]
PATH_LABELS = ["Selected (active) path", "All visible paths"]
REGION_MODES = [geometry.REGION_AUTO, geometry.REGION_SELECTION, geometry.REGION_POINTS, geometry.REGION_LAYER]
PASTE_MODES = [job.PASTE_WARP, job.PASTE_RENDER]
PASTE_LABELS = ["Move the photo's own pixels", "The model's re-render"]
REGION_LABELS = [
    "The subject around the points (and the selection)",
    "Selection bounds",
    "The area around the points",
    "The whole layer",
]


class Gimp2Host(job.Host):
    """GIMP 2.10 side of dragfu_core.job.Host (pdb, pixel regions)."""

    def __init__(self, image, layer):
        self.image = image
        self.layer = layer
        self.indexed = pdb.gimp_drawable_is_indexed(layer)
        self.has_alpha = pdb.gimp_drawable_has_alpha(layer)
        if self.indexed:
            # Palette indices mean nothing to the model: read a converted RGB copy.
            self.channels = 4 if self.has_alpha else 3
        else:
            colour = 3 if pdb.gimp_drawable_is_rgb(layer) else 1
            self.channels = colour + (1 if self.has_alpha else 0)

    def layer_info(self):
        ox, oy = pdb.gimp_drawable_offsets(self.layer)
        return job.LayerInfo(
            pdb.gimp_item_get_name(self.layer),
            pdb.gimp_drawable_width(self.layer),
            pdb.gimp_drawable_height(self.layer),
            (ox, oy),
            self.channels,
            255,
        )

    def strokes(self, which):
        if which == job.PATHS_VISIBLE:
            # image.vectors gives objects (pdb.gimp_image_get_vectors only IDs).
            paths = [v for v in self.image.vectors if pdb.gimp_item_get_visible(v)]
        else:
            active = pdb.gimp_image_get_active_vectors(self.image)
            paths = [active] if active is not None else []
        found = []
        for vectors in paths:
            name = pdb.gimp_item_get_name(vectors)
            _count, stroke_ids = pdb.gimp_vectors_get_strokes(vectors)
            for index, stroke_id in enumerate(stroke_ids):
                _type, _n, points, closed = pdb.gimp_vectors_stroke_get_points(vectors, stroke_id)
                label = 'path "%s", stroke %d' % (name, index + 1)
                found.append((list(points), bool(closed), label))
        return found

    def selection_bounds(self):
        non_empty, x1, y1, x2, y2 = pdb.gimp_selection_bounds(self.image)
        if not non_empty:
            return None
        ox, oy = pdb.gimp_drawable_offsets(self.layer)
        rect = geometry.Rect.from_corners(x1 - ox, y1 - oy, x2 - ox, y2 - oy)
        layer = geometry.Rect(0, 0, pdb.gimp_drawable_width(self.layer), pdb.gimp_drawable_height(self.layer))
        rect = rect.intersect(layer)
        return None if rect.is_empty() else rect

    def read_pixels(self, rect):
        if self.indexed:
            return self._read_indexed(rect)
        region = self.layer.get_pixel_rgn(rect.x, rect.y, rect.width, rect.height, False, False)
        return bytearray(region[rect.x:rect.x2, rect.y:rect.y2])

    def _read_indexed(self, rect):
        _n, colormap = pdb.gimp_image_get_colormap(self.image)
        colormap = bytearray(colormap)
        region = self.layer.get_pixel_rgn(rect.x, rect.y, rect.width, rect.height, False, False)
        raw = bytearray(region[rect.x:rect.x2, rect.y:rect.y2])
        step = 2 if self.has_alpha else 1
        out = bytearray()
        for k in range(0, len(raw), step):
            index = raw[k] * 3
            out += colormap[index:index + 3]
            if self.has_alpha:
                out.append(raw[k + 1])
        return out

    def read_selection(self, rect):
        ox, oy = pdb.gimp_drawable_offsets(self.layer)
        selection = pdb.gimp_image_get_selection(self.image)
        width, height = pdb.gimp_image_width(self.image), pdb.gimp_image_height(self.image)
        wanted = rect.translated(ox, oy)
        inside = wanted.intersect(geometry.Rect(0, 0, width, height))
        out = bytearray(rect.width * rect.height)  # outside the canvas nothing is selected
        if inside.is_empty():
            return out
        region = selection.get_pixel_rgn(inside.x, inside.y, inside.width, inside.height, False, False)
        data = bytearray(region[inside.x:inside.x2, inside.y:inside.y2])
        for row in range(inside.height):
            j = inside.y - wanted.y + row
            i = inside.x - wanted.x
            out[j * rect.width + i:j * rect.width + i + inside.width] = data[
                row * inside.width:(row + 1) * inside.width
            ]
        return out

    def progress(self, fraction, text):
        pdb.gimp_progress_set_text(text)
        pdb.gimp_progress_update(fraction)

    # -- the live preview (dragfu_core.live): a layer above the source, never in the undo history

    @property
    def live_preview(self):
        return not self.indexed  # an indexed layer would need the preview quantised

    def preview_update(self, area, rect, rgb):
        image = self.image
        grey = self.channels in (1, 2)
        pdb.gimp_image_undo_freeze(image)  # nothing of the preview is recorded
        try:
            if getattr(self, "_preview", None) is None:
                self._remove_leftover_previews()
                self._was_dirty = pdb.gimp_image_is_dirty(image)
                kind = GRAY_IMAGE if grey else RGB_IMAGE
                layer = pdb.gimp_layer_new(image, area.width, area.height, kind, PREVIEW_NAME,
                                           100.0, NORMAL_MODE)
                ox, oy = pdb.gimp_drawable_offsets(self.layer)
                pdb.gimp_layer_set_offsets(layer, ox + area.x, oy + area.y)
                parent = pdb.gimp_item_get_parent(self.layer)
                pdb.gimp_image_insert_layer(image, layer, parent, pdb.gimp_image_get_item_position(image, self.layer))
                self._preview = layer
            layer = self._preview
            x, y = rect.x - area.x, rect.y - area.y
            data = bytes(rgb[0::3]) if grey else bytes(rgb)  # grey layers: the red channel
            region = layer.get_pixel_rgn(x, y, rect.width, rect.height, True, False)
            region[x:x + rect.width, y:y + rect.height] = data
            layer.flush()
            layer.update(x, y, rect.width, rect.height)
        finally:
            pdb.gimp_image_undo_thaw(image)
        pdb.gimp_displays_flush()

    def _remove_leftover_previews(self):
        """A run that GIMP killed (its progress Cancel) could not remove its preview layer; the
        next run does (undo already frozen by the caller)."""
        for _ in range(16):
            leftover = pdb.gimp_image_get_layer_by_name(self.image, PREVIEW_NAME)
            if leftover is None:
                break
            pdb.gimp_image_remove_layer(self.image, leftover)

    def preview_remove(self):
        layer = getattr(self, "_preview", None)
        if layer is None:
            return
        self._preview = None
        image = self.image
        pdb.gimp_image_undo_freeze(image)
        try:
            pdb.gimp_image_remove_layer(image, layer)
        finally:
            pdb.gimp_image_undo_thaw(image)
        if not self._was_dirty:
            pdb.gimp_image_clean_all(image)  # the preview alone does not make the image need saving
        pdb.gimp_displays_flush()

    keeps_source = True  # insert_result takes source= (dragfu_core.source)

    def layer_source(self, name):
        """The source layer's parasite `name` as bytes, or None."""
        parasite = self.layer.parasite_find(name)
        return None if parasite is None else parasite.data

    def insert_result(self, rect, pixels, name, frames, source=None):
        source_data, source = source, self.layer
        image = self.image
        pdb.gimp_image_undo_group_start(image)
        made = []
        try:
            if self.indexed:
                pdb.gimp_image_convert_rgb(image)
            parent = pdb.gimp_item_get_parent(source)
            position = pdb.gimp_image_get_item_position(image, source)
            if frames:
                group = pdb.gimp_layer_group_new(image)
                pdb.gimp_item_set_name(group, name + " (frames)")
                pdb.gimp_image_insert_layer(image, group, parent, position)
                made.append(group)
                for label, frame_pixels in frames:
                    frame = self._copy_with(rect, frame_pixels, label)
                    pdb.gimp_image_insert_layer(image, frame, group, 0)
                    made.append(frame)
                pdb.gimp_item_set_visible(group, False)
                position = pdb.gimp_image_get_item_position(image, source)
            result = self._copy_with(rect, pixels, name)
            pdb.gimp_image_insert_layer(image, result, parent, position)
            made.append(result)
            # Where the layer came from (persistent: saved in the XCF); a copy of a result layer
            # must not keep its parent's.
            if source_data is not None:
                result.attach_new_parasite(dragfu_source.PARASITE_NAME, PARASITE_PERSISTENT, bytes(source_data))
            elif result.parasite_find(dragfu_source.PARASITE_NAME) is not None:
                result.parasite_detach(dragfu_source.PARASITE_NAME)
            pdb.gimp_image_set_active_layer(image, result)
        except Exception:
            for item in reversed(made):
                try:
                    pdb.gimp_image_remove_layer(image, item)
                except Exception:
                    pass
            raise
        finally:
            pdb.gimp_image_undo_group_end(image)
        pdb.gimp_displays_flush()
        return result

    def _copy_with(self, rect, pixels, name):
        layer = pdb.gimp_layer_copy(self.layer, False)
        pdb.gimp_item_set_name(layer, name)
        region = layer.get_pixel_rgn(rect.x, rect.y, rect.width, rect.height, True, False)
        region[rect.x:rect.x2, rect.y:rect.y2] = bytes(pixels)
        layer.flush()
        layer.update(rect.x, rect.y, rect.width, rect.height)
        return layer


def dragfu_run(image, drawable, model, steps, paths, use_selection, region, reuse_projection,
               keep_frames, device, engine_command, paste=0):
    """The procedure body: options from the dialog or the caller, errors as GIMP messages."""
    if drawable is None or not pdb.gimp_item_is_layer(drawable):
        gimp.message("Drag-Fu: select a layer (not a channel or a mask).")
        return
    if pdb.gimp_item_is_group(drawable):
        gimp.message("Drag-Fu: select a pixel layer, not a layer group.")
        return
    try:
        config, _path = config_mod.load_config(HERE, gimp.directory)
    except config_mod.ConfigError as error:
        gimp.message("Drag-Fu: %s\n%s" % (error, error.hint))
        return
    command = (engine_command or "").strip()
    options = job.Options(
        model=(model or "").strip() or None,
        steps=int(steps),
        paths=PATH_MODES[int(paths)] if 0 <= int(paths) < len(PATH_MODES) else job.PATHS_SELECTED,
        use_selection=bool(use_selection),
        region=REGION_MODES[int(region)] if 0 <= int(region) < len(REGION_MODES) else geometry.REGION_AUTO,
        reuse_projection=bool(reuse_projection),
        keep_frames=bool(keep_frames),
        device=(device or "").strip() or None,
        engine_command=config_mod.parse_command(command),
        paste=PASTE_MODES[int(paste)] if 0 <= int(paste) < len(PASTE_MODES) else job.PASTE_WARP,
    )
    gimp.progress_init("Drag-Fu: starting the engine")
    try:
        result = job.run(Gimp2Host(image, drawable), options, config)
    except job.JobError as error:
        gimp.message(error.user_text())
        return
    except Exception as error:  # a bug: still a message, never a half-made image
        gimp.message("Drag-Fu: internal error: %s: %s" % (type(error).__name__, error))
        return
    if result.notes:
        gimp.message("Drag-Fu: " + "\n".join(result.notes))


register(
    PROCEDURE,
    "Drag points of a photo with a GAN (DragGAN-style point dragging)",
    "Each open path stroke is a drag: its first anchor is the handle, its last anchor the target, "
    "anchors between are waypoints. The selection, if any, is the region that may move. The "
    "result is a new layer directly above the source; the source is untouched.",
    "Drag-Fu authors",
    "Drag-Fu authors",
    "2026",
    "Drag-Fu (GAN point drag)...",
    "RGB*, GRAY*, INDEXED*",
    [
        (PF_IMAGE, "image", "Input image", None),
        (PF_DRAWABLE, "drawable", "Input layer", None),
        (PF_STRING, "model", "Model ('' = from dragfu.json)", ""),
        (PF_SPINNER, "steps", "Steps (0 = from dragfu.json)", 0, (0, 100000, 10)),
        (PF_OPTION, "paths", "Paths", 0, PATH_LABELS),
        (PF_TOGGLE, "use_selection", "Selection is the movable region", True),
        (PF_OPTION, "region", "Region sent to the model", 0, REGION_LABELS),
        (PF_TOGGLE, "reuse_projection", "Reuse the cached projection", True),
        (PF_TOGGLE, "keep_frames", "Keep intermediate frames (layer group)", False),
        (PF_STRING, "device", "Device (auto, cpu, cuda, mps; '' = from dragfu.json)", ""),
        (PF_STRING, "engine_command", "Engine command ('' = from dragfu.json)", ""),
        (PF_OPTION, "paste", "Paste back", 0, PASTE_LABELS),
    ],
    [],
    dragfu_run,
    menu="<Image>/Filters/Distorts",
)

if __name__ == "__main__":
    main()
