"""Run the real GIMP 3 headless, with Drag-Fu installed, for the end-to-end tests.

Where the machine has GIMP 3 itself (`gimp-console-3.0` on PATH, e.g. Debian 13), it is used
directly. Otherwise a Debian 13 chroot with GIMP 3.0, Python plug-in support and Debian's CPU torch
is used, built by build_chroot.sh when missing (needs root and the Debian mirror; cached at
/var/cache/dragfu-gimp3-chroot or $DRAGFU_GIMP3_CHROOT, so later runs take seconds).

Each run gets a fresh GIMP home (the plug-in installed as plug-ins/dragfu/dragfu.py with
dragfu_core/ beside it, plus a dragfu.json), a copy of the engine package for the engine process
inside, and a work folder for the test's files; a Python script runs in GIMP through
`gimp-console-3.0 -i --quit --batch-interpreter=python-fu-eval`.
"""

import json
import os
import shutil
import subprocess
import tempfile
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
CHROOT = os.environ.get("DRAGFU_GIMP3_CHROOT", "/var/cache/dragfu-gimp3-chroot")
BUILD_SCRIPT = os.path.join(HERE, "build_chroot.sh")
GIMP_CONSOLE = "gimp-console-3.0"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


class Unavailable(Exception):
    """GIMP 3 cannot be had on this machine (no root for the chroot, no network...)."""


def native_gimp():
    return shutil.which(GIMP_CONSOLE)


def ensure_gimp(build_timeout=3600):
    """'native' or 'chroot'; builds the chroot when missing. Raises Unavailable with the reason."""
    if native_gimp():
        return "native"
    if os.path.isfile(os.path.join(CHROOT, ".dragfu-ready")):
        return "chroot"
    if os.geteuid() != 0:
        raise Unavailable("GIMP 3 is not installed and building its Debian 13 chroot needs root")
    for tool in ("unshare", "chroot", "mount"):
        if not shutil.which(tool):
            raise Unavailable(f"GIMP 3 is not installed and `{tool}` is missing for the chroot")
    try:
        proc = subprocess.run(
            ["sh", BUILD_SCRIPT, CHROOT], capture_output=True, text=True, timeout=build_timeout
        )
    except subprocess.TimeoutExpired:
        raise Unavailable(f"building the GIMP 3 chroot took over {build_timeout} s") from None
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise Unavailable("could not build the GIMP 3 chroot: " + " | ".join(tail))
    return "chroot"


# The fake engine slowed to 0.2 s a step, logging its steps (the run window's test and screenshot).
SLOW_FAKE_ENGINE = {
    "engine_command": [
        "python3", "{work}/fake_engine.py", "--resolution", "64", "--step-delay", "0.2",
        "--log", "{work}/engine.log",
    ]
}  # fmt: skip
WINDOW_SCENE_PARAMS = {"stroke": [[60.5, 80.5], [140.5, 80.5]], "steps": 60}

GUI_START = r"""
set -u
export HOME={home} XDG_CONFIG_HOME={home}/.config LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin
mkdir -p /tmp/.X11-unix
Xvfb :{display} -screen 0 1280x900x24 -nolisten tcp >/dev/null 2>&1 &
XVFB=$!
export DISPLAY=:{display}
sleep 2
gimp-3.0 --no-splash --batch-interpreter=python-fu-eval -b {batch} >{work}/gimp.log 2>&1 &
GIMP=$!
"""
GUI_END = r"""
kill $GIMP 2>/dev/null; sleep 1; kill -9 $GIMP 2>/dev/null
kill $XVFB 2>/dev/null
"""


def scene(name):
    """The text of a scene script for GIMP's GUI: scene_base.py, then tests/gimp3/NAME."""
    here = os.path.dirname(os.path.abspath(__file__))
    parts = [open(os.path.join(here, part)).read() for part in ("scene_base.py", name)]
    return "\n".join(parts)


