"""Interactive dragging, host-independent: the live preview, the progress line, Stop = keep.

``LiveDrag`` takes the engine's drag progress events (one per optimisation step, a ``preview``
part every ``preview_every`` steps) and decides what the user sees:

- the progress line: step, distance left, seconds per step (measured between events);
- the preview: at most one update every ``min_interval`` seconds (0.5: about twice a second) and
  only on steps that carry a preview, which the engine sends every ``preview_every(steps)`` steps:
  so the canvas changes every few steps or about twice a second, whichever is slower. It keeps the
  crop as shown (the source's pixels, the preview's box pasted in: row slices, no per-pixel loop)
  and hands the host only the rectangle that changed, with small markers drawn in: each handle
  where it is now (red square), its target (blue ring), each pin (yellow square). The host writes
  that rectangle into a preview layer above the source (made on the first update, outside the
  undo history) and removes the layer at the end, whatever the end was (``finish``).

``StopFlag`` is the user's "stop and keep what is there": polled by the client like the cancel
flag, it sends the protocol's ``stop``, and the drag answers with the state it reached. In GIMP 3's
interactive runs the host's window has the button (``Host.stop_requested``); a script's run, or
GIMP 2.10 (whose progress has only a cancel, which discards), gets it from outside: SIGUSR1
(POSIX: ``kill -USR1 <plug-in pid>``), or a stop file appearing (``DRAGFU_STOP_FILE``, default
``<temp dir>/dragfu-stop``: ``touch /tmp/dragfu-stop``, e.g. from a key bound in the desktop).
"""

import os
import signal
import sys
import tempfile
import time

from .geometry import Rect

_clock = getattr(time, "monotonic", time.time)  # Python 2.7 has no monotonic clock

HANDLE_COLOUR = (255, 40, 40)
TARGET_COLOUR = (40, 90, 255)
PIN_COLOUR = (255, 220, 0)
OUTLINE_COLOUR = (255, 255, 255)
MARKER_RADIUS = 3  # markers are 7 x 7 px
STOP_FILE_ENV = "DRAGFU_STOP_FILE"


PREVIEW_INTERVAL = 0.5  # seconds: about twice a second at most


