"""The requests' work: hello, load_model, project, drag (``Server``, on top of the runtime).

The server keeps models, projections and drag results in memory between requests (the last
``max_latents`` latents). Images are never resized here: a projection's ``PhotoFrame``
(dragfu.photo) maps between the sent image and the model's frame, and pastes the model's image
back into the sent one.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dragfu import __version__
from dragfu.errors import DragfuError
from dragfu.protocol import messages as m
from dragfu.protocol.backend import Backend
from dragfu.protocol.frames import (
    PROTOCOL_VERSION,
    SUPPORTED_PROTOCOL_VERSIONS,
    image_part,
)
from dragfu.protocol.previews import PreviewSender
from dragfu.protocol.runtime import Job, Runtime, log

DEFAULT_MAX_LATENTS = 8
Point = tuple[float, float]


@dataclass
class Latent:
    """A point in latent space the client can drag from: the generator to use, ws, coordinates."""

    model: str
    generator: Any
    ws: Any
    size: tuple[int, int]  # (width, height) of the client's image these coordinates refer to
    frame: Any = None  # dragfu.photo.PhotoFrame of a projected image; None for a seed's latent


@dataclass
class DragStart:
    """Where a drag starts: a stored latent (with its photo frame) or a seed's latent."""

    model: str
    generator: Any
    ws: Any
    size: tuple[int, int]  # (width, height) of the image the request's points refer to
    model_size: tuple[int, int]
    frame: Any = None


@dataclass
class DragView:
    """The client's image <-> the model's: through a projection's alignment, or the identity."""

    frame: Any  # PhotoFrame, or None for a seed's own image
    size: tuple[int, int]
    mask: np.ndarray | None
    paste: str

    def to_model(self, points, what: str = "point") -> list[Point]:
        if self.frame is None:
            return [(float(x), float(y)) for x, y in points]
        try:
            return self.frame.to_model(points, what)
        except DragfuError as error:
            raise m.ProtocolError("invalid_points", str(error)) from None

    def to_client(self, points) -> list[Point]:
        if self.frame is None:
            return [(float(x), float(y)) for x, y in points]
        return self.frame.to_client(points)

    def edited(self, image: np.ndarray) -> tuple[np.ndarray, list[int], Any]:
        """The client's image with the model's image applied: the pixels of the box that
        changed, the box, and the whole edit (a PhotoEdit; None for a seed's own image)."""
        width, height = self.size
        if self.frame is None:
            return image, [0, 0, width, height], None
        edit = self.frame.paste(image, self.mask, self.paste)
        x0, y0, x1, y1 = edit.box or (0, 0, width, height)
        return edit.image[y0:y1, x0:x1], [x0, y0, x1 - x0, y1 - y0], edit


