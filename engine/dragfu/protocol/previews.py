"""The drag's live previews, pasted and sent beside the drag instead of inside it.

A preview of a photo drag is the generator's image pasted back into the client's picture (the
photo's own pixels warped at its resolution, photo/paste.py): on a CPU that costs about two drag
steps, and the optimisation does not need to wait for it. `PreviewSender` takes each step that
carries a preview, hands it to one thread of its own, and returns at once; that thread pastes it
and sends the step's progress event with the preview.

For a live preview (a drag with a `preview_interval`) only the newest is worth showing, and the
previews must not slow the drag much: `ready()` (asked by the drag before it renders one) says
no while one is being pasted, and until the time since the last one is PREVIEW_SPACING times
what it cost (its render and paste), so previews take at most about PREVIEW_SHARE of the drag's
time however slow the machine; on Linux the pasting thread also runs at a lower priority, so
where it competes with the drag for the CPU the drag comes first. One that arrives while another
waits replaces it, and the step it replaces goes out at once without its picture. Otherwise (a
client that keeps every frame) they wait their turn. The drag's result waits for the previews in
hand. A preview's event can therefore reach the client after the events of later steps, never
after the result (docs/protocol.md says so).
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

# One step's event: (header fields, parts or None); `make` turns a step that carries a preview
# into its event (the paste happens there), `send` writes an event.
Event = tuple[dict[str, Any], list | None]
PREVIEW_SHARE = 0.1  # of the drag's time, at most, for live previews
PREVIEW_SPACING = 1 / PREVIEW_SHARE - 1  # the quiet time after a preview, in units of its cost
PREVIEW_NICE = 10  # the pasting thread yields the CPU to the drag where they compete (Linux)


class PreviewSender:
    def __init__(self, make: Callable[[Any], Event], send: Callable[[Event], None],
                 plain: Callable[[Any], Event], newest_only: bool = True) -> None:  # fmt: skip
        self._make, self._send, self._plain = make, send, plain
        self._newest_only = newest_only
        self._waiting: collections.deque[Any] = collections.deque()
        self._closed = False
        self._busy = False  # a preview is being pasted
        self._quiet_until = 0.0  # perf_counter time before which `ready()` says no
        self._failure: BaseException | None = None
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="dragfu-previews", daemon=True)
        self._thread.start()

    def ready(self) -> bool:
        """Whether a live preview is wanted now (always, when every frame is kept)."""
        if not self._newest_only:
            return True
        with self._ready:
            idle = not self._busy and not self._waiting
            return idle and time.perf_counter() >= self._quiet_until

    def submit(self, progress: Any) -> None:
        """Queue a step that carries a preview (for a live preview, the newest replaces one
        still waiting)."""
        with self._ready:
            if self._failure is not None:
                raise self._failure
            replaced = self._waiting.popleft() if self._newest_only and self._waiting else None
            self._waiting.append(progress)
            self._ready.notify()
        if replaced is not None:
            self._send(self._plain(replaced))

    def close(self) -> None:
        """Wait until the previews in hand are sent (in live mode at most two: the one being
        pasted and the newest). Raises what the thread raised."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join()
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        if sys.platform.startswith("linux"):  # there the nice value is per thread
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PREVIEW_NICE)
            except OSError:
                pass
        while True:
            with self._ready:
                while not self._waiting and not self._closed:
                    self._ready.wait()
                if not self._waiting:
                    return
                progress = self._waiting.popleft()
                self._busy = True
            started = time.perf_counter()
            try:
                self._send(self._make(progress))
            except BaseException as error:  # reported by the drag's thread (submit / close)
                with self._ready:
                    self._failure = error
                    self._waiting.clear()
                    self._busy = False
                return
            done = time.perf_counter()
            cost = done - started + float(getattr(progress, "preview_seconds", 0.0) or 0.0)
            with self._ready:
                self._busy = False
                self._quiet_until = done + PREVIEW_SPACING * cost
