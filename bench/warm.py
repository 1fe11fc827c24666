"""The warm engine: time from pressing OK to the first drag step and to the first preview on the
canvas, cold vs warm, and again on a result layer (no projection). `python -m bench warm --json`.

Runs the plug-in's core (dragfu_core.job.run, the real EngineSession, a small in-memory host with
the live preview) with the real `dragfu serve` of this checkout on the toy model, CPU. "OK" =
job.run called; "first drag step" = the engine's first drag progress event reaching the plug-in
(one optimisation step done); "first preview" = the host's first preview_update (the preview of
step 0, pasted into the photo by the engine beside the drag, drawn by dragfu_core.live).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugin" / "dragfu"))

from dragfu_core import geometry, job, session, warm  # noqa: E402

TOY_PROJECTION = {"w_steps": 60, "wplus_steps": 30, "tune_steps": 30}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=5, help="warm runs of each kind (median)")
    parser.add_argument("--steps", type=int, default=10, help="drag steps per run")


class Host(job.Host):
    """One RGB layer in memory; insert_result makes the next layer (with its parasite); the
    preview layer is a bytearray, and the time of its first update is kept."""

    keeps_source = True
    live_preview = True
    first_preview = None

    def preview_update(self, area, rect, rgb):
        if Host.first_preview is None:
            Host.first_preview = time.perf_counter()

    def preview_remove(self):
        pass

    def __init__(self, rgb: np.ndarray, stroke, parasite=None):
        self.rgb, self.stroke, self.parasite = rgb, stroke, parasite
        self.new = None

    def layer_info(self):
        h, w = self.rgb.shape[:2]
        return job.LayerInfo("photo", w, h, (0, 0), 3)

    def strokes(self, which):
        return [([v for x, y in self.stroke for v in (x, y, x, y, x, y)], False, "stroke")]

    def selection_bounds(self):
        return None

    def read_pixels(self, rect):
        return bytearray(self.rgb[rect.y : rect.y2, rect.x : rect.x2].tobytes())

    def read_selection(self, rect):
        return None

    def layer_source(self, name):
        return self.parasite

    def insert_result(self, rect, pixels, name, frames, source=None):
        new = self.rgb.copy()
        new[rect.y : rect.y2, rect.x : rect.x2] = np.frombuffer(bytes(pixels), np.uint8).reshape(
            rect.height, rect.width, 3
        )
        self.new = (new, source)


class TimedSession(session.EngineSession):
    first_drag = None
    project = None  # the project result's own numbers (align, lookup) of the last run

    def _load_model(self, model):
        size = super()._load_model(model)
        if not getattr(self.client, "_timed", False):
            request = self.client.request

            def timed(type_, *args, **kwargs):
                result = request(type_, *args, **kwargs)
                if type_ == "project":
                    h = result.header
                    TimedSession.project = {
                        k: h.get(k) for k in ("seconds", "align_seconds", "cached", "resumed")
                    }
                return result

            self.client.request, self.client._timed = timed, True
        return size

    def _on_event(self, frame):
        if frame.header.get("stage") == "drag" and TimedSession.first_drag is None:
            TimedSession.first_drag = time.perf_counter()
        super()._on_event(frame)


def one_run(host, config):
    TimedSession.first_drag = Host.first_preview = None
    options = job.Options(region=geometry.REGION_POINTS, use_selection=False)
    started = time.perf_counter()
    result = job.run(host, options, config, session_factory=TimedSession)
    total = time.perf_counter() - started
    return {
        "to_first_drag_step_s": round(TimedSession.first_drag - started, 3),
        "to_first_preview_s": round(Host.first_preview - started, 3),
        "total_s": round(total, 3),
        "resumed": result.resumed,
        "project": TimedSession.project,
        "load_average": round(os.getloadavg()[0], 2),
    }


def engine_pid(config):
    argv, extra = session.engine_argv_env(config, job.Options())
    path, log, _ = warm.endpoint(argv, extra)
    client = warm.try_connect(path, log)
    if client is None:
        return None
    pid = client.hello_info["pid"]
    client.close()
    return pid


def stop_engine(config):
    pid = engine_pid(config)
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
                os.kill(pid, 0)
            except (OSError, ChildProcessError):
                break
            time.sleep(0.05)


def run(args: argparse.Namespace) -> dict:
    from dragfu.toy import render, sample_params

    base = Path(tempfile.mkdtemp(prefix="dragfu-bench-warm-", dir="/tmp"))
    os.environ["DRAGFU_RUNTIME_DIR"] = str(base / "run")
    os.environ["DRAGFU_CACHE_DIR"] = str(base / "cache")
    face = render(sample_params(np.random.default_rng(3)))
    size = face.shape[0]
    photo = np.empty((size + 40, size + 40, 3), np.uint8)
    photo[:] = face[0, 0]
    photo[20 : 20 + size, 20 : 20 + size] = face
    stroke = [(70.5, 90.5), (74.5, 90.5)]
    config = {
        "engine_command": [sys.executable, "-m", "dragfu.cli.main", "serve"],
        "engine_env": {"PYTHONPATH": str(REPO / "engine")},
        "device": "cpu",
        "model": "toy",
        "steps": args.steps,
        "project_settings": TOY_PROJECTION,
    }
    stdio = dict(config, warm_engine=False)
    warm_config = dict(config, warm_engine=True)
    out: dict = {"photo": list(photo.shape[:2]), "drag_steps": args.steps,
                 "projection": TOY_PROJECTION}  # fmt: skip
    try:
        out["stdio_cold_uncached"] = one_run(Host(photo, stroke), stdio)
        out["stdio_cold_cached"] = one_run(Host(photo, stroke), stdio)
        out["warm_cold_start_cached"] = one_run(Host(photo, stroke), warm_config)
        runs, again = [], []
        for _ in range(args.repeats):
            host = Host(photo, stroke)
            runs.append(one_run(host, warm_config))
            new, parasite = host.new
            again.append(one_run(Host(new, [(74.5, 90.5), (78.5, 88.5)], parasite), warm_config))
        out["warm_cached_runs"] = runs
        out["warm_result_layer_runs"] = again
        out["warm_cached_median_s"] = statistics.median(r["to_first_drag_step_s"] for r in runs)
        out["warm_result_layer_median_s"] = statistics.median(
            r["to_first_drag_step_s"] for r in again
        )
        out["warm_cached_first_preview_median_s"] = statistics.median(
            r["to_first_preview_s"] for r in runs
        )
        out["warm_result_layer_first_preview_median_s"] = statistics.median(
            r["to_first_preview_s"] for r in again
        )
        stop_engine(warm_config)  # a new GIMP session: the latent comes from the disk cache
        new, parasite = host.new
        out["warm_cold_start_result_layer"] = one_run(
            Host(new, [(74.5, 90.5), (78.5, 88.5)], parasite), warm_config
        )
    finally:
        stop_engine(warm_config)
        shutil.rmtree(base, ignore_errors=True)
    return out
