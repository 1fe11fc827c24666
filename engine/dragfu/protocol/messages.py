"""Typed requests and their validation, and builders for the events the engine sends.

``parse_request(frame)`` turns a decoded frame into one of the request dataclasses below or raises
``ProtocolError`` with a stable code. Checks that need engine state (image bounds of a projection,
a model's resolution) happen in the server; everything that can be checked from the frame alone
happens here, so the fuzz tests can hammer it in-process.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dragfu.errors import DragfuError
from dragfu.protocol.frames import (
    MAX_ID_CHARS,
    SUPPORTED_PROTOCOL_VERSIONS,
    Frame,
    Part,
    numpy_array,
    request_id_of,
)
from dragfu_core.events import ErrorEvent, ProgressEvent, Result

REQUEST_TYPES = ("hello", "load_model", "project", "drag", "cancel", "stop", "shutdown", "echo")
EVENT_TYPES = ("progress", "result", "error")

# Every code an `error` frame can carry (docs/protocol.md lists what each means). Codes raised by
# the engine's own DragfuError subclasses are passed through unchanged.
ERROR_CODES = (
    "bad_frame",
    "truncated_frame",
    "payload_too_large",
    "unknown_type",
    "bad_version",
    "bad_request",
    "bad_image",
    "invalid_points",
    "unknown_model",
    "bad_model",
    "unsafe_model",
    "unsupported_model",
    "unknown_latent",
    "busy",
    "out_of_memory",
    "cancelled",
    "bad_input",
    "internal",
)

MAX_POINTS = 64
MAX_WAYPOINTS_PER_HANDLE = 256
MAX_STEPS = 100_000
MAX_IMAGE_SIDE = 8192
OUTPUT_FORMATS = ("png", "array")
IMAGE_MODES = ("rgb", "grey")  # a drag result's image: colour, or luma for a grey layer
ALIGNMENTS = ("crop", "auto")
PASTE_MODES = ("warp", "render")


class ProtocolError(DragfuError):
    """A request the engine refuses; becomes an `error` frame addressed to ``request_id``."""

    code = "bad_request"

    def __init__(self, code: str, message: str, *, hint: str | None = None, request_id: Any = None):
        super().__init__(message, hint=hint, code=code)
        self.request_id = request_id


# ----------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True)
class Hello:
    id: Any
    protocol: int
    client: str = ""


@dataclass(frozen=True)
class LoadModel:
    id: Any
    model: str


@dataclass(frozen=True)
class Project:
    id: Any
    model: str | None
    image: np.ndarray  # [H, W, 3] uint8, the crop the client sent, at its own size
    weight_mask: np.ndarray | None  # [H, W] float32 in [0, 1]
    settings: dict[str, Any]
    output: str
    preview_every: int
    cache: bool = True  # reuse / fill the engine's on-disk projection cache
    # How the image maps to the model's frame: "auto" (searched near align_points), "crop" (the
    # whole image, centred, uniform scale) or {"scale", "angle", "centre"} (image coordinates).
    alignment: str | dict[str, Any] = "crop"
    align_points: list[tuple[float, float]] = field(default_factory=list)
    # A drag result's `latent_key` (kept on disk): continue from that latent instead of projecting,
    # when the image is the one that drag produced; otherwise project (with a note).
    from_key: str | None = None


LATENT_KEY = re.compile(r"[0-9a-f]{32}")  # a file name in the cache: nothing else gets through


@dataclass(frozen=True)
class Drag:
    id: Any
    model: str | None
    latent_id: str | None  # a projection id or a previous drag's latent id
    seed: int | None  # ...or a seed: ws = mapping(z(seed), psi)
    psi: float
    handles: list[tuple[float, float]]
    targets: list[tuple[float, float]]
    waypoints: list[list[tuple[float, float]]] | None
    mask: np.ndarray | None  # [H, W] bool, True = may move
    method: str
    max_steps: int
    preview_every: int
    output: str
    drag_seed: int
    options: dict[str, Any] = field(default_factory=dict)
    paste: str = "warp"  # how a projected image gets the edit: "warp" its pixels, or "render"
    pins: list[tuple[float, float]] = field(default_factory=list)  # points that must stay put
    preview_interval: float = 0.0  # seconds: no preview sooner than this after the last one
    image_mode: str = "rgb"  # the result image: "rgb", or "grey" (Rec. 709 luma, for grey layers)


@dataclass(frozen=True)
class Cancel:
    id: Any
    target: Any  # the request id to cancel; None = whatever is running or queued
    # True (`stop`, or `cancel` with "keep": true): a drag ends at its next step and returns the
    # state reached as its normal result; False: the request ends with a `cancelled` error.
    keep: bool = False
    kind: str = "cancel"  # the request type, for the result's `request` field


@dataclass(frozen=True)
class Shutdown:
    id: Any


@dataclass(frozen=True)
class Echo:
    """Diagnostic: the engine sends the payload back untouched (transport checks, benchmarks)."""

    id: Any
    parts: dict[str, Part]


Request = Hello | LoadModel | Project | Drag | Cancel | Shutdown | Echo


def _bad(code: str, message: str, rid: Any, hint: str | None = None) -> ProtocolError:
    return ProtocolError(code, message, hint=hint, request_id=rid)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _int_field(header: dict, key: str, default: int, lo: int, hi: int, rid: Any) -> int:
    value = header.get(key, default)
    if value is None:
        return default
    if not _is_int(value) or not lo <= value <= hi:
        raise _bad("bad_request", f"'{key}' must be an integer in [{lo}, {hi}], got {value!r}", rid)
    return value


def _str_field(
    header: dict, key: str, rid: Any, *, required: bool = False, choices=None
) -> str | None:
    value = header.get(key)
    if value is None:
        if required:
            raise _bad("bad_request", f"'{key}' is required", rid)
        return None
    if not isinstance(value, str) or not value or len(value) > 4096:
        raise _bad("bad_request", f"'{key}' must be a non-empty string", rid)
    if choices is not None and value not in choices:
        raise _bad("bad_request", f"'{key}' must be one of {list(choices)}, got {value!r}", rid)
    return value


def parse_point(value: Any, what: str, rid: Any) -> tuple[float, float]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(_is_number(v) for v in value)
    ):
        raise _bad(
            "invalid_points",
            f"{what} must be [x, y] with two finite numbers, got {value!r}"[:300],
            rid,
        )
    return float(value[0]), float(value[1])


def parse_points(
    value: Any, what: str, rid: Any, *, max_points: int = MAX_POINTS
) -> list[tuple[float, float]]:
    if not isinstance(value, list) or not value:
        raise _bad("invalid_points", f"'{what}' must be a non-empty list of [x, y] points", rid)
    if len(value) > max_points:
        raise _bad("invalid_points", f"at most {max_points} {what}, got {len(value)}", rid)
    return [parse_point(v, f"{what}[{i}]", rid) for i, v in enumerate(value)]


def decode_image(part: Part, rid: Any, what: str = "image") -> np.ndarray:
    """A payload part as an RGB uint8 image [H, W, 3] (grey is repeated; alpha is dropped)."""
    if part.kind == "png":
        from PIL import Image

        try:
            with Image.open(io.BytesIO(part.data)) as im:
                if im.format != "PNG":
                    raise _bad("bad_image", f"'{what}' is {im.format}, not PNG", rid)
                w, h = im.size
                if not (1 <= w <= MAX_IMAGE_SIDE and 1 <= h <= MAX_IMAGE_SIDE):
                    raise _bad(
                        "bad_image", f"'{what}' is {w}x{h}; sides must be 1-{MAX_IMAGE_SIDE}", rid
                    )
                if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    array = (
                        (np.asarray(im, dtype=np.float64) / 257.0)
                        .round()
                        .clip(0, 255)
                        .astype(np.uint8)
                    )
                    array = np.repeat(array[:, :, None], 3, axis=2)
                else:
                    array = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except ProtocolError:
            raise
        except Exception as error:  # PIL raises many types for broken files
            raise _bad("bad_image", f"'{what}' is not a readable PNG: {error}"[:300], rid) from None
        return array
    array = numpy_array(part)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise _bad(
            "bad_image",
            f"'{what}' array must be [H, W], [H, W, 1|3|4], got {list(part.shape or ())}",
            rid,
        )
    h, w = array.shape[:2]
    if not (h <= MAX_IMAGE_SIDE and w <= MAX_IMAGE_SIDE):
        raise _bad("bad_image", f"'{what}' is {w}x{h}; sides must be 1-{MAX_IMAGE_SIDE}", rid)
    if part.dtype == "uint16":
        array = (array.astype(np.float64) / 257.0).round().astype(np.uint8)
    elif part.dtype == "float32":
        if not np.isfinite(array).all():
            raise _bad("bad_image", f"'{what}' float32 array has NaN or infinite values", rid)
        array = (array.clip(0.0, 1.0) * 255.0).round().astype(np.uint8)
    elif part.dtype != "uint8":
        raise _bad(
            "bad_image", f"'{what}' array must be uint8, uint16 or float32, got {part.dtype}", rid
        )
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3], dtype=np.uint8)


def decode_mask(part: Part, rid: Any, what: str) -> np.ndarray:
    """A payload part as a float32 mask [H, W] in [0, 1] (uint8: 0-255; PNG: its grey level)."""
    if part.kind == "png":
        grey = decode_image(part, rid, what).astype(np.float32).mean(axis=2)
        return grey / 255.0
    array = numpy_array(part)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim != 2:
        raise _bad(
            "bad_image", f"'{what}' must be a [H, W] array, got shape {list(array.shape)}", rid
        )
    if array.shape[0] > MAX_IMAGE_SIDE or array.shape[1] > MAX_IMAGE_SIDE:
        raise _bad("bad_image", f"'{what}' sides must be at most {MAX_IMAGE_SIDE}", rid)
    if part.dtype == "uint8":
        return array.astype(np.float32) / 255.0
    if part.dtype == "float32":
        if not np.isfinite(array).all():
            raise _bad("bad_image", f"'{what}' has NaN or infinite values", rid)
        return array.clip(0.0, 1.0).astype(np.float32)
    raise _bad("bad_image", f"'{what}' must be uint8 or float32, got {part.dtype}", rid)


def _check_parts(frame: Frame, allowed: tuple[str, ...], rid: Any) -> None:
    unknown = sorted(set(frame.parts) - set(allowed))
    if unknown:
        raise _bad(
            "bad_request",
            f"unexpected payload part(s) {unknown}; this request takes {list(allowed)}",
            rid,
        )


def check_protocol(header: dict, rid: Any) -> None:
    """Any request may carry ``protocol``; a version this engine does not speak is refused."""
    if "protocol" not in header:
        return
    version = header["protocol"]
    if not _is_int(version) or version not in SUPPORTED_PROTOCOL_VERSIONS:
        raise _bad(
            "bad_version",
            f"protocol version {version!r} is not supported (this engine speaks {list(SUPPORTED_PROTOCOL_VERSIONS)})",
            rid,
            hint="update the plug-in and the engine to the same release",
        )


def _parse_hello(frame: Frame, header: dict, rid: Any, kind: str) -> Request:
    """hello: the client's name and protocol version."""
    _check_parts(frame, (), rid)
    client = header.get("client", "")
    if not isinstance(client, str):
        raise _bad("bad_request", "'client' must be a string", rid)
    version = header.get("protocol")
    return Hello(
        rid, version if version is not None else SUPPORTED_PROTOCOL_VERSIONS[-1], client[:200]
    )


