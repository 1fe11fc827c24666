"""The conversation with the engine for one run: start, load the model, project, drag, stop.

Uses engine_client (the protocol client); turns its errors into job.JobError with the engine's
own message and hint. Pixels travel as raw uint8 arrays both ways (no PNG codec needed here).
"""

import contextlib
import signal

from . import engine_client, warm
from .engine_client import EngineCancelled, EngineClient, EngineError, rgb_part


class CancelFlag(object):
    """Set by SIGTERM/SIGINT (GIMP stopping the plug-in) or by the host; polled by the client.
    also: the host's own ``cancel_requested`` (its window's Cancel), polled with it."""

    def __init__(self, also=None):
        self.cancelled = False
        self.also = also
        self._previous = {}

    def set(self, *_args):
        self.cancelled = True

    def __call__(self):
        if not self.cancelled and self.also is not None and self.also():
            self.cancelled = True
        return self.cancelled

    def install(self):
        for name in ("SIGTERM", "SIGINT"):
            number = getattr(signal, name, None)
            if number is None:
                continue
            try:
                self._previous[number] = signal.signal(number, self.set)
            except (ValueError, OSError, RuntimeError):  # not the main thread
                pass

    def uninstall(self):
        for number, handler in self._previous.items():
            try:
                signal.signal(number, handler)
            except (ValueError, OSError, RuntimeError):
                pass
        self._previous = {}


def engine_argv_env(config, options):
    """(argv, extra environment) for the engine, from the options and the config."""
    from .job import JobError

    argv = options.engine_command or config.get("engine_command")
    if not argv:
        raise JobError(
            "no engine command: dragfu.json was not found and `dragfu` is not on PATH",
            "Run the Drag-Fu installer (install/install.py), or give the engine command in the dialog.",
            "no_engine",
        )
    extra = dict(config.get("engine_env") or {})
    device = options.device or config.get("device")
    if device and device != "auto":
        extra["DRAGFU_DEVICE"] = device
    if config.get("models_dir"):
        extra["DRAGFU_MODELS_DIR"] = config["models_dir"]
    return list(argv), extra


def flatpak_argv(argv, extra_env, flatpak=None):
    """Inside the Flatpak GIMP the engine runs on the host through `flatpak-spawn --host
    --watch-bus`, which does not pass the environment on: our variables go as --env= options
    (engine_client.engine_command, the one place that wraps)."""
    return engine_client.engine_command(argv, flatpak, extra_env)