class GimpRun:
    """One fresh GIMP home + work folder; `python(script)` runs a script in GIMP 3."""

    def __init__(self, mode, engine_config=None, install=False):
        self.mode = mode
        root = CHROOT if mode == "chroot" else "/"
        base = os.path.join(root, "tmp") if mode == "chroot" else tempfile.gettempdir()
        self.inner = "/tmp/dragfu-gimp3-" + uuid.uuid4().hex[:10] if mode == "chroot" else None
        self.outer = (
            os.path.join(base, os.path.basename(self.inner))
            if self.inner
            else tempfile.mkdtemp(prefix="dragfu-gimp3-")
        )
        if not self.inner:
            self.inner = self.outer
        os.makedirs(self.outer, exist_ok=True)
        self.home = self.path("home")
        plugin_dir = os.path.join(
            self.outer, "home", ".config", "GIMP", "3.0", "plug-ins", "dragfu"
        )
        self.installed_config = None
        if install:
            # What a user gets: install/install.py puts the plug-in into the plug-ins folder.
            self.installed_config = self._install(os.path.dirname(plugin_dir))
        else:
            shutil.copytree(os.path.join(REPO, "plugin", "dragfu"), plugin_dir, ignore=_IGNORE)
            os.chmod(os.path.join(plugin_dir, "dragfu.py"), 0o755)
        shutil.copytree(
            os.path.join(REPO, "engine", "dragfu"),
            os.path.join(self.outer, "engine", "dragfu"),
            ignore=_IGNORE,
        )
        shutil.copytree(  # the protocol's codec and client, which the engine imports
            os.path.join(REPO, "plugin", "dragfu", "dragfu_core"),
            os.path.join(self.outer, "engine", "dragfu_core"),
            ignore=_IGNORE,
        )
        self.work = self.path("work")
        os.makedirs(os.path.join(self.outer, "work"))
        config = {
            "engine_command": ["python3", "-m", "dragfu.cli.main", "serve"],
            "engine_env": {"PYTHONPATH": self.path("engine")},
            "device": "cpu",
            "model": "toy",
        }
        if self.installed_config:
            # The installer's settings, with the run's engine (inside the chroot) over them.
            config = dict(self.installed_config, **config)
        for key, value in (engine_config or {}).items():
            # "{work}" in a string stands for the run's work folder (as GIMP sees it).
            config[key] = self._fill(value)
        with open(os.path.join(plugin_dir, "dragfu.json"), "w") as handle:
            json.dump(config, handle, indent=2)

    def _install(self, plugins_folder):
        """Run `install/install.py --plugin-only --plugin-dir FOLDER`; returns its dragfu.json."""
        import sys

        env = dict(os.environ, HOME=self.outside("installer-home"))
        env["DRAGFU_HOME"] = self.outside("installer-data")
        command = [
            sys.executable, os.path.join(REPO, "install", "install.py"), "--plugin-only",
            "--plugin-dir", plugins_folder, "--gimp-version", "3",
            "--engine-command", "python3 -m dragfu.cli.main serve", "--device", "cpu",
            "--no-doctor",
        ]  # fmt: skip
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"install.py failed:\n{proc.stdout}{proc.stderr}")
        with open(os.path.join(plugins_folder, "dragfu", "dragfu.json")) as handle:
            return json.load(handle)

    def _fill(self, value):
        if isinstance(value, str):
            return value.replace("{work}", self.path("work"))
        if isinstance(value, list):
            return [self._fill(v) for v in value]
        return value

    def path(self, *parts):
        """A path as GIMP (inside the chroot) sees it."""
        return "/".join([self.inner] + list(parts))

    def outside(self, *parts):
        """The same path as this process sees it."""
        return os.path.join(self.outer, *parts)

    def python(self, script, timeout=600):
        """Run Python code in GIMP 3 (python-fu-eval). Returns (exit code, console output)."""
        script_path = self.outside("work", f"script_{uuid.uuid4().hex[:6]}.py")
        with open(script_path, "w") as handle:
            handle.write(script)
        inner_script = self.path("work", os.path.basename(script_path))
        batch = f"exec(open({inner_script!r}).read())"
        gimp = [GIMP_CONSOLE, "-i", "--quit", "--batch-interpreter=python-fu-eval", "-b", batch]
        env = {
            "HOME": self.home,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "XDG_CONFIG_HOME": self.path("home", ".config"),
            "XDG_CACHE_HOME": self.path("home", ".cache"),
            "DRAGFU_CACHE_DIR": self.path("home", "dragfu-cache"),
        }
        if self.mode == "native":
            command = gimp
        else:
            inner = " ".join(
                _quote(a)
                for a in ["env", "-i"] + ["{}={}".format(*kv) for kv in env.items()] + gimp
            )
            command = [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                "mount -t proc proc {root}/proc && mount --rbind /dev {root}/dev && exec chroot {root} {inner}".format(
                    root=_quote(CHROOT), inner=inner
                ),
            ]
            env = None
        proc = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return proc.returncode, proc.stdout + proc.stderr

    def gui_scene(self, name, params, seed):
        """Set up a scene for `gui` (scene_base.py + NAME): the fake engine and xkeys.py in the
        work folder, a 200x160 random photo, params (with "out" and "pixels" added). Returns the
        batch command that runs it."""
        import numpy as np

        here = os.path.dirname(os.path.abspath(__file__))
        fakes = (
            os.path.join(REPO, "tests", "gimp2_shim", "fake_engine.py"),
            os.path.join(REPO, "tests", "protocol_vectors", "serve_fake_engine.py"),
        )  # the second: the Backend the first imports
        for source in fakes + (os.path.join(here, "xkeys.py"),):
            shutil.copy(source, self.outside("work", os.path.basename(source)))
        rng = np.random.default_rng(seed)
        rng.integers(0, 200, (160, 200, 3), dtype=np.uint8).tofile(
            self.outside("work", "photo.raw")
        )
        params = dict(params, out=self.path("work"), pixels=self.path("work", "photo.raw"))
        with open(self.outside("work", "params.json"), "w") as handle:
            json.dump(params, handle)
        with open(self.outside("work", "scene.py"), "w") as handle:
            handle.write("PARAMS = {!r}\n".format(self.path("work", "params.json")) + scene(name))
        return "exec(open({!r}).read())".format(self.path("work", "scene.py"))

    def gui(self, batch, script, display, timeout=400):
        """GIMP 3 with its full UI on a virtual display (Xvfb :display) running the batch command
        `batch`, while the shell `script` drives it ({home}, {work}, {display} filled in; $GIMP
        is GIMP's pid); both stopped at the end. Returns the CompletedProcess."""
        fill = {"home": _quote(self.path("home")), "work": _quote(self.path("work")),
                "batch": _quote(batch), "display": display}  # fmt: skip
        return self.shell(GUI_START.format(**fill) + script.format(**fill) + GUI_END, timeout)

    def shell(self, script, timeout=400):
        """Run a shell script where GIMP runs (inside the chroot, with /proc and /dev mounted);
        returns the CompletedProcess (text output)."""
        if self.mode == "native":
            command = ["sh", "-c", script]
        else:
            root = _quote(CHROOT)
            command = [
                "unshare", "-m", "--propagation", "private", "sh", "-c",
                f"mount -t proc proc {root}/proc && mount --rbind /dev {root}/dev && "
                f"exec chroot {root} sh -c {_quote(script)}",
            ]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)

    def cleanup(self):
        shutil.rmtree(self.outer, ignore_errors=True)


def _quote(text):
    import shlex

    return shlex.quote(text)