def _parse_load_model(frame: Frame, header: dict, rid: Any, kind: str) -> Request:
    """load_model: a model name or file."""
    _check_parts(frame, (), rid)
    return LoadModel(rid, _str_field(header, "model", rid, required=True))


def _parse_project(frame: Frame, header: dict, rid: Any, kind: str) -> Request:
    """project: the image (+ weight mask), settings, alignment, resume key."""
    _check_parts(frame, ("image", "weight_mask"), rid)
    if "image" not in frame.parts:
        raise _bad(
            "bad_request", "'project' needs an 'image' payload part (PNG or uint8 array)", rid
        )
    image = decode_image(frame.parts["image"], rid)
    weight_mask = None
    if "weight_mask" in frame.parts:
        weight_mask = decode_mask(frame.parts["weight_mask"], rid, "weight_mask")
        if weight_mask.shape != image.shape[:2]:
            raise _bad(
                "bad_request",
                f"'weight_mask' is {weight_mask.shape[1]}x{weight_mask.shape[0]} but the image is "
                f"{image.shape[1]}x{image.shape[0]}",
                rid,
            )
    settings = header.get("settings") or {}
    if not isinstance(settings, dict):
        raise _bad("bad_request", "'settings' must be an object", rid)
    cache = header.get("cache", True)
    if not isinstance(cache, bool):
        raise _bad("bad_request", "'cache' must be true or false", rid)
    alignment = header.get("alignment", "crop")
    if not (alignment in ALIGNMENTS or isinstance(alignment, dict)):
        raise _bad(
            "bad_request",
            f"'alignment' must be one of {list(ALIGNMENTS)} or an object "
            f"{{scale, angle, centre}}, got {alignment!r}",
            rid,
        )
    align_points = header.get("align_points")
    align_points = parse_points(align_points, "align_points", rid) if align_points else []
    if alignment == "auto" and not align_points:
        raise _bad("bad_request", "'alignment': 'auto' needs 'align_points' (the drag points)", rid)
    from_key = header.get("from_key")
    if from_key is not None and not (isinstance(from_key, str) and LATENT_KEY.fullmatch(from_key)):
        raise _bad("bad_request", "'from_key' must be a drag result's 'latent_key'", rid)
    return Project(
        rid,
        _str_field(header, "model", rid),
        image,
        weight_mask,
        settings,
        _str_field(header, "output", rid, choices=OUTPUT_FORMATS) or "png",
        _int_field(header, "preview_every", 0, 0, MAX_STEPS, rid),
        cache,
        alignment,
        align_points,
        from_key,
    )


