#!/usr/bin/env python3
"""Drag-Fu for GIMP 3: the host adapter (registration, dialog, GIMP I/O).

GIMP 3 loads plug-ins/dragfu/dragfu.py; the host-independent work (strokes -> drags, crop
maths, the engine conversation, compositing) lives in dragfu_core/ next to this file.
"""

import array
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402

from dragfu_core import config as config_mod  # noqa: E402
from dragfu_core import geometry, job  # noqa: E402
from dragfu_core import source as dragfu_source  # noqa: E402

PROCEDURE = "plug-in-dragfu"
MENU_LABEL = "Drag-Fu (GAN point drag)..."
U8_PRECISIONS = ("U8_LINEAR", "U8_NON_LINEAR", "U8_PERCEPTUAL")
PREVIEW_NAME = "Drag-Fu preview"


def _choice(entries):
    choice = Gimp.Choice.new()
    for index, (nick, label) in enumerate(entries):
        choice.add(nick, index, label, "")
    return choice


PATH_CHOICES = [(job.PATHS_SELECTED, "Selected paths"), (job.PATHS_VISIBLE, "All visible paths")]
PASTE_CHOICES = [
    (job.PASTE_WARP, "Move the photo's own pixels (keeps grain and detail)"),
    (job.PASTE_RENDER, "The model's re-render"),
]
REGION_CHOICES = [
    (geometry.REGION_AUTO, "The subject around the points (and the selection)"),
    (geometry.REGION_SELECTION, "Selection bounds"),
    (geometry.REGION_POINTS, "The area around the points"),
    (geometry.REGION_LAYER, "The whole layer"),
]


class DragWindow(object):
    """An interactive run's own window: what the run is doing, "Stop and keep" (the drag ends
    within a step and its state becomes the result layer) and Cancel (the image stays as it
    was). It replaces GIMP's progress bar there, whose cancel kills the plug-in before it can
    remove its preview layer. Pumped while the engine works (the client polls ~10 times a second)."""

    TITLE = "Drag-Fu: dragging"
    STOP = 1

    def __init__(self):
        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk

        self.Gtk = Gtk
        self.stopped = self.cancelled = False
        dialog = Gtk.Dialog(title=self.TITLE)
        dialog.set_default_size(460, -1)
        self.stop_button = dialog.add_button("_Stop and keep", self.STOP)
        self.stop_button.set_sensitive(False)  # until the drag's first step
        dialog.add_button("_Cancel", Gtk.ResponseType.CANCEL)
        content = dialog.get_content_area()
        content.set_border_width(12)
        content.set_spacing(8)
        self.label = Gtk.Label(label="Drag-Fu: starting the engine", xalign=0.0)
        self.bar = Gtk.ProgressBar()
        content.add(self.label)
        content.add(self.bar)
        dialog.connect("response", self._on_response)  # Escape and the close button: cancel
        self.dialog = dialog
        dialog.show_all()
        self.pump()

    def _on_response(self, _dialog, response):
        if response == self.STOP:
            self.stopped = True
            self.label.set_text("Drag-Fu: stopping; the state reached becomes the result")
        else:
            self.cancelled = True
            self.label.set_text("Drag-Fu: cancelling; the image stays as it was")
        self.stop_button.set_sensitive(False)

    def pump(self):
        while self.Gtk.events_pending():
            self.Gtk.main_iteration_do(False)

    def progress(self, fraction, text):
        self.label.set_text(text)
        self.bar.set_fraction(fraction)
        self.pump()

    def drag_started(self):
        if not (self.stopped or self.cancelled):
            self.stop_button.set_sensitive(True)
            self.stop_button.grab_focus()

    def close(self):
        self.dialog.destroy()
        self.pump()


