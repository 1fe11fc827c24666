"""The server's behaviour, in-process over real pipes, with a fake engine behind it."""

from __future__ import annotations

import io
import os
import queue
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dragfu.protocol.frames import FrameReader, Part, encode_frame, numpy_array, numpy_part
from dragfu.protocol.server import Server

sys.path.insert(0, str(Path(__file__).resolve().parent / "protocol_vectors"))
from serve_fake_engine import FakeBackend  # noqa: E402

WAIT = 20.0  # generous: only reached when something is broken


class Harness:
    """A Server on two os.pipe()s, run in a thread; frames read back by a reader thread."""

    def __init__(self, backend: FakeBackend | None = None, **kwargs) -> None:
        self.backend = backend or FakeBackend()
        self.in_r, self.in_w = os.pipe()
        self.out_r, self.out_w = os.pipe()
        kwargs.setdefault("idle_timeout", 0)

        def write(data: bytes) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(self.out_w, view) :]

        self.server = Server(self.backend, write, **kwargs)
        self.exit_code: int | None = None
        self.events: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        threading.Thread(target=self._read_events, daemon=True).start()

    def _serve(self) -> None:
        self.exit_code = self.server.serve(lambda n: os.read(self.in_r, n))
        os.close(self.out_w)

    def _read_events(self) -> None:
        reader = FrameReader(lambda n: os.read(self.out_r, n))
        while True:
            try:
                frame = reader.read_frame()
            except OSError:
                frame = None
            self.events.put(frame)
            if frame is None:
                return

    def send_raw(self, data: bytes) -> None:
        os.write(self.in_w, data)

    def send(self, header: dict, parts: list[Part] | None = None) -> None:
        self.send_raw(encode_frame(header, parts))

    def next(self):
        frame = self.events.get(timeout=WAIT)
        assert frame is not None, "server closed its output"
        return frame

    def until_done(self, rid) -> list:
        """Every frame up to and including the result/error for ``rid``."""
        out = []
        while True:
            frame = self.next()
            out.append(frame)
            if frame.id == rid and frame.type in ("result", "error"):
                return out

    def request(self, header: dict, parts: list[Part] | None = None):
        self.send(header, parts)
        return self.until_done(header["id"])

    def close_input(self) -> None:
        os.close(self.in_w)

    def join(self) -> int:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "server did not exit"
        return self.exit_code

    def rest(self) -> list:
        """Frames left after the server exited."""
        out = []
        while (frame := self.events.get(timeout=WAIT)) is not None:
            out.append(frame)
        return out


@pytest.fixture
def harness():
    created = []

    def make(backend=None, **kwargs):
        h = Harness(backend, **kwargs)
        created.append(h)
        return h

    yield make
    for h in created:
        if h.thread.is_alive():
            try:
                h.close_input()
            except OSError:
                pass
            h.server.cancel(None)
            h.thread.join(WAIT)


def terminal(frames):
    return frames[-1]


def rgb_array_part(name: str, image: np.ndarray) -> Part:
    return numpy_part(name, image)


# ---------------------------------------------------------------------------------------------


def test_the_fake_and_the_real_backend_implement_the_backend_protocol():
    from dragfu.protocol.backend import Backend
    from dragfu.protocol.torch_backend import EngineBackend

    assert isinstance(FakeBackend(), Backend) and isinstance(FakeBackend(photo=True), Backend)
    assert isinstance(EngineBackend("cpu"), Backend)
    assert not isinstance(object(), Backend)


def test_hello_reports_protocol_engine_devices_and_models(harness):
    h = harness()
    result = terminal(h.request({"type": "hello", "id": "h", "protocol": 1}))
    assert result.type == "result" and result.header["request"] == "hello"
    assert result.header["protocol"] == 1 and 1 in result.header["protocols"]
    assert result.header["engine_version"]
    assert result.header["devices"][0]["name"] == "cpu"
    assert [m["name"] for m in result.header["models"]] == ["fake"]


def test_wrong_protocol_version_is_refused_and_server_stays_ready(harness):
    h = harness()
    error = terminal(h.request({"type": "hello", "id": "h", "protocol": 2}))
    assert error.type == "error" and error.header["code"] == "bad_version"
    assert error.header["hint"]
    assert terminal(h.request({"type": "hello", "id": "h2"})).type == "result"


