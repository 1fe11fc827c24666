"""The plug-in core's run (dragfu_core.job + session): planning, engine conversation, compositing,
cancellation and failures, against an in-memory host; the engine is the real protocol server over a
fake backend (tests/gimp2_shim/fake_engine.py) or an in-process fake session."""

import os
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
# append, never insert: the engine package is also called dragfu (plugin/dragfu/dragfu.py)
sys.path.append(os.path.join(HERE, "..", "plugin", "dragfu"))

from dragfu_core import job, progress, session  # noqa: E402
from dragfu_core.geometry import Rect  # noqa: E402

FAKE_ENGINE = [
    sys.executable,
    os.path.join(HERE, "gimp2_shim", "fake_engine.py"),
    "--resolution",
    "32",
]


def flat(*anchors):
    out = []
    for x, y in anchors:
        out += [x, y, x, y, x, y]
    return out


class MemoryHost(job.Host):
    """An RGB layer in memory, with offsets, a rectangular selection and paths."""

    def __init__(self, width=96, height=80, offsets=(10, 5), strokes=(), selection=None):
        self.width, self.height, self.offsets = width, height, offsets
        self.pixels = bytearray(((i * 7) % 250) for i in range(width * height * 3))
        self._strokes = list(strokes)
        self.selection = selection  # Rect in image coordinates
        self.inserted = None
        self.reports = []

    def layer_info(self):
        return job.LayerInfo("photo", self.width, self.height, self.offsets, 3)

    def strokes(self, which):
        return self._strokes

    def selection_bounds(self):
        if self.selection is None:
            return None
        r = self.selection.translated(-self.offsets[0], -self.offsets[1]).intersect(
            Rect(0, 0, self.width, self.height)
        )
        return None if r.is_empty() else r

    def read_pixels(self, rect):
        out = bytearray()
        for j in range(rect.y, rect.y2):
            start = (j * self.width + rect.x) * 3
            out += self.pixels[start : start + rect.width * 3]
        return out

    def read_selection(self, rect):
        sel = self.selection.translated(-self.offsets[0], -self.offsets[1])
        return bytearray(
            255 if sel.contains_point(i + 0.5, j + 0.5) else 0
            for j in range(rect.y, rect.y2)
            for i in range(rect.x, rect.x2)
        )

    def progress(self, fraction, text):
        self.reports.append((fraction, text))

    def insert_result(self, rect, pixels, name, frames):
        self.inserted = (rect, pixels, name, frames)


class FakeSession:
    """In-process stand-in for session.EngineSession: returns the image with the targets painted."""

    seen = []
    model_size = None  # what load_model answers: the model's (width, height), or None

    def __init__(self, config, options, report, cancel=None):
        self.report = report
        self.cancel = cancel

    def load_model(self, model):
        return FakeSession.model_size

    def run(
        self,
        model,
        image,
        width,
        height,
        drags,
        movable,
        steps,
        keep_frames=False,
        weight_mask=None,
        align_points=None,
        live=None,
        from_key=None,
        grey=False,
    ):
        FakeSession.seen.append(
            dict(model=model, width=width, height=height, drags=drags, movable=movable,
                 steps=steps, align_points=align_points)
        )  # fmt: skip
        # Like the engine: only the box the edit changed comes back (here the first target's
        # pixel, painted magenta).
        i, j = int(drags[0].target[0]), int(drags[0].target[1])
        self.report.stage("drag", steps, steps, distance=0.0)
        frames = (
            [("Step 1", bytes(image), width, height, (0, 0, width, height))] if keep_frames else []
        )
        return job.EngineOutcome(bytearray([255, 0, 255]), 1, 1, steps, frames, box=(i, j, 1, 1))

    def close(self):
        pass