def preview_every(steps):
    """How often the engine renders a preview for a drag of at most ``steps`` steps: every few
    steps (at most 20 over the whole drag, at least 4 steps apart). A preview costs the engine a
    full render and paste, several drag steps' worth on a CPU (docs/benchmarks.md); the engine
    is also asked for none sooner than PREVIEW_INTERVAL after the last (the drag's
    ``preview_interval``), which is what limits them on a fast GPU."""
    return max(4, int(steps) // 20)


def default_stop_path():
    return os.environ.get(STOP_FILE_ENV) or os.path.join(tempfile.gettempdir(), "dragfu-stop")


class StopFlag(object):
    """Set by SIGUSR1, by the stop file appearing, or by the host; polled by the client.
    also: the host's own ``stop_requested`` (its window's Stop), polled with it."""

    signal_name = "SIGUSR1"

    def __init__(self, path=None, also=None):
        self.stopped = False
        self.path = default_stop_path() if path is None else path
        self.also = also
        self._previous = None

    def set(self, *_args):
        self.stopped = True

    def __call__(self):
        if not self.stopped and self.also is not None and self.also():
            self.stopped = True
        if not self.stopped and self.path and os.path.exists(self.path):
            self.stopped = True
        return self.stopped

    def install(self):
        """Listen for the signal; a stop file left over from an earlier run is removed first."""
        self._remove_file()
        number = getattr(signal, self.signal_name, None)  # Windows has no SIGUSR1
        if number is not None:
            try:
                self._previous = (number, signal.signal(number, self.set))
            except (ValueError, OSError, RuntimeError):  # not the main thread
                self._previous = None

    def uninstall(self):
        if self._previous is not None:
            number, handler = self._previous
            try:
                signal.signal(number, handler)
            except (ValueError, OSError, RuntimeError):
                pass
            self._previous = None
        self._remove_file()

    def _remove_file(self):
        if self.path:
            try:
                os.remove(self.path)
            except OSError:
                pass


def _rgb_rows_copy(src, src_width, rect, dst, dst_width, dst_rect):
    """Copy rect (in src's coordinates) of an RGB buffer into dst at dst_rect's origin."""
    row = rect.width * 3
    for j in range(rect.height):
        s = ((rect.y + j) * src_width + rect.x) * 3
        d = ((dst_rect.y + j) * dst_width + dst_rect.x) * 3
        dst[d:d + row] = src[s:s + row]


def _fill(buffer, width, rect, colour):
    """Fill rect of an RGB buffer (width wide) with one colour, a row slice at a time."""
    row = bytearray(colour) * rect.width
    for j in range(rect.y, rect.y2):
        start = (j * width + rect.x) * 3
        buffer[start:start + len(row)] = row


class Marker(object):
    """A small square or ring at (x, y) (crop coordinates)."""

    def __init__(self, x, y, colour, ring=False):
        self.x, self.y, self.colour, self.ring = float(x), float(y), colour, ring

    def rect(self):
        r = MARKER_RADIUS
        return Rect(int(self.x) - r, int(self.y) - r, 2 * r + 1, 2 * r + 1)

    def draw(self, buffer, width, origin, bounds):
        """Draw into buffer (RGB, width wide, covering a rect whose top-left is origin), clipped
        to bounds (the buffer's own rect, same coordinates as the marker)."""
        outer = self.rect()
        inner = Rect(outer.x + 1, outer.y + 1, outer.width - 2, outer.height - 2)
        centre = Rect(inner.x + 1, inner.y + 1, inner.width - 2, inner.height - 2)
        layers = [(outer, OUTLINE_COLOUR), (inner, self.colour)]
        if self.ring:
            layers.append((centre, OUTLINE_COLOUR))
        for rect, colour in layers:
            clipped = rect.intersect(bounds)
            if not clipped.is_empty():
                _fill(buffer, width, clipped.translated(-origin[0], -origin[1]), colour)


class LiveDrag(object):
    """The drag's progress line and live preview (see the module's docstring).

    host: the job's Host (``live_preview``, ``preview_update(area, rect, rgb)``,
    ``preview_remove()``); progress: a progress.Progress; crop: the crop's Rect (layer
    coordinates); source_rgb: the crop's 8-bit RGB pixels; drags: crop-coordinate drags (pins
    included), whose targets and pins are drawn.
    """

    def __init__(self, host, progress, crop, source_rgb, drags, min_interval=PREVIEW_INTERVAL, clock=None,
                 stop=None):
        self.host = host
        self.progress = progress
        self.crop = crop
        self.canvas = bytearray(source_rgb)
        self.targets = [d.target for d in drags if not d.is_pin]
        self.pins = [d.handle for d in drags if d.is_pin]
        self.min_interval = float(min_interval)
        self.clock = clock or _clock
        self.stop = stop if stop is not None else StopFlag()
        self.enabled = bool(getattr(host, "live_preview", False))
        self.updates = 0
        self._last_update = None
        self._drawn = Rect(0, 0, 0, 0)  # the markers' area in the last update (crop coordinates)
        self._first = None  # (step, time) of the first drag event
        self._latest = -1  # the latest step reported
        self.seconds_per_step = None

    def preview_every(self, steps):
        return preview_every(steps) if self.enabled else 0

    def drag_fields(self):
        """Drag request fields for the engine: no preview sooner than our throttle would show."""
        return {"preview_interval": self.min_interval} if self.enabled else {}

    # -- events ----------------------------------------------------------------------------------

    def on_progress(self, header, preview=None):
        """One drag progress event: header fields, and the preview as (rgb, width, height, box)."""
        step = int(header.get("step") or 0)
        now = self.clock()
        if self._first is None:
            self._first = (step, now)
            started = getattr(self.host, "drag_started", None)
            if started is not None:
                started()  # e.g. the host's window offers Stop from now on
        elif step > self._latest:  # (the first event's step is the latest one so far)
            self.seconds_per_step = (now - self._first[1]) / (step - self._first[0])
        # A preview is pasted beside the drag (the engine's previews.py), so its step can
        # arrive after later ones: the progress line only moves forward.
        if step >= self._latest:
            self._latest = step
            fields = {}
            distances = header.get("distances")
            if distances:
                fields["distance"] = max(distances)
            if self.seconds_per_step is not None:
                fields["seconds_per_step"] = self.seconds_per_step
            self.progress.stage("drag", step, header.get("total"), **fields)
        if preview is None or not self.enabled:
            return False
        if self._last_update is not None and now - self._last_update < self.min_interval:
            return False
        points = header.get("points") or []
        pins = header.get("pins") or self.pins
        self._show(preview, points, pins)
        self._last_update = now
        return True

    def _show(self, preview, points, pins):
        rgb, width, height, box = preview
        crop = Rect(0, 0, self.crop.width, self.crop.height)
        box = Rect(*box).intersect(crop)
        if box.width and box.height and (width, height) == (box.width, box.height):
            _rgb_rows_copy(rgb, width, Rect(0, 0, width, height), self.canvas, crop.width, box)
        markers = [Marker(x, y, TARGET_COLOUR, ring=True) for x, y in self.targets]
        markers += [Marker(x, y, PIN_COLOUR) for x, y in pins]
        markers += [Marker(x, y, HANDLE_COLOUR) for x, y in points]
        drawn = Rect(0, 0, 0, 0)
        for marker in markers:
            drawn = drawn.union(marker.rect())
        drawn = drawn.intersect(crop)
        if self.updates == 0:
            changed = crop  # the first update fills the whole preview layer
        else:
            changed = box.union(drawn).union(self._drawn).intersect(crop)
        out = bytearray(changed.width * changed.height * 3)
        _rgb_rows_copy(self.canvas, crop.width, changed, out, changed.width,
                       Rect(0, 0, changed.width, changed.height))
        for marker in markers:
            marker.draw(out, changed.width, (changed.x, changed.y), changed)
        self._drawn = drawn
        self.host.preview_update(self.crop, changed.translated(self.crop.x, self.crop.y), out)
        self.updates += 1

    def finish(self):
        """The preview layer goes, however the run ended; never raises."""
        if self.updates:
            # One line for logs and tests (GIMP shows a plug-in's stderr in its console).
            sys.stderr.write("Drag-Fu live preview: %d updates\n" % self.updates)
            try:
                self.host.preview_remove()
            except Exception as error:  # the run's own outcome matters more than a leftover preview
                sys.stderr.write("Drag-Fu: removing the preview failed: %s\n" % error)
            self.updates = 0
