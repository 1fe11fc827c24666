"""Take docs/images/gimp_dialog.png: the plug-in's dialog in the real GIMP 3 under Xvfb.

    sudo .venv/bin/python tests/gimp3/screenshot.py [OUT.png]
    sudo .venv/bin/python tests/gimp3/screenshot.py --window [OUT.png]   # the run's window

`--window` takes docs/images/gimp_drag_window.png instead: the run's own window ("Drag-Fu:
dragging", with Stop and keep / Cancel) during a drag with the fake engine (window_scene.py).

Uses the same GIMP 3 as the end-to-end tests (the machine's own or the Debian 13 chroot). GIMP
starts with its full UI on a virtual display, a script opens a toy-face image with a drag path
and a selection and calls the procedure interactively; once the dialog is up, ImageMagick's
`import` grabs its window.
"""

import os
import shlex
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402

GIMP_SCRIPT = r"""
import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gimp, Gegl
W, H = 384, 288
img = Gimp.Image.new(W, H, Gimp.ImageBaseType.RGB)
layer = Gimp.Layer.new(img, "photo", W, H, Gimp.ImageType.RGB_IMAGE, 100, Gimp.LayerMode.NORMAL)
img.insert_layer(layer, None, 0)
buf = layer.get_buffer()
buf.set(Gegl.Rectangle.new(0, 0, W, H), "R'G'B' u8", open(PHOTO, "rb").read())
buf.flush()
path = Gimp.Path.new(img, "drag")
img.insert_path(path, None, 0)
path.stroke_new_from_points(Gimp.PathStrokeType.BEZIER, [x for p in STROKE for x in (p[0], p[1]) * 3], False)
path.set_visible(True)
img.set_selected_paths([path])
img.select_rectangle(Gimp.ChannelOps.REPLACE, *SELECTION)
Gimp.Display.new(img)
proc = Gimp.get_pdb().lookup_procedure("plug-in-dragfu")
cfg = proc.create_config()
cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
cfg.set_property("image", img)
cfg.set_core_object_array("drawables", [layer])
proc.run(cfg)
"""

SHELL = r"""
set -u
export HOME={home} XDG_CONFIG_HOME={home}/.config LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin
mkdir -p /tmp/.X11-unix
Xvfb :77 -screen 0 1280x900x24 -nolisten tcp >/dev/null 2>&1 &
XVFB=$!
export DISPLAY=:77
sleep 2
gimp-3.0 --no-splash --batch-interpreter=python-fu-eval -b {batch} >{work}/gimp.log 2>&1 &
GIMP=$!
ID=""
for i in $(seq 1 120); do
  sleep 1
  ID=$(xwininfo -root -tree 2>/dev/null | grep '"Drag-Fu"' | head -n1 | awk '{{print $1}}')
  [ -n "$ID" ] && break
done
if [ -n "$ID" ]; then
  sleep 3
  import -window "$ID" {work}/dialog.png
fi
kill $GIMP 2>/dev/null; sleep 1; kill -9 $GIMP 2>/dev/null
kill $XVFB 2>/dev/null
[ -n "$ID" ]
"""


def toy_photo(width, height):
    """A toy face (renderer) on its own background, if the engine package is importable."""
    from dragfu.toy import render, sample_params

    face = render(sample_params(np.random.default_rng(5)))
    photo = np.empty((height, width, 3), np.uint8)
    photo[:] = face[0, 0]
    size = face.shape[0]
    x0, y0 = (width - size) // 2, (height - size) // 2
    photo[y0 : y0 + size, x0 : x0 + size] = face
    return photo, (x0, y0, size)


WINDOW_SHELL = r"""
for i in $(seq 1 480); do grep -q '^step 12' {work}/engine.log 2>/dev/null && break; sleep 0.25; done
ID=$(xwininfo -root -tree 2>/dev/null | grep '"Drag-Fu: dragging"' | head -n1 | awk '{{print $1}}')
[ -n "$ID" ] && import -window "$ID" {work}/window.png
for K in "Alt_L s" Escape; do
  [ -n "$ID" ] && python3 {work}/xkeys.py "$ID" $K
  sleep 3
  ID=$(xwininfo -root -tree 2>/dev/null | grep '"Drag-Fu: dragging"' | head -n1 | awk '{{print $1}}')
done
"""


def window_shot(out):
    """The run's own window mid-drag (the fake engine at 0.2 s a step)."""
    run = harness.GimpRun(harness.ensure_gimp(), harness.SLOW_FAKE_ENGINE)
    try:
        batch = run.gui_scene("window_scene.py", harness.WINDOW_SCENE_PARAMS, seed=5)
        proc = run.gui(batch, WINDOW_SHELL, display=77, timeout=300)
        shot = run.outside("work", "window.png")
        if not os.path.exists(shot):
            print("no run window found\n", proc.stdout, proc.stderr)
            return 1
        os.makedirs(os.path.dirname(out), exist_ok=True)
        shutil.copy(shot, out)
        print("wrote", out)
        return 0
    finally:
        run.cleanup()


def main():
    args = sys.argv[1:]
    if args and args[0] == "--window":
        default = os.path.join(harness.REPO, "docs", "images", "gimp_drag_window.png")
        return window_shot(args[1] if len(args) > 1 else default)
    out = args[0] if args else os.path.join(harness.REPO, "docs", "images", "gimp_dialog.png")
    mode = harness.ensure_gimp()
    run = harness.GimpRun(mode)
    try:
        photo, (x0, y0, size) = toy_photo(384, 288)
        photo.tofile(run.outside("work", "photo.raw"))
        stroke = [(x0 + size * 0.66, y0 + size * 0.72), (x0 + size * 0.74, y0 + size * 0.70)]
        script = "PHOTO = {!r}\nSTROKE = {!r}\nSELECTION = {!r}\n{}".format(
            run.path("work", "photo.raw"),
            stroke,
            (x0, y0, size, size),
            GIMP_SCRIPT,
        )
        with open(run.outside("work", "shot.py"), "w") as handle:
            handle.write(script)
        batch = "exec(open({!r}).read())".format(run.path("work", "shot.py"))
        shell = SHELL.format(
            home=shlex.quote(run.path("home")),
            work=shlex.quote(run.path("work")),
            batch=shlex.quote(batch),
        )
        if mode == "native":
            command = ["sh", "-c", shell]
        else:
            root = shlex.quote(harness.CHROOT)
            command = [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                f"mount -t proc proc {root}/proc && mount --rbind /dev {root}/dev && exec chroot {root} sh -c {shlex.quote(shell)}",
            ]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not os.path.exists(run.outside("work", "dialog.png")):
            log = (
                open(run.outside("work", "gimp.log")).read()
                if os.path.exists(run.outside("work", "gimp.log"))
                else ""
            )
            print("no dialog window found\n", proc.stdout, proc.stderr, log[-3000:])
            return 1
        os.makedirs(os.path.dirname(out), exist_ok=True)
        shutil.copy(run.outside("work", "dialog.png"), out)
        print("wrote", out)
        return 0
    finally:
        run.cleanup()


if __name__ == "__main__":
    sys.exit(main())