def test_load_model_reports_progress_then_resolution(harness):
    h = harness()
    frames = h.request({"type": "load_model", "id": "m", "model": "fake"})
    assert [f.type for f in frames] == ["progress", "result"]
    assert frames[0].header["stage"] == "load"
    assert frames[1].header["resolution"] == [16, 16]
    # Kept in memory: a second load does not call the backend again.
    h.request({"type": "load_model", "id": "m2", "model": "fake"})
    assert [c for c in h.backend.calls if c[0] == "load_model"] == [
        ("load_model", {"name": "fake"})
    ]


@pytest.mark.parametrize(
    ("model", "code", "hint_word"),
    [
        ("missing", "unknown_model", "models list"),
        ("corrupt", "bad_model", ""),
        ("huge", "out_of_memory", "--device cpu"),
    ],
)
def test_model_errors_have_stable_codes_and_leave_server_ready(harness, model, code, hint_word):
    h = harness()
    error = terminal(h.request({"type": "load_model", "id": "m", "model": model}))
    assert error.type == "error" and error.header["code"] == code
    assert hint_word in error.header.get("hint", "")
    assert "\n" not in error.header["message"]
    ok = terminal(
        h.request({"type": "drag", "id": "d", "seed": 1, "handles": [[2, 2]], "targets": [[5, 2]]})
    )
    assert ok.type == "result"


