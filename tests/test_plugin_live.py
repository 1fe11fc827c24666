"""dragfu_core.live: the live preview's throttling and what it draws, the progress line, Stop."""

import os
import signal
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.append(os.path.join(HERE, "..", "plugin", "dragfu"))

from dragfu_core import live, progress, strokes  # noqa: E402
from dragfu_core.geometry import Rect  # noqa: E402


class MockHost:
    live_preview = True

    def __init__(self):
        self.calls = []
        self.layer = None  # {(x, y): rgb} of the preview layer, layer coordinates

    def preview_update(self, area, rect, rgb):
        self.calls.append(("update", area, rect, bytes(rgb)))
        if self.layer is None:
            self.layer = {}
        for j in range(rect.height):
            for i in range(rect.width):
                k = (j * rect.width + i) * 3
                self.layer[(rect.x + i, rect.y + j)] = tuple(rgb[k : k + 3])

    def preview_remove(self):
        self.calls.append(("remove",))
        self.layer = None


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


CROP = Rect(10, 20, 40, 30)  # layer coordinates
GREY = (90, 90, 90)


def make(host=None, drags=None, **kwargs):
    host = host or MockHost()
    texts = []
    report = progress.Progress(lambda fraction, text: texts.append(text))
    source = bytearray(GREY) * (CROP.width * CROP.height)
    drags = drags or [
        strokes.Drag((5.5, 5.5), (25.5, 5.5)),
        strokes.Drag((30.5, 20.5), (30.5, 20.5)),
    ]
    clock = Clock()
    drag = live.LiveDrag(host, report, CROP, source, drags, clock=clock, **kwargs)
    return drag, host, clock, texts


def preview(box, colour=(10, 200, 10)):
    x, y, w, h = box
    return (bytearray(colour) * (w * h), w, h, box)


def event(step, points, distances=(10.0,)):
    return {
        "stage": "drag",
        "step": step,
        "total": 100,
        "points": points,
        "distances": list(distances),
    }


def test_updates_are_throttled_to_the_interval_and_only_on_preview_steps():
    drag, host, clock, _ = make(min_interval=0.5)
    shown = []
    assert drag.drag_fields() == {"preview_interval": 0.5}  # the engine is asked the same
    for step in range(12):
        clock.now += 0.2  # 0.2 s per step; a preview every 2 steps (0.4 s apart)
        has_preview = step % 2 == 0
        shown.append(
            drag.on_progress(
                event(step, [[5.5 + step, 5.5]]), preview((0, 0, 4, 4)) if has_preview else None
            )
        )
    # Steps 0, 4, 8 (0.8 s apart): a preview 0.4 s after the last update waits for the next one.
    assert [s for s, yes in enumerate(shown) if yes] == [0, 4, 8]
    assert [c[0] for c in host.calls] == ["update"] * 3


def test_what_is_drawn_box_markers_and_only_the_changed_rectangle():
    drag, host, clock, _ = make()
    drag.on_progress(event(0, [[5.5, 5.5]]), preview((2, 10, 6, 4)))
    kind, area, rect, _ = host.calls[0]
    assert area == CROP and rect == CROP  # the first update fills the whole layer
    layer = host.layer
    # The preview's box is pasted (crop -> layer coordinates: + crop origin) ...
    assert layer[(10 + 2, 20 + 10)] == (10, 200, 10) and layer[(10 + 7, 20 + 13)] == (10, 200, 10)
    assert layer[(10 + 8, 20 + 13)] == GREY and layer[(10 + 7, 20 + 14)] == GREY  # outside: source
    # The handle's marker where the handle is, the target's ring, the pin's square.
    assert layer[(10 + 5, 20 + 5)] == live.HANDLE_COLOUR
    assert layer[(10 + 25, 20 + 5)] == live.OUTLINE_COLOUR  # the ring's centre
    assert layer[(10 + 25 + 2, 20 + 5)] == live.TARGET_COLOUR
    assert layer[(10 + 30, 20 + 20)] == live.PIN_COLOUR
    assert layer[(10 + 25 + 4, 20 + 5)] == GREY  # markers are 7 px wide
    # Later: the handle moved; the update covers the box and both marker positions, not the crop.
    clock.now += 1.0
    drag.on_progress(event(10, [[15.5, 8.5]]), preview((14, 7, 3, 3), (1, 2, 3)))
    _, _, rect, _ = host.calls[1]
    assert rect != CROP
    assert rect.x <= 10 + 5 - 3 and rect.x2 >= 10 + 15 + 4  # old handle marker erased, new drawn
    assert host.layer[(10 + 5, 20 + 5)] == GREY  # the old marker is gone: the source again
    assert host.layer[(10 + 15, 20 + 8)] == live.HANDLE_COLOUR
    assert host.layer[(10 + 14, 20 + 7)] == live.HANDLE_COLOUR  # the marker over the new box
    assert host.layer[(10 + 16 + 3, 20 + 9)] == GREY
    drag.finish()
    assert host.calls[-1] == ("remove",) and host.layer is None
    drag.finish()  # once only
    assert [c[0] for c in host.calls].count("remove") == 1


