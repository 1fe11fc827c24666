"""One Drag-Fu run, host-independent: strokes -> drags -> crop -> engine -> composite -> new layer.

A host adapter (GIMP 3 or GIMP 2.10) implements `Host`; `run(host, options, config)` does the
rest. Nothing touches the image until the engine's result is in hand: the host's
insert_result is the only step that changes the image, and it runs inside one undo group.
"""

import sys
import time

from . import composite as composite_mod
from . import geometry, live, mask, source as source_mod, strokes
from .progress import Progress

PATHS_SELECTED = "selected"
PATHS_VISIBLE = "visible"
PATHS_MODES = (PATHS_SELECTED, PATHS_VISIBLE)
# How the edit reaches the layer: the photo's own pixels moved by the drag's motion (grain and
# detail kept), or the model's re-render of the region (soft on photos).
PASTE_WARP = "warp"
PASTE_RENDER = "render"
PASTE_MODES = (PASTE_WARP, PASTE_RENDER)


class JobError(Exception):
    """A failure the user sees: a one-line message and an optional hint."""

    def __init__(self, message, hint="", code="error"):
        Exception.__init__(self, message)
        self.message = message
        self.hint = hint
        self.code = code

    def user_text(self):
        if self.hint:
            return "Drag-Fu: %s\n%s" % (self.message, self.hint)
        return "Drag-Fu: %s" % self.message


class Options(object):
    """What the dialog (or a script's procedure arguments) asked for. None = from the config."""

    def __init__(
        self,
        model=None,
        steps=None,
        paths=PATHS_SELECTED,
        use_selection=True,
        region=geometry.REGION_AUTO,
        reuse_projection=True,
        keep_frames=False,
        device=None,
        engine_command=None,
        project_steps=None,
        paste=PASTE_WARP,
    ):
        self.model = model or None
        self.steps = int(steps) if steps else None
        self.paths = paths if paths in PATHS_MODES else PATHS_SELECTED
        self.use_selection = bool(use_selection)
        self.region = region if region in geometry.REGION_MODES else geometry.REGION_AUTO
        self.reuse_projection = bool(reuse_projection)
        self.keep_frames = bool(keep_frames)
        self.device = device or None
        self.engine_command = engine_command or None  # argv list
        self.project_steps = int(project_steps) if project_steps else None
        self.paste = paste if paste in PASTE_MODES else PASTE_WARP


class LayerInfo(object):
    """What the core needs to know about the source drawable."""

    def __init__(self, name, width, height, offsets, channels, max_value=255):
        self.name = name
        self.width = int(width)
        self.height = int(height)
        self.offsets = (int(offsets[0]), int(offsets[1]))
        self.channels = int(channels)  # 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA
        self.max_value = max_value  # 255 for 8-bit buffers, 1.0 for float buffers


class Host(object):
    """What an adapter provides. Coordinates: layer coordinates unless said otherwise."""

    def layer_info(self):
        raise NotImplementedError

    def strokes(self, which):
        """[(points, closed, label)] from the selected (active) paths or all visible paths,
        points in image coordinates (GIMP's 6 floats per anchor)."""
        raise NotImplementedError

    def selection_bounds(self):
        """The selection's bounding Rect in layer coordinates, clipped to the layer; None if none."""
        raise NotImplementedError

    def read_pixels(self, rect):
        """The source's pixels over rect: bytearray (8-bit) or array('f'), in its own layout."""
        raise NotImplementedError

    def read_selection(self, rect):
        """The selection over rect (layer coordinates) as width * height bytes 0..255."""
        raise NotImplementedError

    def progress(self, fraction, text):
        pass

    # The live preview (dragfu_core.live): hosts that can show it set live_preview = True.
    live_preview = False

    def preview_update(self, area, rect, rgb):
        """Show rgb (8-bit RGB, rect.width * rect.height pixels) over rect (layer coordinates,
        inside area) in a preview layer covering area directly above the source; the layer is
        made on the first call. Never part of the undo history."""

    def preview_remove(self):
        """Remove the preview layer (no undo step)."""

    # A window of the host's own that the user ends the run from (GIMP 3's interactive runs):
    # polled about ten times a second while the engine works (the host can pump its UI there).
    def stop_requested(self):
        """True once the user asked to stop the drag and keep the state reached."""
        return False

    def cancel_requested(self):
        """True once the user asked to cancel (the image stays exactly as it was)."""
        return False

    def drag_started(self):
        """The drag's first step arrived (stopping means something from now on)."""

    def insert_result(self, rect, pixels, name, frames):
        """Create the new layer directly above the source: a copy of the source with rect
        replaced by pixels, named name; frames (list of (label, pixels)) go into a layer group.
        Must be all-or-nothing and one undo step."""
        raise NotImplementedError