class Gimp3Host(job.Host):
    """GIMP 3 side of dragfu_core.job.Host (Gegl buffers, Gimp.Path, Gimp.Selection); window: a
    DragWindow in interactive runs (GIMP's progress bar otherwise)."""

    def __init__(self, image, layer, window=None):
        self.image = image
        self.layer = layer
        self.window = window
        precision = image.get_precision().value_nick.upper().replace("-", "_")
        self.high_depth = precision not in U8_PRECISIONS
        self.grey = layer.is_gray()
        self.alpha = layer.has_alpha()
        channels = "Y'" if self.grey else "R'G'B'"
        if self.alpha:
            channels += "A"
        self.channels = len(channels.replace("'", ""))
        self.format = channels + (" float" if self.high_depth else " u8")
        self.indexed = layer.is_indexed()
        if self.indexed:
            # Indexed layers are read as RGB(A); the image is converted to RGB when the result
            # goes in (a palette cannot hold the dragged pixels).
            self.format = ("R'G'B'A" if self.alpha else "R'G'B'") + " u8"
            self.channels = 4 if self.alpha else 3
            self.grey = False

    def layer_info(self):
        _, ox, oy = self.layer.get_offsets()
        return job.LayerInfo(
            self.layer.get_name(),
            self.layer.get_width(),
            self.layer.get_height(),
            (ox, oy),
            self.channels,
            1.0 if self.high_depth else 255,
        )

    def strokes(self, which):
        if which == job.PATHS_VISIBLE:
            paths = [p for p in self.image.get_paths() if p.get_visible()]
        else:
            paths = list(self.image.get_selected_paths())
        found = []
        for path in paths:
            for index, stroke_id in enumerate(path.get_strokes()):
                _type, points, closed = path.stroke_get_points(stroke_id)
                label = 'path "%s", stroke %d' % (path.get_name(), index + 1)
                found.append((list(points), bool(closed), label))
        return found

    def selection_bounds(self):
        _, non_empty, x1, y1, x2, y2 = Gimp.Selection.bounds(self.image)
        if not non_empty:
            return None
        _, ox, oy = self.layer.get_offsets()
        rect = geometry.Rect.from_corners(x1 - ox, y1 - oy, x2 - ox, y2 - oy)
        rect = rect.intersect(geometry.Rect(0, 0, self.layer.get_width(), self.layer.get_height()))
        return None if rect.is_empty() else rect

    def read_pixels(self, rect):
        buffer = self.layer.get_buffer()
        data = buffer.get(_gegl_rect(rect), 1.0, self.format, Gegl.AbyssPolicy.CLAMP)
        if self.high_depth:
            values = array.array("f")
            values.frombytes(bytes(data))  # novermin (GIMP 3 runs Python 3)
            return values
        return bytearray(data)

    def read_selection(self, rect):
        _, ox, oy = self.layer.get_offsets()
        buffer = self.image.get_selection().get_buffer()
        # The selection lives in image coordinates; outside the canvas nothing is selected.
        data = buffer.get(_gegl_rect(rect.translated(ox, oy)), 1.0, "Y u8", Gegl.AbyssPolicy.NONE)
        return bytearray(data)

    def progress(self, fraction, text):
        if self.window is not None:
            self.window.progress(fraction, text)
            return
        Gimp.progress_set_text(text)
        Gimp.progress_update(fraction)

    def stop_requested(self):
        if self.window is None:
            return False
        self.window.pump()
        return self.window.stopped

    def cancel_requested(self):
        if self.window is None:
            return False
        self.window.pump()
        return self.window.cancelled

    def drag_started(self):
        if self.window is not None:
            self.window.drag_started()

    # -- the live preview (dragfu_core.live): a layer above the source, never in the undo history

    live_preview = True

    def preview_update(self, area, rect, rgb):
        image = self.image
        # Undo frozen around every preview change: the layer's creation, pixels and removal are
        # never recorded, so the run's one undo step stays the result layer.
        image.undo_freeze()
        try:
            if getattr(self, "_preview", None) is None:
                self._remove_leftover_previews()
                self._was_dirty = image.is_dirty()
                # An indexed image holds only indexed layers: GEGL maps the preview's colours
                # to the palette (the result itself converts the image to RGB).
                kind = Gimp.ImageType.INDEXED_IMAGE if self.indexed else (
                    Gimp.ImageType.GRAY_IMAGE if self.grey else Gimp.ImageType.RGB_IMAGE)
                layer = Gimp.Layer.new(image, PREVIEW_NAME, area.width, area.height, kind,
                                       100.0, Gimp.LayerMode.NORMAL)
                _, ox, oy = self.layer.get_offsets()
                layer.set_offsets(ox + area.x, oy + area.y)
                image.insert_layer(layer, self.layer.get_parent(), image.get_item_position(self.layer))
                self._preview = layer
            layer = self._preview
            local = geometry.Rect(rect.x - area.x, rect.y - area.y, rect.width, rect.height)
            buffer = layer.get_buffer()
            buffer.set(_gegl_rect(local), "R'G'B' u8", bytes(rgb))  # GEGL converts (grey, palette)
            buffer.flush()
            layer.update(local.x, local.y, local.width, local.height)
        finally:
            image.undo_thaw()
        Gimp.displays_flush()

    def _remove_leftover_previews(self):
        """A run that GIMP killed (its progress Cancel: quit, then SIGKILL 10 ms later) could not
        remove its preview layer; the next run does (undo already frozen by the caller)."""
        for _ in range(16):
            leftover = self.image.get_layer_by_name(PREVIEW_NAME)
            if leftover is None:
                break
            self.image.remove_layer(leftover)

    def preview_remove(self):
        layer = getattr(self, "_preview", None)
        if layer is None:
            return
        self._preview = None
        image = self.image
        image.undo_freeze()
        try:
            image.remove_layer(layer)
        finally:
            image.undo_thaw()
        if not self._was_dirty:
            image.clean_all()  # the preview alone does not make the image need saving
        Gimp.displays_flush()

    keeps_source = True  # insert_result takes source= (dragfu_core.source)

    def layer_source(self, name):
        """The source layer's parasite `name` as bytes, or None."""
        parasite = self.layer.get_parasite(name)
        return None if parasite is None else bytes(bytearray(parasite.get_data()))

    def insert_result(self, rect, pixels, name, frames, source=None):
        image, source_layer = self.image, self.layer
        parent = source_layer.get_parent()
        image.undo_group_start()
        made = []
        try:
            if self.indexed:
                image.convert_rgb()
            position = image.get_item_position(source_layer)
            if frames:
                group = Gimp.GroupLayer.new(image, name + " (frames)")
                image.insert_layer(group, parent, position)
                made.append(group)
                for index, (label, frame_pixels) in enumerate(frames):
                    frame = self._copy_with(rect, frame_pixels, label)
                    image.insert_layer(frame, group, 0)
                    made.append(frame)
                group.set_visible(False)
                position = image.get_item_position(source_layer)
            result = self._copy_with(rect, pixels, name)
            image.insert_layer(result, parent, position)
            made.append(result)
            # Where the layer came from (persistent: saved in the XCF); a copy of a result layer
            # must not keep its parent's.
            if source is not None:
                parasite = Gimp.Parasite.new(
                    dragfu_source.PARASITE_NAME, Gimp.PARASITE_PERSISTENT, list(bytearray(source))
                )
                result.attach_parasite(parasite)
            elif result.get_parasite(dragfu_source.PARASITE_NAME) is not None:
                result.detach_parasite(dragfu_source.PARASITE_NAME)
            image.set_selected_layers([result])
        except Exception:
            for item in reversed(made):
                try:
                    image.remove_layer(item)
                except Exception:
                    pass
            raise
        finally:
            image.undo_group_end()
        Gimp.displays_flush()
        return result

    def _copy_with(self, rect, pixels, name):
        """A copy of the source (same type, offsets, mode) with rect replaced by pixels."""
        layer = self.layer.copy()
        layer.set_name(name)
        buffer = layer.get_buffer()
        data = pixels.tobytes() if isinstance(pixels, array.array) else bytes(pixels)
        buffer.set(_gegl_rect(rect), self.format, data)
        buffer.flush()
        layer.update(rect.x, rect.y, rect.width, rect.height)
        return layer