def _parse_waypoints(waypoints: Any, handles: int, rid: Any) -> list | None:
    """A drag's waypoints: one list of points per handle (or none)."""
    if waypoints is None:
        return None
    if not isinstance(waypoints, list) or len(waypoints) != handles:
        raise _bad(
            "invalid_points",
            "'waypoints' must be a list with one list of points per handle",
            rid,
        )
    parsed: list[list[tuple[float, float]]] = []
    for i, points in enumerate(waypoints):
        if not isinstance(points, list) or len(points) > MAX_WAYPOINTS_PER_HANDLE:
            raise _bad(
                "invalid_points",
                f"waypoints[{i}] must be a list of at most {MAX_WAYPOINTS_PER_HANDLE} points",
                rid,
            )
        parsed.append([parse_point(p, f"waypoints[{i}][{j}]", rid) for j, p in enumerate(points)])
    return parsed


def _parse_drag(frame: Frame, header: dict, rid: Any, kind: str) -> Request:
    """drag: the start (projection, latent or seed), points, mask, settings."""
    _check_parts(frame, ("mask",), rid)
    latent_id = header.get("latent_id", header.get("projection_id"))
    if latent_id is not None and (
        not isinstance(latent_id, str) or not latent_id or len(latent_id) > 128
    ):
        raise _bad("bad_request", "'latent_id' / 'projection_id' must be a string", rid)
    seed = header.get("seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed < 2**32):
        raise _bad("bad_request", f"'seed' must be an integer in [0, 2**32), got {seed!r}", rid)
    if (latent_id is None) == (seed is None):
        raise _bad(
            "bad_request",
            "'drag' needs exactly one of 'projection_id', 'latent_id' or 'seed'",
            rid,
        )
    psi = header.get("psi", 1.0)
    if not _is_number(psi) or abs(psi) > 10:
        raise _bad("bad_request", f"'psi' must be a number in [-10, 10], got {psi!r}", rid)
    handles = parse_points(header.get("handles"), "handles", rid)
    targets = parse_points(header.get("targets"), "targets", rid)
    if len(handles) != len(targets):
        raise _bad("invalid_points", f"{len(handles)} handles but {len(targets)} targets", rid)
    waypoints = _parse_waypoints(header.get("waypoints"), len(handles), rid)
    mask = None
    if "mask" in frame.parts:
        mask = decode_mask(frame.parts["mask"], rid, "mask") >= 0.5
    options = header.get("options") or {}
    if not isinstance(options, dict):
        raise _bad("bad_request", "'options' must be an object", rid)
    pins = header.get("pins")
    pins = parse_points(pins, "pins", rid) if pins else []
    preview_interval = header.get("preview_interval", 0.0)
    if not _is_number(preview_interval) or not 0 <= preview_interval <= 3600:
        raise _bad(
            "bad_request",
            f"'preview_interval' must be seconds in [0, 3600], got {preview_interval!r}",
            rid,
        )
    return Drag(
        rid,
        _str_field(header, "model", rid),
        latent_id,
        seed,
        float(psi),
        handles,
        targets,
        waypoints,
        mask,
        _str_field(header, "method", rid) or "default",
        _int_field(header, "max_steps", 300, 1, MAX_STEPS, rid),
        _int_field(header, "preview_every", 0, 0, MAX_STEPS, rid),
        _str_field(header, "output", rid, choices=OUTPUT_FORMATS) or "png",
        _int_field(header, "drag_seed", 0, 0, 2**32 - 1, rid),
        options,
        _str_field(header, "paste", rid, choices=PASTE_MODES) or "warp",
        pins,
        float(preview_interval),
        _str_field(header, "image_mode", rid, choices=IMAGE_MODES) or "rgb",
    )


def _parse_cancel(frame: Frame, header: dict, rid: Any, kind: str) -> Request:
    """cancel / stop: the target request, keep or discard."""
    _check_parts(frame, (), rid)
    target = header.get("target")
    if target is not None and request_id_of({"id": target}) is None:
        raise _bad("bad_request", "'target' must be a request id (string or integer)", rid)
    keep = header.get("keep", kind == "stop")
    if not isinstance(keep, bool):
        raise _bad("bad_request", "'keep' must be true or false", rid)
    return Cancel(rid, target, keep, kind)


def _parse_shutdown(frame: Frame, header: dict, rid: Any, kind: str) -> Request:
    """shutdown."""
    _check_parts(frame, (), rid)
    return Shutdown(rid)


def _parse_echo(frame: Frame, header: dict, rid: Any, kind: str) -> Request:
    """echo: the payload comes back untouched."""
    return Echo(rid, dict(frame.parts))


_PARSERS = {
    "hello": _parse_hello,
    "load_model": _parse_load_model,
    "project": _parse_project,
    "drag": _parse_drag,
    "cancel": _parse_cancel,
    "stop": _parse_cancel,
    "shutdown": _parse_shutdown,
    "echo": _parse_echo,
}


def parse_request(frame: Frame) -> Request:
    """Validate a frame as a request; raises ``ProtocolError`` (with the request id when known)."""
    header = frame.header
    rid = request_id_of(header)
    if "id" in header and header["id"] is not None and rid is None:
        raise _bad(
            "bad_request", f"'id' must be a string (<= {MAX_ID_CHARS} chars) or an integer", None
        )
    kind = header.get("type")
    if kind not in REQUEST_TYPES:
        shown = kind if isinstance(kind, str) else type(kind).__name__
        raise _bad(
            "unknown_type",
            f"unknown request type {shown[:64]!r}; expected one of {list(REQUEST_TYPES)}",
            rid,
        )
    check_protocol(header, rid)
    return _PARSERS[kind](frame, header, rid, kind)


def check_points_inside(
    points: list[tuple[float, float]], size: tuple[int, int], what: str, rid: Any
) -> None:
    """Points must lie on the image they refer to: 0 <= x <= W, 0 <= y <= H."""
    width, height = size
    for i, (x, y) in enumerate(points):
        if not (0.0 <= x <= width and 0.0 <= y <= height):
            raise _bad(
                "invalid_points",
                f"{what}[{i}] = ({x:g}, {y:g}) is outside the {width}x{height} image",
                rid,
                hint="points are in the sent image's pixel coordinates (x right, y down)",
            )


# ----------------------------------------------------------------------------------------------
# Events: built with the typed events the client reads them back as (dragfu_core.events)


def result_header(request_id: Any, request: str, **fields: Any) -> dict[str, Any]:
    return Result.build(request_id, request, **fields).header


def error_header(request_id: Any, code: str, message: str, hint: str = "") -> dict[str, Any]:
    return ErrorEvent.build(request_id, code, message, hint).header


def progress_header(
    request_id: Any, stage: str, step: int, total: int, **fields: Any
) -> dict[str, Any]:
    return ProgressEvent.build(request_id, stage, step, total, **fields).header