_clock = getattr(time, "monotonic", time.time)  # Python 2.7 has no monotonic clock


def peak_memory_mb():
    """This process's peak resident memory in MB (None where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 / (1024.0 if sys.platform == "darwin" else 1.0)  # bytes on macOS


class Result(object):
    def __init__(self, layer_name, crop, drags, notes, steps=None, frames=0, seconds=None):
        self.layer_name = layer_name
        self.crop = crop
        self.drags = drags
        self.notes = notes
        self.steps = steps
        self.frames = frames
        self.seconds = seconds or {}  # plug-in stages: read, engine, composite, insert


def plan(info, raw_strokes, selection, options, model_size=None):
    """(crop Rect in layer coordinates, drags in crop coordinates, drags in layer coordinates,
    notes). Raises JobError when there is nothing to drag. model_size: (width, height) of the
    model's images (None: square), whose aspect ratio the crop takes where the layer allows."""
    drags, notes = strokes.drags_from_strokes(raw_strokes)  # pins included (one anchor)
    if not strokes.split_pins(drags)[0]:
        where = "the selected path" if options.paths == PATHS_SELECTED else "the visible paths"
        if drags:
            notes = notes + ["%d pin%s but nothing that moves" % (len(drags), "" if len(drags) == 1 else "s")]
        detail = (" (" + "; ".join(notes) + ")") if notes else ""
        raise JobError(
            "no drag found in %s%s" % (where, detail),
            "With the Paths tool draw one open stroke per drag: first anchor = handle, "
            "last anchor = target; a stroke of one anchor is a pin (a point that stays).",
            "no_drags",
        )
    layer_drags = [d.translated(-info.offsets[0], -info.offsets[1]) for d in drags]
    layer_rect = geometry.Rect(0, 0, info.width, info.height)
    for d in layer_drags:
        for x, y in d.points():
            if not layer_rect.contains_point(x, y):
                raise JobError(
                    "%s has a point at (%g, %g), outside the layer \"%s\"" % (
                        d.source or "a drag", x + info.offsets[0], y + info.offsets[1], info.name),
                    "Handles and targets must lie on the active layer.",
                    "invalid_points",
                )
    points = []
    for d in layer_drags:
        points.extend(d.points())
    crop, region_notes = geometry.choose_region(
        options.region, (info.width, info.height), points, selection, model_size=model_size
    )
    notes = notes + region_notes
    crop_drags = [d.translated(-crop.x, -crop.y) for d in layer_drags]
    return crop, crop_drags, layer_drags, notes


def inner_edges(crop, info):
    """Which crop edges lie inside the layer (the result must fade out towards them)."""
    return (crop.x > 0, crop.y > 0, crop.x2 < info.width, crop.y2 < info.height)


def layer_name(drags, model, steps):
    moving, pins = strokes.split_pins(drags)
    count = len(moving)
    what = "%d drag%s" % (count, "" if count == 1 else "s")
    if pins:
        what += ", %d pin%s" % (len(pins), "" if len(pins) == 1 else "s")
    if steps:
        what += ", %d steps" % steps
    return "Drag-Fu: %s (%s)" % (what, model)