def test_a_host_without_preview_asks_for_none_and_the_layer_is_never_made():
    class Plain(MockHost):
        live_preview = False

    drag, host, clock, texts = make(Plain())
    assert drag.preview_every(200) == 0
    drag.on_progress(event(0, [[5.5, 5.5]]), preview((0, 0, 2, 2)))
    drag.finish()
    assert host.calls == []
    assert make()[0].preview_every(200) == 10 and live.preview_every(10) == 4
    assert make()[0].drag_fields() == {"preview_interval": 0.5} and drag.drag_fields() == {}


def test_progress_line_has_step_distance_and_seconds_per_step():
    drag, host, clock, texts = make()
    drag.on_progress(event(0, [[5.5, 5.5]], (20.0,)))
    clock.now += 1.5
    drag.on_progress(event(3, [[8.5, 5.5]], (17.25,)))
    assert texts[0] == "Drag-Fu: dragging step 0 of 100, distance 20.0 px"
    assert texts[1] == "Drag-Fu: dragging step 3 of 100, distance 17.2 px, 0.50 s/step"


def test_a_late_preview_is_shown_but_the_progress_line_never_goes_back():
    drag, host, clock, texts = make()
    drag.on_progress(event(0, [[5.5, 5.5]], (20.0,)))
    clock.now += 1.0
    drag.on_progress(event(4, [[9.5, 5.5]], (16.0,)))
    clock.now += 1.0
    shown = drag.on_progress(event(2, [[7.5, 5.5]], (18.0,)), preview((0, 0, 8, 8)))
    assert shown and host.calls[-1][0] == "update"
    assert texts == [
        "Drag-Fu: dragging step 0 of 100, distance 20.0 px",
        "Drag-Fu: dragging step 4 of 100, distance 16.0 px, 0.25 s/step",
    ]


def test_stop_flag_by_file_and_by_signal(tmp_path):
    path = tmp_path / "stop"
    path.write_text("left over from an earlier run")
    flag = live.StopFlag(str(path))
    flag.install()
    try:
        assert not path.exists() and not flag()  # a stale file does not stop the new run
        path.write_text("")
        assert flag() and flag.stopped
        if hasattr(signal, "SIGUSR1"):
            other = live.StopFlag(str(tmp_path / "none"))
            other.install()
            try:
                assert not other()
                os.kill(os.getpid(), signal.SIGUSR1)
                assert other()
            finally:
                other.uninstall()
    finally:
        flag.uninstall()
    assert not path.exists()
    if hasattr(signal, "SIGUSR1"):
        assert signal.getsignal(signal.SIGUSR1) is not other.set


def test_stop_file_path_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DRAGFU_STOP_FILE", str(tmp_path / "x"))
    assert live.StopFlag().path == str(tmp_path / "x")
    monkeypatch.delenv("DRAGFU_STOP_FILE")
    assert live.StopFlag().path.endswith("dragfu-stop")


@pytest.mark.parametrize("box", [(36, 26, 10, 10), (-3, -3, 5, 5)])
def test_boxes_reaching_past_the_crop_are_clipped(box):
    drag, host, clock, _ = make()
    x, y, w, h = box
    drag.on_progress(event(0, [[39.9, 29.9]]), preview(box))
    assert host.calls[0][2] == CROP and len(host.calls[0][3]) == CROP.width * CROP.height * 3