class EngineSession(object):
    """One engine process for one run (the plug-in process is short-lived in GIMP)."""

    client_class = EngineClient

    def __init__(self, config, options, progress, cancel=None):
        self.config = config
        self.options = options
        self.progress = progress
        self.cancel = cancel or CancelFlag()
        self.argv, self.extra_env = engine_argv_env(config, options)
        self.client = None
        self._loaded = {}  # model name -> (width, height) or None
        self._frames = None
        self.warm = warm.wanted(self.argv, config, engine_client.in_flatpak())
        self.engine_started = None  # warm engine: True when this run started it

    def _on_event(self, frame):
        header = frame.header
        preview = frame.parts.get("preview")
        image = None
        if preview is not None:
            pixels, width, height = _array_image(preview)
            image = (pixels, width, height, header.get("box") or (0, 0, width, height))
        live = getattr(self, "_live", None)
        if live is not None and progress_stage(header) == "drag":
            live.on_progress(header, image)  # the progress line and the live preview
        else:
            fields = {}
            distances = header.get("distances")
            if distances:
                fields["distance"] = max(distances)
            if header.get("model"):
                fields["model"] = header["model"]
            self.progress.stage(header.get("stage"), header.get("step"), header.get("total"), **fields)
        frames_every = getattr(self, "_frames_every", 1)
        if image is not None and self._frames is not None and int(header.get("step") or 0) % frames_every == 0:
            pixels, width, height, box = image
            self._frames.append(("Step %d" % int(header.get("step") or 0), pixels, width, height, box))

    def load_model(self, model):
        """Start the engine and load `model`; returns (width, height) of the model's images (the
        `resolution` of the engine's answer: (R, R), or (R/2, R) for StyleGAN-Human), or None when
        the answer has no usable size. The job chooses a crop of that aspect ratio."""
        with self._engine_errors_as_job_errors():
            return self._load_model(model)

    @contextlib.contextmanager
    def _engine_errors_as_job_errors(self):
        """Ctrl-C cancels the engine while inside; the engine's errors become the job's."""
        from .job import JobError

        self.cancel.install()
        try:
            yield
        except EngineCancelled as error:
            raise JobError("cancelled: %s" % error.message, "", "cancelled")
        except EngineError as error:
            raise JobError(error.message, error.hint, error.code)
        finally:
            self.cancel.uninstall()

    def _load_model(self, model):
        if self.client is None:
            env = engine_client.engine_environment(extra=self.extra_env)
            self.progress.stage("start")
            if self.warm:
                # The user's engine stays between runs (docs/plugin.md, "The warm engine").
                self.client, self.engine_started = warm.connect(
                    self.argv, self.extra_env, env, should_cancel=self.cancel
                )
            else:
                self.client = self.client_class(flatpak_argv(self.argv, self.extra_env), env=env)
                self.client.start(should_cancel=self.cancel)  # (the host's window stays live)
        if model not in self._loaded:
            self.progress.stage("load_model", 0, 1, model=model)
            header = self.client.request(
                "load_model", {"model": model}, progress=self._on_event, should_cancel=self.cancel
            ).header
            self._loaded[model] = model_size(header.get("resolution"))
        return self._loaded[model]

    def run(self, model, image, width, height, drags, movable, steps, keep_frames=False, weight_mask=None,
            align_points=None, from_key=None, live=None, grey=False):
        """live: a live.LiveDrag (progress line, live preview, the user's stop); drags may hold
        pins (strokes.Drag.is_pin), sent as the drag's `pins`. from_key: resume from a result
        layer's stored latent instead of projecting."""
        from .job import EngineOutcome
        from .strokes import split_pins

        self._frames = [] if keep_frames else None
        drags, pins = split_pins(drags)
        with self._engine_errors_as_job_errors():
            self._load_model(model)
            fields = {"model": model, "output": "array", "cache": bool(self.options.reuse_projection)}
            # The engine finds the subject near the drag points and aligns it to the model.
            if align_points:
                fields["alignment"] = "auto"
                fields["align_points"] = [[round(x, 3), round(y, 3)] for x, y in align_points]
            settings = self.config.get("project_settings")
            if settings:
                fields["settings"] = settings
            if from_key:  # a result layer: the engine continues from that drag's latent if it can
                fields["from_key"] = from_key
            parts = [rgb_part("image", bytes(image), width, height)]
            if weight_mask is not None:
                parts.append(rgb_part("weight_mask", bytes(weight_mask), width, height, channels=1))
            self.progress.stage("project", 0, 1)
            projected = self.client.request(
                "project", fields, parts, progress=self._on_event, should_cancel=self.cancel
            )
            projection_id = projected.header.get("projection_id") or projected.header.get("latent_id")
            waypoints = None
            if any(d.waypoints for d in drags):
                waypoints = [list(d.waypoints) for d in drags]
            mask_part = None
            if movable is not None:
                mask_part = rgb_part("mask", bytes(movable), width, height, channels=1)
            frames_every = max(1, int(steps) // 24) if keep_frames else 0
            preview_every = live.preview_every(steps) if live is not None else 0
            self._frames_every = 1
            if preview_every and frames_every:  # the frames: every preview close to steps // 24
                self._frames_every = max(1, frames_every // preview_every) * preview_every
            preview_every = preview_every or frames_every
            self.progress.stage("drag", 0, steps)
            self._live = live
            stop = live.stop if live is not None else None
            if stop is not None:
                stop.install()
            try:
                options = live.drag_fields() if live is not None and preview_every else {}
                if grey:
                    options = dict(options, image_mode="grey")
                result = self._drag(drags, pins, projection_id, waypoints, mask_part, model, steps,
                                    preview_every, stop, options)
            finally:
                self._live = None
                if stop is not None:
                    stop.uninstall()
            header = result.header
            part = result.parts["image"]
            channels = 1 if len(part.shape) == 2 else 3  # grey when asked (an older engine: RGB)
            pixels, out_w, out_h = _array_image(part, keep_grey=True)
            box = header.get("box") or (0, 0, out_w, out_h)
            notes = []
            distances = header.get("distances") or []
            if header.get("stopped"):
                notes.append(
                    "stopped on request after %s steps: the result is the state reached"
                    % header.get("steps")
                )
            elif distances and not header.get("converged", True):
                notes.append(
                    "the handles stopped up to %.1f px short of their targets after %s steps "
                    "(more steps may help)" % (max(distances), header.get("steps"))
                )
            if from_key:  # why the engine projected after all (its latent gone, the layer changed)
                notes = list(projected.header.get("notes") or []) + notes
            frames = self._frames or []
            return EngineOutcome(
                pixels, out_w, out_h, header.get("steps"), frames, notes, box,
                latent_key=header.get("latent_key"), resumed=bool(projected.header.get("resumed")),
                alignment=projected.header.get("alignment"), channels=channels,
            )

    def _drag(self, drags, pins, projection_id, waypoints, mask_part, model, steps, preview_every, stop,
              options):
        return self.client.drag(
            [d.handle for d in drags],
            [d.target for d in drags],
            projection_id=projection_id,
            waypoints=waypoints,
            mask=mask_part,
            model=model,
            max_steps=int(steps),
            preview_every=preview_every,
            paste=self.options.paste,
            output="array",
            progress=self._on_event,
            should_cancel=self.cancel,
            pins=[p.handle for p in pins],
            should_stop=stop,
            **options
        )

    def close(self):
        if self.client is not None:
            try:
                self.client.close(grace=5.0)
            except Exception:  # closing must never hide the run's own outcome
                try:
                    self.client.kill()
                except Exception:
                    pass
            self.client = None


def progress_stage(header):
    from .progress import stage_of

    return stage_of(header.get("stage"))


def model_size(value):
    """(width, height) from a [w, h] pair of positive integers; None for anything else."""
    try:
        width, height = value
    except (TypeError, ValueError):
        return None
    if isinstance(width, bool) or isinstance(height, bool):
        return None
    if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
        return None
    return (width, height)


def _array_image(part, keep_grey=False):
    """(rgb bytes, width, height) from a uint8 array part [H, W, 3] (or [H, W] grey, made RGB
    unless keep_grey: then its bytes as they are)."""
    if part.kind != "array" or part.dtype != "uint8":
        raise EngineError("bad_frame", "the engine sent a %s image; expected a raw uint8 array" % part.kind)
    shape = list(part.shape)
    data = bytearray(part.data)
    if len(shape) == 2:
        height, width = shape
        if keep_grey:
            return data, width, height
        rgb = bytearray(width * height * 3)
        rgb[0::3] = data
        rgb[1::3] = data
        rgb[2::3] = data
        return rgb, width, height
    height, width, channels = shape
    if channels == 3:
        return data, width, height
    rgb = bytearray(width * height * 3)
    for c in range(3):
        rgb[c::3] = data[c::channels]
    return rgb, width, height