def _gegl_rect(rect):
    return Gegl.Rectangle.new(rect.x, rect.y, rect.width, rect.height)


def _options_from_config(proc_config):
    get = proc_config.get_property
    command = (get("engine-command") or "").strip()
    return job.Options(
        model=(get("model") or "").strip() or None,
        steps=get("steps"),
        paths=get("paths"),
        use_selection=get("use-selection"),
        region=get("region"),
        reuse_projection=get("reuse-projection"),
        keep_frames=get("keep-frames"),
        device=(get("device") or "").strip() or None,
        engine_command=config_mod.parse_command(command),
        paste=get("paste"),
    )


def _ask(procedure, proc_config, image, config):
    """The procedure's dialog; False when the user cancelled it."""
    from gi.repository import GimpUi

    if not proc_config.get_property("model"):
        proc_config.set_property("model", config.get("model") or "toy")
    if not proc_config.get_property("steps"):
        proc_config.set_property("steps", int(config.get("steps") or 200))
    # On by default when there is a selection (GIMP would otherwise reuse the last run's).
    proc_config.set_property("use-selection", bool(Gimp.Selection.bounds(image)[1]))
    dialog = GimpUi.ProcedureDialog.new(procedure, proc_config, "Drag-Fu")
    dialog.fill(None)
    accepted = dialog.run()
    dialog.destroy()
    return accepted