class RecordingBackend(FakeBackend):
    """The fake, keeping what it returned, its outcomes made unlike the fake's own constants (an
    image with a pattern, points off the targets, a latent of its own, PSNR and SSIM chosen here),
    so that a test sees the server pass on what the engine gave, not what the fake always says."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.outcomes: list = []

    def project(self, *args, **kwargs):
        outcome = super().project(*args, **kwargs)
        outcome.stats = {**outcome.stats, "psnr": 31.25, "ssim": 0.8125}
        self.outcomes.append(outcome)
        return outcome

    def drag(self, *args, **kwargs):
        outcome = super().drag(*args, **kwargs)
        rng = np.random.default_rng(len(self.outcomes))
        outcome.image = rng.integers(0, 256, outcome.image.shape, dtype=np.uint8)
        outcome.points = [(x - 0.25, y + 0.125) for x, y in outcome.points]
        outcome.ws = rng.standard_normal(np.shape(outcome.ws)).astype(np.float32)
        self.outcomes.append(outcome)
        return outcome


def test_drag_from_seed_streams_progress_and_returns_image_points_latent(harness):
    h = harness(RecordingBackend())
    frames = h.request(
        {"type": "drag", "id": "d", "seed": 4, "psi": 0.5, "handles": [[2.5, 2.5]], "targets": [[8.5, 2.5]],
         "max_steps": 50, "output": "array"}
    )  # fmt: skip
    progress = [f for f in frames if f.type == "progress" and f.header["stage"] == "drag"]
    result = terminal(frames)
    assert result.type == "result", result.header
    steps = [p.header["step"] for p in progress]
    assert steps == sorted(steps) and steps[0] == 0
    distances = [p.header["distances"][0] for p in progress]
    assert distances[0] == pytest.approx(6.0) and distances[-1] < distances[0]
    # What the engine returned, passed on: its points (a seed image is the model's own size),
    # its image pixel for pixel, its step count.
    outcome = h.backend.outcomes[-1]
    assert result.header["points"] == [list(p) for p in outcome.points] == [[8.25, 2.625]]
    assert result.header["size"] == [16, 16]
    image = numpy_array(result.parts["image"])
    assert image.dtype == np.uint8 and np.array_equal(image, outcome.image)
    assert result.header["steps"] == outcome.steps == progress[-1].header["step"]
    assert result.header["timings"]["total_seconds"] >= 0
    # The engine was given the seed's latent at the request's psi (not the default 0.7).
    sent = np.asarray(h.backend.calls[-1][1]["ws"])
    assert np.array_equal(sent, h.backend.seed_ws(None, 4, 0.5))
    assert not np.array_equal(sent, h.backend.seed_ws(None, 4, 0.7))
    # Continue dragging from the result's latent.
    again = terminal(
        h.request(
            {
                "type": "drag",
                "id": "d2",
                "latent_id": result.header["latent_id"],
                "handles": [[8.5, 2.5]],
                "targets": [[8.5, 9.5]],
            }
        )
    )
    assert again.type == "result"
    # Continuing from latent_id gives the engine the latent the first drag returned.
    assert np.array_equal(np.asarray(h.backend.calls[-1][1]["ws"]), np.asarray(outcome.ws))


def test_project_then_drag_maps_points_between_sent_image_and_model(harness):
    h = harness(RecordingBackend())
    image = np.random.default_rng(0).integers(
        0, 255, (24, 32, 3), dtype=np.uint8
    )  # 32 wide, 24 high
    weight = np.ones((24, 32), dtype=np.float32)
    frames = h.request(
        {"type": "project", "id": "p", "settings": {"steps": 4}, "output": "png"},
        [rgb_array_part("image", image), numpy_part("weight_mask", weight)],
    )
    result = terminal(frames)
    assert result.type == "result", result.header
    assert [
        f.header["step"] for f in frames if f.type == "progress" and f.header["stage"] == "project"
    ] == [1, 2, 3, 4]
    assert result.header["size"] == [32, 24] and result.header["model_size"] == [16, 16]
    assert (result.header["psnr"], result.header["ssim"]) == (31.25, 0.8125)  # the engine's
    with Image.open(io.BytesIO(result.parts["image"].data)) as png:
        assert png.size == (32, 24)  # reconstruction comes back at the sent size
    call = [c for c in h.backend.calls if c[0] == "project"][-1][1]
    # The model sees the aligned frame ("crop": the whole image, centred, one scale: 2).
    assert call["shape"] == (16, 16, 3) and call["weight"] == (16, 16) and call["cache"] is True
    assert result.header["alignment"]["scale"] == pytest.approx(2.0)
    assert result.header["alignment"]["centre"] == [16.0, 12.0]

    mask = np.zeros((24, 32), dtype=np.uint8)
    mask[:, 8:24] = 255
    drag = terminal(
        h.request(
            {"type": "drag", "id": "d", "projection_id": result.header["projection_id"],
             "handles": [[8, 12]], "targets": [[16, 18]], "waypoints": [[[12, 12]]], "output": "array"},
            [numpy_part("mask", mask)],
        )
    )  # fmt: skip
    assert drag.type == "result", drag.header
    call = h.backend.calls[-1][1]
    # model = (image - centre (16, 12)) / 2 + (8, 8)
    assert call["handles"] == [pytest.approx((4.0, 8.0))]
    assert call["targets"] == [pytest.approx((8.0, 11.0))]
    assert call["waypoints"] == [[pytest.approx((6.0, 8.0))]]
    assert call["mask"] == (16, 16)
    # The engine's points (model coordinates) mapped back through the alignment.
    ((mx, my),) = h.backend.outcomes[-1].points
    assert (mx, my) == (pytest.approx(7.75), pytest.approx(11.125))
    assert drag.header["points"] == [
        pytest.approx([(mx - 8) * 2 + 16, (my - 8) * 2 + 12], abs=1e-3)
    ]
    # Only the changed box comes back, and nothing outside the movable columns 8..24 changed.
    x, y, w, h_ = drag.header["box"]
    assert numpy_array(drag.parts["image"]).shape == (h_, w, 3)
    assert 8 <= x and x + w <= 24 and w > 0


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        (
            {"handles": [[40, 2]], "targets": [[5, 2]]},
            "invalid_points",
        ),  # outside the 16x16 seed image
        ({"handles": [[2, 2]], "targets": [[2.1, 2]]}, "invalid_points"),  # already there
        ({"handles": [[2, 2]], "targets": [[5, 2]], "waypoints": [[[99, 1]]]}, "invalid_points"),
        ({"handles": [[2, 2]], "targets": [[5, 2]], "method": "crash"}, "internal"),
        ({"handles": [[2, 2]], "targets": [[5, 2]], "method": "oom"}, "out_of_memory"),
    ],
)
def test_bad_drags_get_stable_codes_and_server_stays_ready(harness, fields, code):
    h = harness()
    error = terminal(h.request({"type": "drag", "id": "bad", "seed": 0, **fields}))
    assert error.type == "error" and error.header["code"] == code, error.header
    assert "\n" not in error.header["message"]
    assert terminal(h.request({"type": "hello", "id": "h"})).type == "result"
    ok = terminal(
        h.request({"type": "drag", "id": "d", "seed": 0, "handles": [[2, 2]], "targets": [[5, 2]]})
    )
    assert ok.type == "result"


def test_unknown_latent_and_wrong_mask_size(harness):
    h = harness()
    error = terminal(
        h.request(
            {
                "type": "drag",
                "id": "d",
                "latent_id": "p99",
                "handles": [[1, 1]],
                "targets": [[3, 3]],
            }
        )
    )
    assert error.header["code"] == "unknown_latent" and error.header["hint"]
    error = terminal(
        h.request(
            {"type": "drag", "id": "d", "seed": 1, "handles": [[1, 1]], "targets": [[3, 3]]},
            [numpy_part("mask", np.ones((8, 8), dtype=np.uint8))],
        )
    )
    assert error.header["code"] == "bad_request" and "mask" in error.header["message"]


def test_cancel_stops_a_running_drag_within_a_step(harness):
    # A 1024 px fake: the handle needs ~1400 one-pixel steps (10 ms each) to arrive.
    backend = FakeBackend(resolution=1024, step_seconds=0.01)
    h = harness(backend)
    h.send(
        {
            "type": "drag",
            "id": "slow",
            "seed": 0,
            "handles": [[0, 0]],
            "targets": [[1000, 1000]],
            "max_steps": 100000,
        }
    )
    first = h.next()
    assert first.type == "progress"
    h.send({"type": "cancel", "id": "c", "target": "slow"})
    frames = h.until_done("slow")
    if not any(f.id == "c" for f in frames):  # the two answers may come in either order
        frames += h.until_done("c")
    cancel_ack = [f for f in frames if f.id == "c"]
    assert cancel_ack[0].type == "result" and cancel_ack[0].header["cancelled"] == ["slow"]
    error = [f for f in frames if f.id == "slow" and f.type != "progress"]
    assert error[0].type == "error" and error[0].header["code"] == "cancelled"
    # It stopped long before reaching the target; and it stopped for good: no step after the error.
    steps_at_error = backend.steps_run
    assert steps_at_error < 1000
    assert terminal(h.request({"type": "hello", "id": "h0"})).type == "result"
    assert backend.steps_run == steps_at_error
    # ... and the server is ready for more.
    assert terminal(h.request({"type": "hello", "id": "h"})).type == "result"


def test_cancel_of_queued_request_never_runs_it(harness):
    backend = FakeBackend(step_seconds=0.01)
    h = harness(backend)
    h.send({"type": "drag", "id": "a", "seed": 0, "handles": [[0, 0]], "targets": [[10, 0]]})
    h.send({"type": "drag", "id": "b", "seed": 0, "handles": [[0, 0]], "targets": [[9, 0]]})
    h.send({"type": "cancel", "id": "c", "target": "b"})
    frames = h.until_done("a")
    frames += (
        h.until_done("b") if not any(f.id == "b" and f.type == "error" for f in frames) else []
    )
    by_id = {(f.id, f.type): f for f in frames}
    assert by_id[("a", "result")]
    assert by_id[("b", "error")].header["code"] == "cancelled"
    assert not any(f.id == "b" and f.type == "progress" for f in frames)
    assert len([c for c in backend.calls if c[0] == "drag"]) == 1


def test_shutdown_cancels_work_answers_last_and_exits(harness):
    backend = FakeBackend(step_seconds=0.02)
    h = harness(backend)
    h.send(
        {
            "type": "drag",
            "id": "slow",
            "seed": 0,
            "handles": [[0, 0]],
            "targets": [[16, 16]],
            "max_steps": 100000,
        }
    )
    assert h.next().type == "progress"
    h.send({"type": "shutdown", "id": "bye"})
    assert h.join() == 0
    frames = [f for f in h.rest()]
    assert frames[-1].id == "bye" and frames[-1].type == "result"
    assert any(
        f.id == "slow" and f.type == "error" and f.header["code"] == "cancelled" for f in frames
    )


def test_end_of_input_finishes_queued_work_then_exits(harness):
    h = harness()
    h.send({"type": "drag", "id": "d", "seed": 0, "handles": [[0, 0]], "targets": [[5, 0]]})
    h.close_input()
    assert h.join() == 0
    frames = h.rest()
    assert frames[-1].id == "d" and frames[-1].type == "result"


def test_client_vanishing_mid_request_stops_the_server(harness):
    backend = FakeBackend(step_seconds=0.01)
    h = harness(backend)
    h.send(
        {
            "type": "drag",
            "id": "slow",
            "seed": 0,
            "handles": [[0, 0]],
            "targets": [[16, 16]],
            "max_steps": 100000,
        }
    )
    assert backend.drag_started.wait(WAIT)
    os.close(h.out_r)  # the client's end of stdout is gone: the next write fails with EPIPE
    assert h.join() == 0
    assert backend.steps_run < 1000


def test_idle_timeout_exits_cleanly(harness):
    h = harness(idle_timeout=0.2)
    assert h.join() == 0


def test_bad_frames_get_errors_and_the_stream_stays_in_sync(harness):
    h = harness(max_payload_bytes=64)
    h.send_raw(b"not json at all\n")
    assert h.next().header["code"] == "bad_frame"
    h.send_raw(
        b'{"type":"echo","id":"big","payload_length":100,"payload":{"kind":"png"}}\n'
        + b"\x00" * 100
    )
    error = h.next()
    assert error.header["code"] == "payload_too_large" and error.id == "big"
    h.send({"type": "frobnicate", "id": "u"})
    assert h.next().header["code"] == "unknown_type"
    echo = terminal(h.request({"type": "echo", "id": "e"}, [Part("blob", "png", b"0123456789")]))
    assert echo.parts["blob"].data == b"0123456789"


def test_truncated_frame_at_end_of_input_is_reported_then_exit(harness):
    h = harness()
    h.send_raw(b'{"type":"echo","id":"t","payload_length":10,"payload":{"kind":"png"}}\nabc')
    h.close_input()
    assert h.join() == 0
    frames = h.rest()
    assert [(f.type, f.header.get("code"), f.id) for f in frames] == [
        ("error", "truncated_frame", "t")
    ]


def test_a_grey_result_is_the_luma_of_the_colour_one(harness):
    """`image_mode: grey` (a grey layer's run): the result's part is [H, W], the Rec. 709 luma of
    the colour result, and a pixel that came in grey and did not change comes back as it was."""
    from dragfu.protocol.handlers import luma

    h = harness(FakeBackend(photo=True))
    rng = np.random.default_rng(0)
    grey_in = rng.integers(0, 256, (20, 40), dtype=np.uint8)
    image = np.repeat(grey_in[..., None], 3, axis=-1)
    results = {}
    for mode in ("rgb", "grey"):
        projection = terminal(
            h.request({"type": "project", "id": f"p{mode}"}, [rgb_array_part("image", image)])
        )
        results[mode] = terminal(
            h.request(
                {"type": "drag", "id": f"d{mode}", "output": "array", "image_mode": mode,
                 "projection_id": projection.header["projection_id"], "handles": [[4, 4]],
                 "targets": [[30, 4]]}
            )
        )  # fmt: skip
    colour = numpy_array(results["rgb"].parts["image"])
    grey = numpy_array(results["grey"].parts["image"])
    assert colour.ndim == 3 and grey.shape == colour.shape[:2]
    assert np.array_equal(grey, luma(colour))
    x, y, w, hgt = results["grey"].header["box"]
    still = (colour == image[y : y + hgt, x : x + w]).all(-1)
    assert still.any() and np.array_equal(grey[still], grey_in[y : y + hgt, x : x + w][still])
    bad = terminal(h.request({"type": "drag", "id": "x", "seed": 1, "handles": [[1, 1]],
                              "targets": [[3, 1]], "image_mode": "cmyk"}))  # fmt: skip
    assert bad.type == "error" and "image_mode" in bad.header["message"]


def test_drag_previews_arrive_at_the_sent_size(harness):
    h = harness()
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    projection = terminal(
        h.request({"type": "project", "id": "p"}, [rgb_array_part("image", image)])
    )
    frames = h.request(
        {"type": "drag", "id": "d", "projection_id": projection.header["projection_id"], "handles": [[4, 4]],
         "targets": [[30, 4]], "preview_every": 3}
    )  # fmt: skip
    previews = [f for f in frames if f.type == "progress" and "preview" in f.parts]
    assert previews and all(f.header["step"] % 3 == 0 for f in previews)
    with Image.open(io.BytesIO(previews[0].parts["preview"].data)) as png:
        assert png.size == (40, 20)


def _slow_previews(monkeypatch, seconds: float, fail: bool = False) -> None:
    """Every preview's paste takes `seconds` (as a big photo's does on a CPU), or fails."""
    from dragfu.protocol import handlers

    edited = handlers.DragView.edited

    def slow(self, image):
        time.sleep(seconds)
        if fail:
            raise ValueError("paste failed")
        return edited(self, image)

    monkeypatch.setattr(handlers.DragView, "edited", slow)


def _projected(h) -> str:
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    projection = terminal(
        h.request({"type": "project", "id": "p"}, [rgb_array_part("image", image)])
    )
    return projection.header["projection_id"]


def test_a_slow_preview_paste_does_not_hold_up_the_drag(harness, monkeypatch):
    """Previews are pasted beside the drag: the steps after one go out while it is pasted (and
    render no preview of their own meanwhile, nor for nine times its cost after), every step is
    reported once, and the result waits for the preview in hand."""
    _slow_previews(monkeypatch, 0.4)
    h = harness()
    frames = h.request(
        {"type": "drag", "id": "d", "projection_id": _projected(h), "handles": [[4, 4]],
         "targets": [[30, 4]], "preview_every": 1, "max_steps": 6, "preview_interval": 0.01}
    )  # fmt: skip
    assert frames[-1].type == "result"
    steps = [f.header["step"] for f in frames if f.type == "progress"]
    assert sorted(steps) == list(range(len(steps))) and len(steps) >= 4
    with_picture = [f.header["step"] for f in frames if "preview" in f.parts]
    assert with_picture == [0]  # the rest came while it was pasted, or in its quiet time
    assert steps.index(0) > steps.index(1)  # the first preview arrived after later steps
    assert "box" in frames[steps.index(0)].header


def test_the_preview_sender_keeps_previews_to_a_tenth_of_the_time():
    from types import SimpleNamespace

    from dragfu.protocol.previews import PREVIEW_SPACING, PreviewSender

    sent, entered, release = [], threading.Event(), threading.Event()

    def make(progress):
        if progress.step == 1:
            entered.set()
            release.wait(WAIT)  # a paste that takes as long as the test wants
        else:
            time.sleep(0.1)
        return {"step": progress.step, "picture": True}, None

    sender = PreviewSender(
        make=make, plain=lambda p: ({"step": p.step, "picture": False}, None),
        send=lambda event: sent.append(event[0]),
    )  # fmt: skip
    assert sender.ready()
    sender.submit(SimpleNamespace(step=1, preview_seconds=0.02))
    assert not sender.ready()  # busy pasting
    assert entered.wait(WAIT)
    sender.submit(SimpleNamespace(step=2))  # a backend that did not ask: it waits...
    sender.submit(SimpleNamespace(step=3))  # ...and the newest replaces it
    assert sent == [{"step": 2, "picture": False}]
    release.set()
    sender.close()
    assert sent[1:] == [{"step": 1, "picture": True}, {"step": 3, "picture": True}]
    # Step 3 cost 0.1 s: none wanted for about nine times that.
    quiet = sender._quiet_until - time.perf_counter()
    assert not sender.ready() and 0.5 < quiet <= PREVIEW_SPACING * 0.3


def test_without_an_interval_every_preview_keeps_its_picture(harness, monkeypatch):
    """A client that keeps every frame (no preview_interval: `keep frames`, the CLI) gets each
    preview, still pasted beside the drag."""
    _slow_previews(monkeypatch, 0.1)
    h = harness()
    frames = h.request(
        {"type": "drag", "id": "d", "projection_id": _projected(h), "handles": [[4, 4]],
         "targets": [[30, 4]], "preview_every": 2, "max_steps": 6}
    )  # fmt: skip
    steps = [f.header["step"] for f in frames if f.type == "progress"]
    with_picture = [f.header["step"] for f in frames if "preview" in f.parts]
    assert sorted(steps) == list(range(len(steps)))
    assert with_picture == [s for s in range(len(steps)) if s % 2 == 0]
    assert frames[-1].type == "result"


def test_a_failing_preview_paste_ends_the_drag_with_an_error(harness, monkeypatch):
    _slow_previews(monkeypatch, 0.05, fail=True)
    h = harness()
    frames = h.request(
        {"type": "drag", "id": "d", "projection_id": _projected(h), "handles": [[4, 4]],
         "targets": [[30, 4]], "preview_every": 1, "max_steps": 6}
    )  # fmt: skip
    assert frames[-1].type == "error" and "paste failed" in frames[-1].header["message"]
    ping = terminal(h.request({"type": "hello", "id": "after"}))
    assert ping.type == "result"  # the engine serves on


def test_latents_are_forgotten_oldest_first(harness):
    h = harness(max_latents=2)
    ids = []
    for i in range(3):
        r = terminal(
            h.request(
                {"type": "drag", "id": f"d{i}", "seed": i, "handles": [[1, 1]], "targets": [[3, 1]]}
            )
        )
        ids.append(r.header["latent_id"])
    error = terminal(
        h.request(
            {
                "type": "drag",
                "id": "x",
                "latent_id": ids[0],
                "handles": [[1, 1]],
                "targets": [[3, 1]],
            }
        )
    )
    assert error.header["code"] == "unknown_latent"
    ok = terminal(
        h.request(
            {
                "type": "drag",
                "id": "y",
                "latent_id": ids[2],
                "handles": [[1, 1]],
                "targets": [[3, 1]],
            }
        )
    )
    assert ok.type == "result"


class BrokenInfoBackend(FakeBackend):
    def info(self) -> dict:
        raise RuntimeError("device query exploded")


def test_a_bug_in_a_quick_request_is_an_internal_error_not_a_dead_server(harness):
    h = harness(BrokenInfoBackend())
    error = terminal(h.request({"type": "hello", "id": "h"}))
    assert error.type == "error" and error.header["code"] == "internal"
    assert "device query exploded" in error.header["message"]
    echo = terminal(h.request({"type": "echo", "id": "e"}))
    assert echo.type == "result"


def test_real_drag_stops_at_the_step_during_which_cancel_arrives(tmp_path):
    """With the real engine: a cancel that arrives during step 2 means no step 3 is computed."""
    from dragfu.models import save_generator
    from dragfu.protocol.frames import read_all
    from dragfu.protocol.server import EngineBackend
    from tests.conftest import make_tiny_generator

    model = str(save_generator(make_tiny_generator(), tmp_path / "tiny.safetensors"))
    frames = []

    def write(data: bytes) -> None:
        for frame in read_all(data):
            frames.append(frame)
            if (
                frame.type == "progress"
                and frame.header.get("stage") == "drag"
                and frame.header["step"] == 2
            ):
                server.cancel("d")  # as the main thread would, while the worker is inside step 2

    server = Server(EngineBackend("cpu"), write, idle_timeout=0)
    request = {
        "type": "drag",
        "id": "d",
        "model": model,
        "seed": 0,
        "handles": [[8, 8]],
        "targets": [[24, 20]],
        "max_steps": 50,
    }
    server.dispatch(read_all(encode_frame(request))[0])
    job = server._running = server._queued.popleft()
    server._run_job(job)  # the worker's part, synchronously
    drag_steps = [
        f.header["step"] for f in frames if f.type == "progress" and f.header.get("stage") == "drag"
    ]
    assert drag_steps == [0, 1, 2]
    assert frames[-1].type == "error" and frames[-1].header["code"] == "cancelled"


def test_oversized_payload_is_refused_before_it_is_sent(harness):
    h = harness(max_payload_bytes=64)
    # Only the header: the refusal must not wait for the (huge) payload to arrive.
    h.send_raw(
        b'{"type":"echo","id":"huge","payload_length":1000000000000,"payload":{"kind":"png"}}\n'
    )
    error = h.next()
    assert (error.type, error.id, error.header["code"]) == ("error", "huge", "payload_too_large")
    h.send_raw(b"x" * 100)  # the client gives up mid-payload and goes away
    h.close_input()
    assert h.join() == 0
    assert [(f.header["code"], f.id) for f in h.rest()] == [("truncated_frame", "huge")]


@pytest.mark.parametrize(
    "stop_request",
    [{"type": "stop", "target": "slow"}, {"type": "cancel", "target": "slow", "keep": True}],
)
def test_stop_keeps_the_state_reached_as_a_normal_result(harness, stop_request):
    # The fake handle moves 1 px per step from (0, 0) towards (1000, 0): stopped early, the result
    # must be a normal drag result whose handle lies between the start and the target.
    backend = FakeBackend(resolution=1024, step_seconds=0.01)
    h = harness(backend)
    h.send(
        {"type": "drag", "id": "slow", "seed": 0, "handles": [[0, 0]], "targets": [[1000, 0]],
         "max_steps": 100000}
    )  # fmt: skip
    seen = 0
    while seen < 5:
        frame = h.next()
        seen += frame.type == "progress"
    h.send({**stop_request, "id": "s"})
    frames = h.until_done("slow")
    if not any(f.id == "s" for f in frames):
        frames += h.until_done("s")
    ack = [f for f in frames if f.id == "s"][0]
    assert ack.type == "result" and ack.header["stopped"] == ["slow"]
    assert ack.header["request"] == stop_request["type"]
    result = frames[-1] if frames[-1].id == "slow" else [f for f in frames if f.id == "slow"][-1]
    assert result.type == "result", result.header
    assert result.header["stopped"] is True and result.header["converged"] is False
    x, y = result.header["points"][0]
    assert 4 <= x < 1000 and y == 0
    assert 4 <= result.header["steps"] < 1000
    assert result.header["latent_id"]  # kept: a later drag can continue from it
    assert "image" in result.parts
    # A stop never cancels: the server is ready, and a stop of nothing running stops nothing.
    ack = terminal(h.request({"type": "stop", "id": "s2", "target": "not-a-request"}))
    assert ack.type == "result" and ack.header["stopped"] == []


def test_stop_leaves_other_requests_alone(harness):
    h = harness(FakeBackend(step_seconds=0.01))
    h.send({"type": "project", "id": "p", "settings": {"steps": 30}},
           [numpy_part("image", np.zeros((16, 16, 3), np.uint8))])  # fmt: skip
    h.send({"type": "stop", "id": "s"})
    frames = h.until_done("p")
    assert frames[-1].type == "result"  # the projection went on to its end
    ack = [f for f in frames if f.id == "s"] or h.until_done("s")
    assert ack[-1].header["stopped"] == []
    bad = terminal(h.request({"type": "cancel", "id": "k", "keep": "yes"}))
    assert bad.type == "error" and bad.header["code"] == "bad_request"


def test_pins_reach_the_backend_in_model_coordinates_and_come_back(harness):
    backend = FakeBackend(resolution=16)
    h = harness(backend)
    project = terminal(
        h.request(
            {"type": "project", "id": "p", "output": "array"},
            [numpy_part("image", np.zeros((32, 32, 3), np.uint8))],
        )  # fmt: skip
    )
    frames = h.request(
        {"type": "drag", "id": "d", "projection_id": project.header["projection_id"],
         "handles": [[4, 4]], "targets": [[12, 4]], "pins": [[20, 20]]}
    )  # fmt: skip
    drag_call = [c for c in backend.calls if c[0] == "drag"][-1][1]
    assert drag_call["pins"] == [pytest.approx((10.0, 10.0))]  # the 32 px image is half size
    progress = [f for f in frames if f.type == "progress"]
    assert progress and all(f.header["pins"] == [[20.0, 20.0]] for f in progress)
    assert frames[-1].header["pins"] == [[20.0, 20.0]]
    outside = terminal(
        h.request(
            {
                "type": "drag",
                "id": "d2",
                "projection_id": project.header["projection_id"],
                "handles": [[4, 4]],
                "targets": [[12, 4]],
                "pins": [[40, 2]],
            }
        )  # fmt: skip
    )
    assert outside.type == "error" and outside.header["code"] == "invalid_points"
    assert "pins" in outside.header["message"]


def test_preview_interval_reaches_the_engine_as_a_drag_setting(harness):
    backend = FakeBackend()
    h = harness(backend)
    done = terminal(
        h.request(
            {
                "type": "drag",
                "id": "d",
                "seed": 0,
                "handles": [[0, 0]],
                "targets": [[3, 0]],
                "preview_every": 2,
                "preview_interval": 0.5,
                "options": {"lr": 0.01},
            }
        )  # fmt: skip
    )
    assert done.type == "result"
    options = [c for c in backend.calls if c[0] == "drag"][-1][1]["options"]
    assert options == {"lr": 0.01, "preview_interval": 0.5}
    bad = terminal(
        h.request(
            {
                "type": "drag",
                "id": "b",
                "seed": 0,
                "handles": [[0, 0]],
                "targets": [[3, 0]],
                "preview_interval": -1,
            }
        )  # fmt: skip
    )
    assert bad.type == "error" and bad.header["code"] == "bad_request"