def test_run_maps_points_into_the_crop_and_composites_inside_the_selection():
    FakeSession.seen[:] = []
    host = MemoryHost(
        strokes=[(flat((40.5, 30.5), (50.5, 33.5)), False, "s1")], selection=Rect(20, 15, 50, 40)
    )
    result = job.run(
        host, job.Options(steps=7, model="toy"), {"model": "x", "steps": 200}, FakeSession
    )
    seen = FakeSession.seen[0]
    crop = result.crop
    assert seen["steps"] == 7 and seen["model"] == "toy"
    assert (seen["width"], seen["height"]) == (crop.width, crop.height)
    # image (50.5, 33.5) -> layer (40.5, 28.5) -> crop
    assert seen["drags"][0].target == (40.5 - crop.x, 28.5 - crop.y)
    assert seen["movable"] is not None and set(seen["movable"]) == {0, 255}
    # The engine aligns the subject around the drag points (crop coordinates).
    assert seen["align_points"] == [seen["drags"][0].handle, seen["drags"][0].target]
    rect, pixels, name, frames = host.inserted
    assert name.startswith("Drag-Fu: 1 drag, 7 steps (toy)") and frames == []
    # Only the engine's box is written: the target's pixel, in layer coordinates.
    assert rect == Rect(int(40.5), int(28.5), 1, 1)
    assert list(pixels) == [255, 0, 255]
    # the bar ended at 1 with monotonic fractions
    fractions = [f for f, _ in host.reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_a_rectangular_model_gets_a_crop_of_its_shape():
    FakeSession.seen[:] = []
    FakeSession.model_size = (256, 512)  # StyleGAN-Human: 256 wide, 512 high
    try:
        host = MemoryHost(
            width=200, height=300, offsets=(0, 0),
            strokes=[(flat((100.5, 135.5), (104.5, 145.5)), False, "s1")],
            selection=Rect(80, 120, 50, 40),
        )  # fmt: skip
        result = job.run(host, job.Options(steps=3), {}, FakeSession)
    finally:
        FakeSession.model_size = None
    crop = result.crop
    # The context region: twice as high as wide, as large as the 200 x 300 layer allows.
    assert (crop.width, crop.height) == (150, 300)
    assert crop.intersect(Rect(80, 120, 50, 40)) == Rect(80, 120, 50, 40)
    seen = FakeSession.seen[0]
    assert (seen["width"], seen["height"]) == (150, 300)
    assert seen["drags"][0].target == (104.5 - crop.x, 145.5 - crop.y)
    rect, pixels, _, _ = host.inserted
    assert rect == Rect(104, 145, 1, 1) and list(pixels) == [255, 0, 255]


def test_run_refuses_without_drags_and_never_calls_the_engine():
    FakeSession.seen[:] = []
    host = MemoryHost(strokes=[(flat((1, 1), (9, 9), (1, 9)), True, "outline")])
    with pytest.raises(job.JobError) as info:
        job.run(host, job.Options(), {}, FakeSession)
    assert info.value.code == "no_drags" and "closed" in info.value.message and info.value.hint
    assert FakeSession.seen == [] and host.inserted is None


def test_keep_frames_passes_frames_to_the_host():
    host = MemoryHost(strokes=[(flat((40.5, 30.5), (50.5, 33.5)), False, "s1")])
    result = job.run(host, job.Options(keep_frames=True), {}, FakeSession)
    rect, pixels, _, frames = host.inserted
    assert len(frames) == 1 and frames[0][0] == "Step 1"
    # The frame covers the whole crop, so the result does too (one rectangle for all layers).
    assert rect == result.crop and len(frames[0][1]) == len(pixels)


def test_progress_texts_name_the_stage_and_distance():
    seen = []
    bar = progress.Progress(lambda f, t: seen.append((f, t)))
    bar.stage("load", 0, 1, model="toy")
    bar.stage("project", 50, 100)
    bar.stage("drag", 12, 200, distance=3.25)
    bar.stage("project", 1, 100)  # a late event never moves the bar back
    texts = [t for _, t in seen]
    assert texts[0] == "Drag-Fu: loading model toy"
    assert "projecting the photo" in texts[1] and "step 50 of 100" in texts[1]
    assert texts[2] == "Drag-Fu: dragging step 12 of 200, distance 3.2 px"
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and 0 < fractions[2] < 1


def test_engine_argv_and_environment_from_options_and_config():
    cfg = {
        "engine_command": ["dragfu", "serve"],
        "device": "cuda:1",
        "models_dir": "/m",
        "engine_env": {"A": "b"},
    }
    argv, env = session.engine_argv_env(cfg, job.Options())
    assert argv == ["dragfu", "serve"] and env == {
        "A": "b",
        "DRAGFU_DEVICE": "cuda:1",
        "DRAGFU_MODELS_DIR": "/m",
    }
    argv, env = session.engine_argv_env(
        cfg, job.Options(device="auto", engine_command=["x", "serve"])
    )
    assert argv == ["x", "serve"] and "DRAGFU_DEVICE" not in env
    with pytest.raises(job.JobError) as info:
        session.engine_argv_env({}, job.Options())
    assert info.value.code == "no_engine" and "installer" in info.value.hint


def test_flatpak_passes_the_environment_as_options():
    argv = ["dragfu", "serve"]
    assert session.flatpak_argv(argv, {"DRAGFU_DEVICE": "cpu"}, flatpak=False) == argv
    assert session.flatpak_argv(argv, {"DRAGFU_DEVICE": "cpu", "A": "b"}, flatpak=True) == [
        "flatpak-spawn", "--host", "--watch-bus", "--env=A=b", "--env=DRAGFU_DEVICE=cpu", "dragfu", "serve",
    ]  # fmt: skip


def run_real_client(host, options, config, cancel=None):
    def factory(cfg, opts, report, cancel=None, given=cancel):
        return session.EngineSession(cfg, opts, report, given or cancel)

    return job.run(host, options, config, factory)


def test_through_the_real_protocol_with_the_fake_engine():
    host = MemoryHost(
        strokes=[(flat((40.5, 30.5), (50.5, 33.5)), False, "s1")], selection=Rect(20, 15, 50, 40)
    )
    result = run_real_client(host, job.Options(steps=4), {"engine_command": FAKE_ENGINE})
    assert result.steps == 4 and host.inserted is not None
    texts = [t for _, t in host.reports]
    assert any("dragging step" in t and "distance" in t for t in texts)


def magenta_centroid(host, pixels, rect):
    """Centroid (layer coordinates, pixel centres) of the marker pixels the fake engine paints."""
    xs, ys = [], []
    for j in range(rect.height):
        for i in range(rect.width):
            r, g, b = pixels[(j * rect.width + i) * 3 : (j * rect.width + i) * 3 + 3]
            if r > 200 and g < 80 and b > 200:
                xs.append(rect.x + i + 0.5)
                ys.append(rect.y + j + 0.5)
    assert xs, "no marker in the result"
    return sum(xs) / len(xs), sum(ys) / len(ys)


def test_rectangular_model_through_the_real_protocol():
    """A fake engine with a 32 wide, 64 high model: the crop takes its shape, and the target
    comes back where it was drawn, through layer -> crop -> model coordinates and back."""
    host = MemoryHost(
        width=120, height=200, offsets=(7, 3),
        strokes=[(flat((57.5, 103.5), (61.5, 121.5)), False, "s1")],
        selection=Rect(30, 70, 60, 80),
    )  # fmt: skip
    engine = FAKE_ENGINE[:2] + ["--resolution", "64", "--width", "32"]
    # The model's re-render comes back through the alignment: the marker lands where drawn.
    result = run_real_client(host, job.Options(steps=4, paste="render"), {"engine_command": engine})
    crop = result.crop
    assert crop.height == 2 * crop.width and crop.height >= 80
    rect, pixels, _, _ = host.inserted
    cx, cy = magenta_centroid(host, pixels, rect)
    assert abs(cx - (61.5 - 7)) <= 1.5 and abs(cy - (121.5 - 3)) <= 1.5


def test_engine_error_keeps_code_message_and_hint():
    host = MemoryHost(strokes=[(flat((40.5, 30.5), (50.5, 33.5)), False, "s1")])
    with pytest.raises(job.JobError) as info:
        run_real_client(host, job.Options(model="missing"), {"engine_command": FAKE_ENGINE})
    assert info.value.code == "unknown_model" and "missing" in info.value.message
    assert "dragfu models list" in info.value.hint and host.inserted is None


def test_cancel_stops_the_engine_and_inserts_nothing():
    host = MemoryHost(strokes=[(flat((40.5, 30.5), (50.5, 33.5)), False, "s1")])
    flag = session.CancelFlag()
    engine = FAKE_ENGINE + ["--step-delay", "0.5"]
    original = host.progress

    def progress_then_cancel(fraction, text):
        original(fraction, text)
        if "dragging step 1 " in text:
            threading.Timer(0.05, flag.set).start()  # like GIMP's cancel arriving mid-drag

    host.progress = progress_then_cancel
    with pytest.raises(job.JobError) as info:
        run_real_client(host, job.Options(steps=50), {"engine_command": engine}, cancel=flag)
    assert info.value.code == "cancelled" and host.inserted is None


CHILD = r"""
import sys
sys.path.append(sys.argv[1])
from dragfu_core.engine_client import EngineClient, rgb_part
client = EngineClient(sys.argv[2:])
info = client.start()
print("engine", info["pid"], flush=True)
projected = client.request("project", {"output": "array"}, [rgb_part("image", bytes(32 * 32 * 3), 32, 32)])
client.drag([(5.5, 5.5)], [(20.5, 20.5)], projection_id=projected.header["projection_id"], max_steps=200,
            output="array", progress=lambda frame: print("step", flush=True))
"""


def process_gone(pid):
    try:
        with open(f"/proc/{pid}/status") as handle:
            return "\nState:\tZ" in handle.read()
    except OSError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_engine_stops_when_gimp_kills_the_plugin_mid_drag():
    """GIMP's cancel button kills the plug-in process; the engine must not keep computing."""
    import signal
    import subprocess
    import time

    core = os.path.join(HERE, "..", "plugin", "dragfu")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, core] + FAKE_ENGINE + ["--step-delay", "0.2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        engine_pid = int(child.stdout.readline().split()[1])
        assert child.stdout.readline().strip() == "step"  # the drag is running
        child.send_signal(signal.SIGKILL)  # what GIMP does on cancel
        child.wait(10)
        deadline = time.time() + 15  # 200 steps x 0.2 s = 40 s if it kept going
        while not process_gone(engine_pid) and time.time() < deadline:
            time.sleep(0.1)
        assert process_gone(engine_pid)
    finally:
        if child.poll() is None:
            child.kill()


class PreviewHost(MemoryHost):
    """A MemoryHost that shows the live preview: a preview layer of `area`, written rect by rect."""

    live_preview = True

    def __init__(self, *args, **kwargs):
        MemoryHost.__init__(self, *args, **kwargs)
        self.preview = None  # (area, bytearray RGB) while the preview layer exists
        self.updates = []  # (area, rect) per update
        self.removed = 0
        self.after_update = None

    def preview_update(self, area, rect, rgb):
        assert len(rgb) == rect.width * rect.height * 3
        if self.preview is None:
            assert rect == area, "the first update fills the whole preview layer"
            self.preview = (area, bytearray(area.width * area.height * 3))
        layer = self.preview[1]
        for j in range(rect.height):
            start = ((rect.y - area.y + j) * area.width + rect.x - area.x) * 3
            layer[start : start + rect.width * 3] = rgb[
                j * rect.width * 3 : (j + 1) * rect.width * 3
            ]
        self.updates.append((area, rect))
        if self.after_update is not None:
            self.after_update(self)

    def preview_remove(self):
        assert self.preview is not None
        self.preview = None
        self.removed += 1


def colour_centroid(pixels, width, height, colour):
    xs, ys = [], []
    for j in range(height):
        for i in range(width):
            if tuple(pixels[(j * width + i) * 3 : (j * width + i) * 3 + 3]) == colour:
                xs.append(i + 0.5)
                ys.append(j + 0.5)
    return (sum(xs) / len(xs), sum(ys) / len(ys)) if xs else None


def test_live_preview_shows_the_drag_with_markers_and_goes_at_the_end(tmp_path):
    from dragfu_core import live

    host = PreviewHost(strokes=[(flat((40.5, 30.5), (50.5, 33.5)), False, "s1"),
                                (flat((20.5, 50.5)), False, "pin")])  # fmt: skip
    seen = []

    def look(h):  # what the preview layer shows right after each update
        area, layer = h.preview
        seen.append(
            {
                "target": colour_centroid(layer, area.width, area.height, live.TARGET_COLOUR),
                "pin": colour_centroid(layer, area.width, area.height, live.PIN_COLOUR),
                "handle": colour_centroid(layer, area.width, area.height, live.HANDLE_COLOUR),
                "crop": area,
            }
        )

    host.after_update = look
    log = tmp_path / "engine.log"
    engine = FAKE_ENGINE + ["--step-delay", "0.05", "--log", str(log)]
    result = run_real_client(host, job.Options(steps=20), {"engine_command": engine})
    assert host.inserted is not None and "1 pin" in result.layer_name
    drag_line = [line for line in log.read_text().splitlines() if line.startswith("request drag")]
    crop = result.crop
    assert drag_line == [f"request drag c4 pins=[[{20.5 - 10 - crop.x}, {50.5 - 5 - crop.y}]]"]
    assert seen and host.removed == 1 and host.preview is None  # shown, then gone
    crop = seen[0]["crop"]
    assert crop == result.crop
    # Markers in crop coordinates: the target, the pin where it was drawn (layer = image - offsets).
    target = (50.5 - 10 - crop.x, 33.5 - 5 - crop.y)
    pin = (20.5 - 10 - crop.x, 50.5 - 5 - crop.y)
    for shown in seen:  # (2 px: at the end the handle's marker covers part of the target's ring)
        assert abs(shown["target"][0] - target[0]) <= 2 and abs(shown["target"][1] - target[1]) <= 2
        assert abs(shown["pin"][0] - pin[0]) <= 1 and abs(shown["pin"][1] - pin[1]) <= 1
    handles = [shown["handle"][0] for shown in seen]
    assert handles == sorted(handles)  # the handle's marker heads right, towards the target
    assert handles[0] < target[0]
    texts = [t for _, t in host.reports]
    assert any("s/step" in t and "distance" in t for t in texts)


def test_stop_keeps_the_state_reached_cancel_discards(tmp_path, monkeypatch):
    stop_file = tmp_path / "stop-now"
    monkeypatch.setenv("DRAGFU_STOP_FILE", str(stop_file))
    host = PreviewHost(strokes=[(flat((30.5, 30.5), (70.5, 30.5)), False, "s1")])
    original = host.progress

    def progress_then_stop(fraction, text):
        original(fraction, text)
        if "dragging step 8 " in text:
            stop_file.write_text("")  # the user's Stop: `touch $DRAGFU_STOP_FILE`

    host.progress = progress_then_stop
    engine = FAKE_ENGINE + ["--step-delay", "0.05"]
    result = run_real_client(host, job.Options(steps=40), {"engine_command": engine})
    assert any("stopped on request" in n for n in result.notes)
    assert 8 <= result.steps < 40
    rect, pixels, _, _ = host.inserted
    cx, cy = magenta_centroid(host, pixels, rect)  # the fake marks where the handle got to
    assert 30.5 - 10 + 3 < cx < 70.5 - 10 - 3 and abs(cy - (30.5 - 5)) <= 1.5
    assert host.removed == 1 and host.preview is None
    assert not stop_file.exists()  # the flag file is consumed

    # Cancel instead: nothing is added, and the preview goes all the same.
    host = PreviewHost(strokes=[(flat((30.5, 30.5), (70.5, 30.5)), False, "s1")])
    flag = session.CancelFlag()
    original = host.progress

    def progress_then_cancel(fraction, text):
        original(fraction, text)
        if "dragging step 8 " in text:
            flag.set()

    host.progress = progress_then_cancel
    with pytest.raises(job.JobError) as info:
        run_real_client(host, job.Options(steps=40), {"engine_command": engine}, cancel=flag)
    assert info.value.code == "cancelled" and host.inserted is None
    assert host.updates and host.removed == 1 and host.preview is None


class WindowHost(PreviewHost):
    """A host with a window of its own (GIMP 3's interactive runs): its Stop or Cancel button is
    pressed once the drag has reached step 8; the client polls the buttons."""

    def __init__(self, press, **kwargs):
        super().__init__(**kwargs)
        self.press, self.pressed, self.polls, self.started = press, False, 0, 0

    def drag_started(self):
        self.started += 1

    def progress(self, fraction, text):
        super().progress(fraction, text)
        if "dragging step 8 " in text:
            self.pressed = True

    def _button(self, which):
        self.polls += 1
        return self.pressed and self.press == which

    def stop_requested(self):
        return self._button("stop")

    def cancel_requested(self):
        return self._button("cancel")


def test_the_hosts_window_stops_and_keeps_or_cancels_and_discards():
    engine = FAKE_ENGINE + ["--step-delay", "0.05"]
    stroke = [(flat((30.5, 30.5), (70.5, 30.5)), False, "s1")]
    host = WindowHost("stop", strokes=stroke)
    result = run_real_client(host, job.Options(steps=40), {"engine_command": engine})
    assert any("stopped on request" in n for n in result.notes) and 8 <= result.steps < 40
    assert host.started == 1 and host.polls > 8 and host.inserted is not None
    assert host.removed == 1 and host.preview is None

    host = WindowHost("cancel", strokes=stroke)
    with pytest.raises(job.JobError) as info:
        run_real_client(host, job.Options(steps=40), {"engine_command": engine})
    assert info.value.code == "cancelled" and host.inserted is None
    assert host.removed == 1 and host.preview is None


def test_cancel_while_the_engine_starts_stops_it_at_once():
    """An engine that takes long to say hello (torch importing): the window's Cancel ends the run
    within a poll or two (the engine is killed: nothing is lost before its hello)."""
    slow = [sys.executable, "-c", "import time; time.sleep(60)"]
    host = WindowHost("cancel", strokes=[(flat((30.5, 30.5), (70.5, 30.5)), False, "s1")])
    host.pressed = True  # pressed before the engine answered
    started = time.monotonic()
    with pytest.raises(job.JobError) as info:
        run_real_client(host, job.Options(steps=4), {"engine_command": slow, "warm_engine": False})
    assert info.value.code == "cancelled" and host.inserted is None
    assert time.monotonic() - started < 10  # not the 60 s sleep, nor a 10 s cancel grace


def test_pins_alone_are_not_a_drag_and_reach_the_engine_with_the_drags():
    host = MemoryHost(strokes=[(flat((20.5, 50.5)), False, "pin")])
    with pytest.raises(job.JobError) as info:
        job.run(host, job.Options(steps=4), {"model": "x"}, FakeSession)
    assert info.value.code == "no_drags" and "1 pin but nothing that moves" in info.value.message
