"""`dragfu serve` ends when the process that started it dies, even when that one is killed outright.

GIMP may SIGKILL a plug-in; the engine then loses its client without a word. End of input ends an
idle engine (runtime.Server), but a busy one would finish its drag first, and a wrapper may keep
the pipe open. So: on Linux the kernel sends us a signal when the parent dies (prctl
PR_SET_PDEATHSIG, via ctypes), and on every POSIX system a watcher thread notices the parent's
pid change (we are re-parented to init or a subreaper). Either one ends the engine with SIGTERM,
as a kill from the plug-in would. PR_SET_PDEATHSIG fires when the *thread* that started us ends,
so its signal (SIGUSR2) only wakes a check of the parent's pid, never ends the engine by itself.
On Windows the plug-in's job object does this (dragfu_core.winjob).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger("dragfu.serve")

PR_SET_PDEATHSIG = 1
WAKE_SIGNAL = getattr(signal, "SIGUSR2", None)


def _set_pdeathsig(number: int) -> bool:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(number), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _orphaned() -> None:
    log.info("the process that started the engine is gone: stopping")
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10.0)  # a SIGTERM handler that does not exit: end anyway
    os._exit(1)


def watch_parent(interval: float = 1.0, on_orphaned=_orphaned) -> threading.Thread | None:
    """Call `on_orphaned()` (default: SIGTERM to ourselves) once the parent process is gone.

    Returns the watcher thread, or None where there is nothing to watch (Windows; a parent that
    is already init, e.g. a container's entry point or a daemon).
    """
    if os.name != "posix":
        return None
    parent = os.getppid()
    if parent <= 1:
        return None
    woken = threading.Event()
    if sys.platform.startswith("linux") and WAKE_SIGNAL is not None:
        try:
            signal.signal(WAKE_SIGNAL, lambda *_: woken.set())
        except ValueError:  # not the main thread: the watcher alone will do
            pass
        else:
            _set_pdeathsig(WAKE_SIGNAL)

    def watch() -> None:
        while True:
            if os.getppid() != parent:  # also covers a parent that died before prctl
                on_orphaned()
                return
            woken.wait(interval)
            woken.clear()

    thread = threading.Thread(target=watch, name="dragfu-parent-watch", daemon=True)
    thread.start()
    return thread