def _fail(procedure, text):
    Gimp.message(text)
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(text))


class DragFu(Gimp.PlugIn):
    def do_query_procedures(self):
        return [PROCEDURE]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run, None)
        procedure.set_image_types("RGB*, GRAY*, INDEXED*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label(MENU_LABEL)
        procedure.add_menu_path("<Image>/Filters/Distorts")
        procedure.set_documentation(
            "Drag points of a photo with a GAN (DragGAN-style point dragging)",
            "Each open path stroke is a drag: its first anchor is the handle, its last anchor the "
            "target, anchors between are waypoints. The selection, if any, is the region that may "
            "move. The result is a new layer directly above the source; the source is untouched.",
            name,
        )
        procedure.set_attribution("Drag-Fu authors", "Drag-Fu authors", "2026")
        flags = GObject.ParamFlags.READWRITE
        procedure.add_string_argument("model", "_Model", "Model name or file ('' = from dragfu.json)", "", flags)
        procedure.add_int_argument("steps", "_Steps", "Drag optimisation steps (0 = from dragfu.json)", 0, 100000, 0, flags)
        procedure.add_choice_argument("paths", "_Paths", "Which paths are drags", _choice(PATH_CHOICES), job.PATHS_SELECTED, flags)
        procedure.add_boolean_argument("use-selection", "Selection is the _movable region", "Only the selected region may move", True, flags)
        procedure.add_choice_argument("region", "_Region sent to the model", "Which part of the layer the model sees", _choice(REGION_CHOICES), geometry.REGION_AUTO, flags)
        procedure.add_boolean_argument("reuse-projection", "Reuse the cached _projection", "Reuse the engine's cached projection of this region instead of projecting again", True, flags)
        procedure.add_boolean_argument("keep-frames", "Keep intermediate _frames", "Add the drag's intermediate frames as a layer group (an animation)", False, flags)
        procedure.add_string_argument("device", "_Device (blank: as configured)", "auto, cpu, cuda, cuda:1, mps ('' = from dragfu.json)", "", flags)
        procedure.add_string_argument("engine-command", "_Engine command (blank: as configured)", "Command that starts 'dragfu serve' ('' = from dragfu.json)", "", flags)
        procedure.add_choice_argument("paste", "Paste _back", "How the edit reaches the layer", _choice(PASTE_CHOICES), job.PASTE_WARP, flags)
        return procedure

    def run(self, procedure, run_mode, image, drawables, proc_config, data):
        if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
            return _fail(procedure, "Drag-Fu: select exactly one layer (not a channel or a mask).")
        layer = drawables[0]
        if layer.is_group():
            return _fail(procedure, "Drag-Fu: select a pixel layer, not a layer group.")
        try:
            config, _path = config_mod.load_config(HERE, Gimp.directory())
        except config_mod.ConfigError as error:
            return _fail(procedure, "Drag-Fu: %s\n%s" % (error, error.hint))

        interactive = run_mode != Gimp.RunMode.NONINTERACTIVE  # a user's run, also "Repeat"
        if interactive:
            gi.require_version("GimpUi", "3.0")
            from gi.repository import GimpUi

            GimpUi.init("dragfu")
        if run_mode == Gimp.RunMode.INTERACTIVE and not _ask(procedure, proc_config, image, config):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())

        options = _options_from_config(proc_config)
        window = DragWindow() if interactive else None
        if window is None:
            Gimp.progress_init("Drag-Fu: starting the engine")
        try:
            result = job.run(Gimp3Host(image, layer, window), options, config)
        except job.JobError as error:
            if error.code == "cancelled" and window is not None and window.cancelled:
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
            return _fail(procedure, error.user_text())
        except Exception as error:  # a bug: still a message, never a half-made image
            return _fail(procedure, "Drag-Fu: internal error: %s: %s" % (type(error).__name__, error))
        finally:
            if window is not None:
                window.close()
            else:
                Gimp.progress_end()
        if result.notes:
            Gimp.message("Drag-Fu: " + "\n".join(result.notes))
        return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


if __name__ == "__main__":
    Gimp.main(DragFu.__gtype__, sys.argv)