# Rec. 709 luma weights on the 8-bit values, as the plug-in's composite.LUMA: a pixel the edit
# did not change, (g, g, g) from a grey layer, comes back as exactly g.
LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [H, W] (for a grey layer's result)."""
    return np.clip(np.rint(rgb[..., :3].astype(np.float32) @ LUMA), 0, 255).astype(np.uint8)


def _rounded(points: list[Point]) -> list[list[float]]:
    return [[round(x, 3), round(y, 3)] for x, y in points]


def _distances(points: list[Point], targets: list[Point]) -> list[float]:
    return [
        math.hypot(px - tx, py - ty) for (px, py), (tx, ty) in zip(points, targets, strict=False)
    ]


class Server(Runtime):
    """`dragfu serve`'s server: the runtime plus what each request does."""

    def __init__(
        self,
        backend: Backend,
        write: Callable[[bytes], Any],
        *,
        default_model: str = "toy",
        max_latents: int = DEFAULT_MAX_LATENTS,
        **runtime_options: Any,  # max_payload_bytes, idle_timeout (Runtime)
    ) -> None:
        super().__init__(backend, write, **runtime_options)
        self.default_model = default_model
        self.max_latents = max_latents
        self.models: dict[str, Any] = {}
        self.latents: collections.OrderedDict[str, Latent] = collections.OrderedDict()
        self.mean_images: dict[str, np.ndarray | None] = {}
        self._next_latent = 0
        # Drag results kept on disk (a result layer's parasite names the key): key -> latent id
        # while it is still in memory; the writes run beside the next request.
        self.latent_keys: dict[str, str] = {}
        self._saves: dict[str, threading.Thread] = {}

    # -- quick (main thread) -------------------------------------------------------------------

    def hello(self, request: m.Hello) -> None:
        try:
            info = self.backend.info()
        except DragfuError as error:
            self.send_error(request.id, error.code, str(error), error.hint)
            return
        self.send(
            m.result_header(
                request.id, "hello", protocol=PROTOCOL_VERSION,
                protocols=list(SUPPORTED_PROTOCOL_VERSIONS), engine="dragfu",
                engine_version=__version__, python=sys.version.split()[0], pid=os.getpid(),
                max_payload_bytes=self.max_payload_bytes, loaded_models=sorted(self.models),
                **info,
            )
        )  # fmt: skip

    # -- queued (worker thread) ----------------------------------------------------------------

    def run(self, job: Job) -> None:
        request = job.request
        if isinstance(request, m.LoadModel):
            self._load_model(job)
        elif isinstance(request, m.Project):
            self._project(job)
        elif isinstance(request, m.Drag):
            self._drag(job)
        else:  # pragma: no cover - dispatch only queues the three above
            raise m.ProtocolError("internal", f"cannot run {type(request).__name__}")

    def _model(self, name: str | None, job: Job) -> tuple[str, Any]:
        name = name or self.default_model
        if name not in self.models:
            self.send(m.progress_header(job.request.id, "load", 0, 1, model=name))
            self.check_cancel(job)
            self.models[name] = self.backend.load_model(name)
        return name, self.models[name]

    def _store_latent(self, prefix: str, latent: Latent) -> str:
        self._next_latent += 1
        latent_id = f"{prefix}{self._next_latent}"
        self.latents[latent_id] = latent
        while len(self.latents) > self.max_latents:
            dropped, _ = self.latents.popitem(last=False)
            log.info("forgetting latent %s (keeping %d)", dropped, self.max_latents)
        return latent_id

    def _mean_image(self, name: str, G: Any) -> np.ndarray | None:
        if name not in self.mean_images:
            mean_image = getattr(self.backend, "mean_image", None)
            self.mean_images[name] = None if mean_image is None else mean_image(G)
        return self.mean_images[name]

    # -- load_model ------------------------------------------------------------------------------

    def _load_model(self, job: Job) -> None:
        request: m.LoadModel = job.request
        start = time.perf_counter()
        name, G = self._model(request.model, job)
        model_width, model_height = self.backend.image_size(G)
        self.send(
            m.result_header(
                request.id, "load_model", model=name, resolution=[model_width, model_height],
                seconds=round(time.perf_counter() - start, 4),
            )
        )  # fmt: skip

    # -- project ---------------------------------------------------------------------------------

    def _project(self, job: Job) -> None:
        from dragfu.photo import PhotoFrame, choose_alignment

        request: m.Project = job.request
        start = time.perf_counter()
        name, G = self._model(request.model, job)
        model_width, model_height = self.backend.image_size(G)
        height, width = request.image.shape[:2]
        notes: list[str] = []
        if request.from_key is not None:
            resumed, note = self._resume(request, name, G)
            if resumed is not None:
                self._send_resumed(request, resumed, start)
                return
            notes.append(note)
        alignment, align_notes = choose_alignment(
            request.image, (model_width, model_height), request.alignment,
            request.align_points, lambda: self._mean_image(name, G),
        )  # fmt: skip
        notes += align_notes
        align_seconds = time.perf_counter() - start
        frame = PhotoFrame(request.image, alignment, before=None)
        # The model sees the aligned frame of the image, at its own size.
        outcome = self.backend.project(
            G, frame.model_image(), frame.model_weight(request.weight_mask), request.settings,
            self._project_progress(job), job.cancel, request.cache,
        )  # fmt: skip
        self.check_cancel(job)
        frame.before = outcome.reconstruction
        if frame.before is None:
            frame.before = self.backend.render(outcome.generator, outcome.ws)
        latent_id = self._store_latent(
            "p", Latent(name, outcome.generator, outcome.ws, (width, height), frame)
        )
        # The projection as it would sit in the image (the model's frame put back).
        shown = frame.paste(frame.before, None, "render").image
        fields = {
            **outcome.stats,  # the backend's numbers first: the protocol's own fields win
            "projection_id": latent_id, "latent_id": latent_id, "model": name,
            "size": [width, height], "model_size": [model_width, model_height],
            "alignment": alignment.to_dict(), "align_seconds": round(align_seconds, 4),
            "seconds": round(time.perf_counter() - start, 4),
        }  # fmt: skip
        if notes:
            fields["notes"] = notes
        self.send(
            m.result_header(request.id, "project", **fields),
            [image_part("image", shown, request.output)],
        )

    def _resume(self, request: m.Project, name: str, G: Any) -> tuple[Latent | None, str]:
        """The drag result ``from_key`` names, when it is this model's and this image's; else
        (None, why the image is projected instead)."""
        from dragfu.photo import PhotoFrame

        key = request.from_key
        latent = self.latents.get(self.latent_keys.get(key, ""))
        if latent is None:
            saving = self._saves.get(key)
            if saving is not None:
                saving.join()
            load = getattr(self.backend, "load_latent", None)
            stored = load(key, G) if load is not None else None
            if stored is not None:
                from dragfu.photo.alignment import Similarity

                alignment = Similarity.from_dict(stored.alignment, self.backend.image_size(G))
                frame = PhotoFrame(stored.photo, alignment, stored.before)
                latent = Latent(name, stored.generator, stored.ws, stored.size, frame)
        if latent is None or latent.frame is None:
            return (
                None,
                "the earlier drag's latent is no longer in the engine's cache: projected again",
            )
        if latent.model != name:
            return None, f"the earlier drag used model {latent.model!r}: projected again"
        photo = latent.frame.photo
        image = request.image
        if photo.shape != image.shape or np.abs(photo.astype(np.int16) - image).max() > 2:
            return None, "the layer has changed since the earlier drag: projected again"
        return latent, ""

    def _send_resumed(self, request: m.Project, latent: Latent, start: float) -> None:
        """A projection result without projecting: the drag result's latent, on the sent image."""
        frame = dataclasses.replace(latent.frame, photo=np.array(request.image))
        latent_id = self._store_latent(
            "p", Latent(latent.model, latent.generator, latent.ws, latent.size, frame)
        )
        model_width, model_height = self.backend.image_size(latent.generator)
        shown = frame.paste(frame.before, None, "render").image
        self.send(
            m.result_header(
                request.id, "project", projection_id=latent_id, latent_id=latent_id,
                model=latent.model, size=list(latent.size), model_size=[model_width, model_height],
                alignment=frame.alignment.to_dict(), align_seconds=0.0, cached=True,
                resumed=True, seconds=round(time.perf_counter() - start, 4),
            ),
            [image_part("image", shown, request.output)],
        )  # fmt: skip

    def _keep(self, latent_id: str) -> dict[str, Any]:
        """Write a drag result to disk (beside the next request); its key for the result."""
        latent = self.latents[latent_id]
        save = getattr(self.backend, "save_latent", None)
        if save is None or latent.frame is None:
            return {}
        from dragfu.project.latents import new_key

        key = new_key()
        self.latent_keys[key] = latent_id
        base = self.models.get(latent.model)
        thread = threading.Thread(
            target=self._save_latent,
            args=(save, key, base, latent),
            name="dragfu-save",
            daemon=True,
        )
        self._saves[key] = thread
        thread.start()
        return {"latent_key": key}

    def _save_latent(self, save: Callable[..., Any], key: str, G: Any, latent: Latent) -> None:
        try:
            save(key, G, latent)
        except Exception:  # a cache that cannot be written costs the next run a projection only
            log.exception("keeping the drag result %s failed", key)
        finally:
            self._saves.pop(key, None)

    def _project_progress(self, job: Job) -> Callable[[Any], None]:
        request: m.Project = job.request

        def on_progress(progress: Any) -> None:
            self.check_cancel(job)
            step = int(getattr(progress, "step", 0))
            total = int(getattr(progress, "total", 0))
            fields: dict[str, Any] = {}
            phase = getattr(progress, "stage", None)  # the projection's own stage: w, w+, tune
            if isinstance(phase, str):
                fields["phase"] = phase
            loss = getattr(progress, "loss", None)
            if isinstance(loss, int | float) and math.isfinite(loss):
                fields["loss"] = round(float(loss), 6)
            parts = None
            preview = getattr(progress, "preview", None)
            if request.preview_every and preview is not None and step % request.preview_every == 0:
                parts = [image_part("preview", np.asarray(preview), request.output)]
                fields["space"] = "model"
            self.send(m.progress_header(request.id, "project", step, total, **fields), parts)

        return on_progress

    # -- drag: start -> check points -> mask -> model coordinates -> drag -> paste -> result ----

    def _drag(self, job: Job) -> None:
        request: m.Drag = job.request
        start_time = time.perf_counter()
        start = self._drag_start(request, job)
        self._check_drag_points(request, start.size)
        mask, model_mask = self._drag_masks(request, start)
        view = DragView(start.frame, start.size, mask, request.paste)
        model_handles = view.to_model(request.handles, "handle")
        model_targets = view.to_model(request.targets, "target")
        self._check_handles_move(model_handles, model_targets)
        waypoints = None
        if request.waypoints is not None:
            waypoints = [view.to_model(points, "waypoint") for points in request.waypoints]
        extra: dict[str, Any] = {"stop": job.stop}
        options = dict(request.options)
        if request.preview_interval > 0:  # a drag setting of the real engine (DragSettings)
            options.setdefault("preview_interval", request.preview_interval)
        if request.pins:  # only when asked: a backend without pins still serves every other drag
            extra["pins"] = view.to_model(request.pins, "pin")
        previews = self._preview_sender(request, view)
        try:
            outcome = self.backend.drag(
                start.generator, start.ws, model_handles, model_targets, waypoints=waypoints,
                mask=model_mask, method=request.method, max_steps=request.max_steps,
                preview_every=request.preview_every,
                callback=self._drag_progress(job, view, previews), preview_ready=previews.ready,
                cancel=job.cancel, seed=request.drag_seed, options=options, **extra,
            )  # fmt: skip
        finally:
            previews.close()  # no preview after the drag's result or error
        self.check_cancel(job)
        self._send_drag_result(request, start, view, outcome, start_time)

    def _drag_start(self, request: m.Drag, job: Job) -> DragStart:
        """The stored latent the drag continues from, or the seed's latent on the model's image."""
        if request.latent_id is None:
            name, G = self._model(request.model, job)
            model_size = tuple(self.backend.image_size(G))
            ws = self.backend.seed_ws(G, request.seed, request.psi)
            return DragStart(name, G, ws, model_size, model_size)  # the model's own image
        latent = self.latents.get(request.latent_id)
        if latent is None:
            raise m.ProtocolError(
                "unknown_latent", f"no projection or latent {request.latent_id!r} in this engine",
                hint="project the image again (the engine keeps the latest few, and forgets all when it exits)",
            )  # fmt: skip
        self.latents.move_to_end(request.latent_id)
        if request.model is not None and request.model != latent.model:
            raise m.ProtocolError(
                "bad_request",
                f"latent {request.latent_id!r} belongs to model {latent.model!r}, not {request.model!r}",
            )
        model_size = tuple(self.backend.image_size(latent.generator))
        return DragStart(
            latent.model, latent.generator, latent.ws, latent.size, model_size, latent.frame
        )

    @staticmethod
    def _check_drag_points(request: m.Drag, size: tuple[int, int]) -> None:
        rid = request.id
        m.check_points_inside(request.handles, size, "handles", rid)
        m.check_points_inside(request.targets, size, "targets", rid)
        for i, points in enumerate(request.waypoints or []):
            m.check_points_inside(points, size, f"waypoints[{i}]", rid)
        m.check_points_inside(request.pins, size, "pins", rid)

    @staticmethod
    def _drag_masks(
        request: m.Drag, start: DragStart
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The request's mask (client image) and the same region in the model's frame."""
        mask = request.mask
        if mask is None:
            return None, None
        width, height = start.size
        if mask.shape != (height, width):
            raise m.ProtocolError(
                "bad_request",
                f"'mask' is {mask.shape[1]}x{mask.shape[0]} but the image it refers to is {width}x{height}",
            )
        if not mask.any():
            raise m.ProtocolError(
                "bad_request", "'mask' is empty: nothing may move", hint="select a region, or send no mask"
            )  # fmt: skip
        model_mask = start.frame.model_mask(mask) if start.frame is not None else mask
        if not model_mask.any():
            raise m.ProtocolError(
                "bad_request",
                "'mask': the movable region lies outside the region the model sees",
                hint="select the region around the drag points",
            )
        return mask, model_mask

    @staticmethod
    def _check_handles_move(model_handles: list[Point], model_targets: list[Point]) -> None:
        for i, ((hx, hy), (tx, ty)) in enumerate(zip(model_handles, model_targets, strict=True)):
            if math.hypot(hx - tx, hy - ty) < 0.5:
                raise m.ProtocolError(
                    "invalid_points",
                    f"drag {i + 1}: the handle is already at its target (less than half a model pixel away)",
                )

    def _drag_event(self, request: m.Drag, view: DragView, progress: Any, with_preview: bool):
        """One drag step's progress event (header, parts); with_preview: its preview pasted in."""
        points = view.to_client(getattr(progress, "points", []) or [])
        parts, fields = None, {}
        preview = getattr(progress, "preview", None)
        if with_preview and preview is not None:
            pixels, box, _ = view.edited(np.asarray(preview))
            parts = [image_part("preview", pixels, request.output)]
            fields["box"] = box
        pins = getattr(progress, "pins", None)
        if request.pins and pins:
            fields["pins"] = _rounded(view.to_client(pins))
        header = m.progress_header(
            request.id, "drag", int(getattr(progress, "step", 0)),
            int(getattr(progress, "max_steps", request.max_steps)),
            points=_rounded(points),
            distances=[round(d, 3) for d in _distances(points, request.targets)], **fields,
        )  # fmt: skip
        return header, parts

    def _drag_progress(self, job: Job, view: DragView, previews: PreviewSender):
        request: m.Drag = job.request

        def on_progress(progress: Any) -> None:
            self.check_cancel(job)
            if getattr(progress, "preview", None) is not None:
                previews.submit(progress)  # pasted and sent beside the drag (previews.py)
            else:
                self.send(*self._drag_event(request, view, progress, with_preview=False))

        return on_progress

    def _preview_sender(self, request: m.Drag, view: DragView) -> PreviewSender:
        return PreviewSender(
            make=lambda progress: self._drag_event(request, view, progress, with_preview=True),
            plain=lambda progress: self._drag_event(request, view, progress, with_preview=False),
            send=lambda event: self.send(*event),
            newest_only=request.preview_interval > 0,  # a live preview, not every frame kept
        )

    def _send_drag_result(
        self, request: m.Drag, start: DragStart, view: DragView, outcome: Any, start_time: float
    ) -> None:
        """Paste the dragged image into the client's, keep the new latent, send the result."""
        paste_start = time.perf_counter()
        after = np.asarray(outcome.image)
        pixels, box, edit = view.edited(after)
        if request.image_mode == "grey":
            pixels = luma(pixels)
        paste_seconds = time.perf_counter() - paste_start
        encode_start = time.perf_counter()
        part = image_part("image", pixels, request.output)
        encode_seconds = time.perf_counter() - encode_start
        # The next drag continues from the edited image.
        next_frame = start.frame.after_edit(edit, after) if edit is not None else None
        latent_id = self._store_latent(
            "l", Latent(start.model, start.generator, outcome.ws, start.size, next_frame)
        )
        points = view.to_client(outcome.points)
        extra = {"paste": request.paste if start.frame is not None else "model"}
        extra.update(self._keep(latent_id))  # latent_key: a later run resumes from here
        if getattr(outcome, "stopped", False):
            extra["stopped"] = True
        if request.pins and getattr(outcome, "pins", None):
            extra["pins"] = _rounded(view.to_client(outcome.pins))
        if edit is not None and "new_content_share" in edit.stats:
            extra["new_content_share"] = edit.stats["new_content_share"]
        self.send(
            m.result_header(
                request.id, "drag", latent_id=latent_id, model=start.model,
                size=list(start.size), model_size=list(start.model_size), box=box,
                points=_rounded(points),
                distances=[round(d, 3) for d in _distances(points, request.targets)],
                steps=outcome.steps, converged=outcome.converged, **extra,
                timings={
                    "drag_seconds": round(outcome.seconds, 4),
                    "seconds_per_step": round(outcome.seconds_per_step, 5),
                    "paste_seconds": round(paste_seconds, 4),
                    "encode_seconds": round(encode_seconds, 4),
                    "total_seconds": round(time.perf_counter() - start_time, 4),
                },
            ),
            [part],
        )  # fmt: skip