def run(host, options, config, session_factory=None):
    """Do one run; returns a Result. Raises JobError (the image is then untouched)."""
    info = host.layer_info()
    report = Progress(host.progress)
    report.stage("start")
    selection = None
    if options.use_selection or options.region in (geometry.REGION_SELECTION, geometry.REGION_AUTO):
        selection = host.selection_bounds()
        if selection is not None and selection.is_empty():
            selection = None
    region_selection = selection if options.region != geometry.REGION_LAYER else None
    raw_strokes = host.strokes(options.paths)
    # Planned before the engine starts: a run with nothing to drag never starts it.
    crop, crop_drags, layer_drags, notes = plan(info, raw_strokes, region_selection, options)

    model = options.model or config.get("model") or "toy"
    steps = options.steps or config.get("steps") or 200
    # A Drag-Fu result layer: the same crop again, continuing from the earlier drag's latent.
    resume_crop, from_key, note = source_mod.resume(source_mod.read(host), model, layer_drags, info)
    if note:
        notes.append(note)
    if resume_crop is not None:
        crop = resume_crop
        crop_drags = [d.translated(-crop.x, -crop.y) for d in layer_drags]
    from .session import CancelFlag

    if session_factory is None:
        from .session import EngineSession as session_factory
    session = session_factory(config, options, report, cancel=CancelFlag(also=host.cancel_requested))
    try:
        # The model's image size (width, height): a model that is not square (StyleGAN-Human,
        # twice as high as wide) gets a crop of its own shape, so the engine does not stretch it.
        model_size = session.load_model(model)
        if resume_crop is None and model_size is not None and model_size[0] != model_size[1]:
            crop, crop_drags, layer_drags, notes = plan(
                info, raw_strokes, region_selection, options, model_size
            )

        started = _clock()
        source = host.read_pixels(crop)
        rgb = composite_mod.to_rgb8(source, info.channels, crop.width, crop.height, info.max_value)
        sel_mask = None
        if options.use_selection and selection is not None:
            sel_mask = host.read_selection(crop)
            if not any(sel_mask):
                notes.append("the selection does not cover the region: it was not used")
                sel_mask = None
        movable = mask.movable_mask(sel_mask) if sel_mask is not None else None
        if movable is not None and not any(movable):
            notes.append("the selection is less than half selected everywhere: everything may move")
            movable = None

        seconds = {"read": _clock() - started}
        started = _clock()
        resume_args = {"from_key": from_key} if from_key else {}
        preview = live.LiveDrag(
            host, report, crop, rgb, crop_drags, stop=live.StopFlag(also=host.stop_requested)
        )
        try:
            outcome = session.run(
                model=model,
                image=rgb,
                width=crop.width,
                height=crop.height,
                drags=crop_drags,
                movable=movable,
                steps=steps,
                keep_frames=options.keep_frames,
                weight_mask=composite_mod.alpha_channel(source, info.channels, crop.width, crop.height, info.max_value),
                align_points=[p for d in crop_drags for p in d.points()],
                live=preview,
                # An 8-bit grey layer gets its result as luma: written by row slices.
                grey=info.channels in (1, 2) and info.max_value == 255,
                **resume_args
            )
        finally:
            preview.finish()  # the preview layer goes first: success, stop, cancel or error
    finally:
        session.close()

    # The engine sends back only the box its edit changed (crop coordinates), already blended
    # (feathered inside the selection); the layer gets the source there with those colours.
    seconds["engine"] = _clock() - started
    started = _clock()
    report.stage("composite")
    union = geometry.Rect(*outcome.box)
    for frame in outcome.frames:
        union = union.union(geometry.Rect(*frame[4]))
    base = composite_mod.sub_rect(source, info.channels, crop.width, union)

    def put_back(image_rgb, box):
        return composite_mod.put_rgb(
            base, info.channels, union, geometry.Rect(*box), image_rgb, info.max_value
        )

    if getattr(outcome, "channels", 3) == 1:
        pixels = composite_mod.put_grey(base, info.channels, union, geometry.Rect(*outcome.box), outcome.image)
    else:
        pixels = put_back(outcome.image, outcome.box)
    frames = [(label, put_back(rgb, box)) for label, rgb, _w, _h, box in outcome.frames]
    name = layer_name(crop_drags, model, outcome.steps)
    seconds["composite"] = _clock() - started
    started = _clock()
    latent_key = getattr(outcome, "latent_key", None)
    if latent_key and getattr(host, "keeps_source", False):
        # The new layer remembers its latent (a parasite), inside the same undo step.
        parasite = source_mod.encode(model, latent_key, crop, getattr(outcome, "alignment", None))
        host.insert_result(union.translated(crop.x, crop.y), pixels, name, frames, source=parasite)
    else:
        host.insert_result(union.translated(crop.x, crop.y), pixels, name, frames)
    seconds["insert"] = _clock() - started
    # One line for logs and benchmarks (GIMP shows a plug-in's stderr in its console).
    memory = peak_memory_mb()
    sys.stderr.write("Drag-Fu timings: %s; peak memory %s MB\n" % (
        ", ".join("%s %.3f s" % (k, seconds[k]) for k in ("read", "engine", "composite", "insert")),
        "?" if memory is None else "%.0f" % memory))
    report.stage("composite", 1, 1)
    result = Result(
        name, crop, layer_drags, notes + list(outcome.notes), outcome.steps, len(frames), seconds
    )
    result.resumed = bool(getattr(outcome, "resumed", False))  # no projection: continued a drag
    return result


class EngineOutcome(object):
    """What a session returns: the edited box of the crop (8-bit RGB) and where it lies."""

    def __init__(self, image, width, height, steps=None, frames=(), notes=(), box=None, latent_key=None,
                 resumed=False, alignment=None, channels=3):
        self.channels = channels  # of image: 3 (8-bit RGB) or 1 (8-bit luma, for a grey layer)
        self.latent_key = latent_key  # the engine's key of the drag's final latent (for the parasite)
        self.resumed = resumed  # True: the run continued a stored latent, nothing was projected
        self.alignment = alignment
        self.image = image
        self.width = width
        self.height = height
        self.box = tuple(box) if box else (0, 0, width, height)  # (x, y, w, h) in the crop
        self.steps = steps
        self.frames = list(frames)  # [(label, rgb bytes, width, height, box)]
        self.notes = list(notes)
