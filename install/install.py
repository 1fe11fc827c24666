#!/usr/bin/env python3
"""Drag-Fu installer: one command from a fresh machine to a working GIMP menu item.

    python3 install/install.py            # engine + torch for this machine + plug-in + doctor
    python3 install/install.py --uninstall

Runs on the Python the user has (>= 3.8), standard library only. It:
  1. finds a Python >= 3.10 for the engine and creates the engine's virtual environment in the
     user data folder (or uses --venv);
  2. installs the torch build for this machine (NVIDIA -> CUDA, Apple silicon -> default build
     with MPS, AMD on Linux -> ROCm, else CPU; --torch to choose, --no-torch to keep what is there);
  3. installs the engine from this checkout (--dev: editable);
  4. installs the plug-in into every GIMP 3.x / 2.10 plug-in folder found (or --plugin-dir), with
     the config `dragfu.json` the plug-in reads (engine command, models folder, device);
  5. records everything it made in a manifest, so that --uninstall removes exactly that;
  6. runs `dragfu doctor`.
A second run changes nothing and says so.
"""

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time

if sys.version_info < (3, 8):  # noqa: UP036  (the user's Python may be old)
    sys.exit(
        "Drag-Fu's installer needs Python 3.8 or newer (this is %d.%d)." % sys.version_info[:2]  # noqa: UP031
    )

from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent
MANIFEST_FORMAT = 1
ENGINE_PYTHON_MIN = (3, 10)
TORCH_REQUIREMENT = "torch>=2.1"
TORCH_INDEX = "https://download.pytorch.org/whl/"
#: CUDA wheel tags, newest first, with the lowest CUDA version the driver must report. CUDA's
#: minor-version compatibility lets any 12.x driver run the cu12x wheels (their binaries carry
#: compiled kernels for every supported GPU, no PTX JIT needed).
CUDA_TAGS = (("cu130", (13, 0)), ("cu128", (12, 0)), ("cu118", (11, 8)))
DEFAULT_ROCM = "rocm6.4"


def load_paths_module(checkout=CHECKOUT):
    """engine/dragfu/paths.py, loaded by file (the engine package is not installed yet).

    One source of truth for the data folder and GIMP's plug-in folders, shared with `dragfu doctor`.
    """
    location = checkout / "engine" / "dragfu" / "paths.py"
    name = "_dragfu_install_paths"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, str(location))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


class InstallError(Exception):
    def __init__(self, message, hint=""):
        Exception.__init__(self, message)
        self.hint = hint


# ---------------------------------------------------------------------------------------------
# What the machine has (injectable for tests)
# ---------------------------------------------------------------------------------------------


class Runner:
    """Runs commands. Tests replace it with a fake that records argv and simulates effects."""

    def run(self, argv, capture=False, env=None, timeout=None):
        """(exit code, stdout text or '')."""
        try:
            completed = subprocess.run(
                [str(a) for a in argv],
                stdout=subprocess.PIPE if capture else None,
                stderr=subprocess.STDOUT if capture else None,
                env=env,
                timeout=timeout,
                text=True,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return 127, str(error)
        return completed.returncode, completed.stdout or ""


class Machine:
    """OS, CPU, programs on PATH; `probe` runs a detection command and returns its output."""

    def __init__(self, host, runner, machine=None, which=None):
        self.host = host
        self.runner = runner
        self.machine = (machine or platform.machine() or "").lower()
        self._which = which

    def which(self, name):
        if self._which is not None:
            return self._which(name)
        return shutil.which(name, path=self.host.env.get("PATH"))

    def probe(self, argv):
        code, output = self.runner.run(argv, capture=True, timeout=30)
        return output if code == 0 else None


# ---------------------------------------------------------------------------------------------
# Torch build choice
# ---------------------------------------------------------------------------------------------


class TorchChoice:
    def __init__(self, build, index_url, reason):
        self.build = build  # "cu128", "rocm6.4", "cpu", "default"
        self.index_url = index_url
        self.reason = reason

    def pip_args(self):
        args = ["install", TORCH_REQUIREMENT]
        if self.index_url:
            args += ["--index-url", self.index_url]
        return args

    def __repr__(self):
        return f"TorchChoice({self.build!r}, {self.index_url!r})"


def _cuda_driver_version(machine):
    output = machine.probe(["nvidia-smi"])
    if not output:
        return None
    match = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", output)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _cuda_tag_for(driver):
    for tag, needs in CUDA_TAGS:
        if driver is None or driver >= needs:
            return tag
    return None


def choose_torch(machine, requested="auto"):
    """The torch build for this machine: what `--torch` asked for, or what the hardware says."""
    host = machine.host
    requested = (requested or "auto").lower()
    apple_silicon = host.is_macos and machine.machine in ("arm64", "aarch64")
    if requested in ("default", "pypi", "mps"):
        if requested == "mps" and not apple_silicon:
            raise InstallError("--torch mps needs a Mac with Apple silicon", "use --torch cpu")
        return TorchChoice("default", None, f"PyPI's default build (--torch {requested})")
    if requested == "cpu":
        if host.is_macos:
            return TorchChoice("default", None, "macOS wheels are the CPU/MPS build (--torch cpu)")
        return TorchChoice("cpu", TORCH_INDEX + "cpu", "CPU build (--torch cpu)")
    if requested == "cuda" or re.match(r"^cu\d+$", requested):
        if host.is_macos:
            raise InstallError("there is no CUDA build of torch for macOS", "use --torch auto")
        tag = requested if requested != "cuda" else _cuda_tag_for(_cuda_driver_version(machine))
        tag = tag or CUDA_TAGS[-1][0]
        return TorchChoice(tag, TORCH_INDEX + tag, f"CUDA build {tag} (--torch {requested})")
    if requested == "rocm" or re.match(r"^rocm\d+(\.\d+)*$", requested):
        if not host.system.startswith("linux"):
            raise InstallError("ROCm builds of torch exist for Linux only", "use --torch cpu")
        tag = requested if requested != "rocm" else DEFAULT_ROCM
        return TorchChoice(tag, TORCH_INDEX + tag, f"ROCm build {tag} (--torch {requested})")
    if requested != "auto":
        raise InstallError(
            f"unknown --torch value {requested!r}",
            "use auto, cpu, cuda, cu126 (any cuXYZ), rocm, rocm6.4, mps or default",
        )

    if host.is_macos:
        if apple_silicon:
            return TorchChoice("default", None, "Apple silicon: default build, GPU through MPS")
        return TorchChoice("default", None, "Intel Mac: default build, CPU only")
    if machine.which("nvidia-smi"):
        driver = _cuda_driver_version(machine)
        tag = _cuda_tag_for(driver)
        if tag is None:
            return TorchChoice(
                "cpu", TORCH_INDEX + "cpu",
                f"NVIDIA driver supports CUDA {driver[0]}.{driver[1]} only, older than any torch "
                "build: CPU build (update the driver, then rerun with --torch cuda)",
            )  # fmt: skip
        found = (
            f"driver supports CUDA {driver[0]}.{driver[1]}" if driver else "CUDA version unknown"
        )
        return TorchChoice(tag, TORCH_INDEX + tag, f"NVIDIA GPU ({found}): CUDA build {tag}")
    if host.system.startswith("linux") and (machine.which("rocminfo") or machine.which("rocm-smi")):
        return TorchChoice(
            DEFAULT_ROCM, TORCH_INDEX + DEFAULT_ROCM, "AMD GPU with ROCm: ROCm build"
        )
    return TorchChoice("cpu", TORCH_INDEX + "cpu", "no NVIDIA/ROCm GPU found: CPU build")


# ---------------------------------------------------------------------------------------------
# Finding a Python for the engine
# ---------------------------------------------------------------------------------------------

_PY_CHECK = "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"
_PY_VERSION_ONLY = "import sys; print('%d.%d' % sys.version_info[:2])"


def _python_version(machine, argv, need_venv=True):
    output = machine.probe(list(argv) + ["-c", _PY_CHECK if need_venv else _PY_VERSION_ONLY])
    if output:
        match = re.search(r"(\d+)\.(\d+)\s*$", output.strip())
        if match:
            return int(match.group(1)), int(match.group(2))
    return None


def python_candidates(machine, current=None):
    """argv prefixes that may start a Python, most wanted first."""
    current = current or sys.executable
    candidates = []
    if current:
        candidates.append([current])
    if machine.host.is_windows and machine.which("py"):
        candidates += [["py", f"-3.{minor}"] for minor in (13, 12, 11, 10)]
    for name in [f"python3.{minor}" for minor in (13, 12, 11, 10)] + ["python3", "python"]:
        found = machine.which(name)
        if found:
            candidates.append([found])
    unique = []
    for argv in candidates:
        if argv not in unique:
            unique.append(argv)
    return unique


def find_engine_python(machine, requested=None, current=None):
    """argv of a Python >= 3.10 that can make virtual environments."""
    tried = []
    candidates = [[requested]] if requested else python_candidates(machine, current)
    for argv in candidates:
        version = _python_version(machine, argv)
        if version is None:
            if _python_version(machine, argv, need_venv=False):
                tried.append("{} (no venv/ensurepip module)".format(" ".join(argv)))
            continue
        if version >= ENGINE_PYTHON_MIN:
            return argv, version
        tried.append(f"{' '.join(argv)} ({version[0]}.{version[1]})")
    hint = "install Python 3.10 or newer (python.org, or your package manager) and rerun"
    if any("venv" in t for t in tried):
        hint = "install your distribution's venv package (e.g. apt install python3-venv)"
    raise InstallError(
        "no Python >= 3.10 with venv found%s" % (": tried " + ", ".join(tried) if tried else ""),
        hint + "; or pass --python PATH",
    )


# ---------------------------------------------------------------------------------------------
# Files: hashes, copies, links, the manifest
# ---------------------------------------------------------------------------------------------


def sha256_file(path):
    digest = hashlib.sha256()
    with open(str(path), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def _source_files(folder):
    """Files under folder that belong in an install (no caches, no compiled files)."""
    result = []
    for root, dirs, files in os.walk(str(folder)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")) or name.startswith("."):
                continue
            result.append(Path(root) / name)
    return result


def engine_fingerprint(checkout, dev):
    """Changes when reinstalling the engine would change something."""
    digest = hashlib.sha256(b"dev" if dev else b"copy")
    files = [checkout / "pyproject.toml"]
    if not dev:  # an editable install sees source changes without reinstalling
        files += _source_files(checkout / "engine" / "dragfu")
        files += _source_files(checkout / "plugin" / "dragfu" / "dragfu_core")  # in the wheel too
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(checkout)).encode("utf-8"))
            digest.update(sha256_file(path).encode("ascii"))
    return digest.hexdigest()


class Manifest:
    """What an install made: paths (file/link/dir/tree) and facts about the environment."""

    def __init__(self, path, data=None):
        self.path = path
        self.data = data or {"format": MANIFEST_FORMAT, "entries": [], "plugins": []}

    @classmethod
    def load(cls, path):
        try:
            with open(str(path)) as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return cls(path)
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            return cls(path)
        data.setdefault("entries", [])
        data.setdefault("plugins", [])
        return cls(path, data)

    def entry(self, path):
        for item in self.data["entries"]:
            if item["path"] == str(path):
                return item
        return None

    def text(self):
        return json.dumps(self.data, indent=2, sort_keys=True) + "\n"


# ---------------------------------------------------------------------------------------------
# The installer
# ---------------------------------------------------------------------------------------------


class Installer:
    def __init__(self, options, host=None, machine=None, runner=None, paths_module=None, out=None):
        self.options = options
        self.paths = paths_module or load_paths_module(CHECKOUT)
        self.host = host or self.paths.Host()
        self.runner = runner or Runner()
        self.machine = machine or Machine(self.host, self.runner)
        self.checkout = Path(options.checkout).resolve() if options.checkout else CHECKOUT
        self.out = out or sys.stdout
        self.changes = []
        self.data_dir = self.paths.data_dir(self.host)
        self.manifest_path = self.paths.install_manifest_path(self.host)
        self.old = Manifest.load(self.manifest_path)
        self.new = Manifest(self.manifest_path)
        self.new.data["checkout"] = str(self.checkout)

    # --- output ---
    def say(self, text):
        print(text, file=self.out)
        self.out.flush()

    def changed(self, text):
        self.changes.append(text)
        self.say("  " + text)

    def record(self, **entry):
        entry["path"] = str(entry["path"])
        existing = self.new.entry(entry["path"])
        if existing is not None:
            existing.update(entry)
        else:
            self.new.data["entries"].append(entry)

    def run_checked(self, argv, what, done=None):
        """Run a step's command; `done` is the change it makes (reported once it succeeded)."""
        if self.options.dry_run:
            self.changed("would run: " + " ".join(shlex.quote(str(a)) for a in argv))
            return
        self.say("  running: " + " ".join(shlex.quote(str(a)) for a in argv))
        code, output = self.runner.run(argv)
        if code != 0:
            raise InstallError(
                f"{what} failed (exit code {code})",
                "see the output above; rerun this installer after fixing it (it resumes)",
            )
        if done:
            self.changed(done)

    # --- steps ---
    def install_steps(self):
        self._check_checkout()
        self.say(f"Drag-Fu installer (checkout {self.checkout})")
        self.say(f"data folder: {self.data_dir}")
        if not self.data_dir.exists():
            if not self.options.dry_run:
                self.data_dir.mkdir(parents=True)
            self.changed(f"created {self.data_dir}")
            self.record(path=self.data_dir, type="dir", created=True)
        else:
            old = self.old.entry(self.data_dir)
            if old:
                self.record(**old)
        engine_command = None
        if self.options.plugin_only:
            self.say("engine: skipped (--plugin-only)")
        else:
            engine_command = self.install_engine()
        if self.options.engine_command:
            # Windows paths keep their backslashes: split the way the shell there would.
            engine_command = shlex.split(
                self.options.engine_command, posix=not self.host.is_windows
            )
        if engine_command is None and self.old.data.get("engine_command"):
            engine_command = self.old.data["engine_command"]
        if engine_command is None:
            raise InstallError(
                "--plugin-only needs --engine-command (how the plug-in starts the engine)",
                'e.g. --engine-command "ssh gpu-box ~/.local/share/dragfu/engine-venv/bin/dragfu serve"',
            )
        self.new.data["engine_command"] = engine_command
        self.install_plugins(engine_command)

    def install(self):
        try:
            self.install_steps()
        except (InstallError, OSError):
            # Record what was made before the failure, so a rerun resumes and --uninstall
            # still removes it.
            self.keep_old_entries()
            if self.new.data["entries"] or self.manifest_path.exists():
                self.write_manifest()
            raise
        self.keep_old_entries()
        self.write_manifest()
        if self.changes:
            self.say(f"Done: {len(self.changes)} change(s).")
        else:
            self.say("Nothing changed: Drag-Fu is already installed and up to date.")
        command = self.new.data.get("engine_command")
        if command:
            self.say("The plug-in starts the engine with: " + " ".join(command))
        if not self.options.no_doctor and not self.options.plugin_only and not self.options.dry_run:
            self.run_doctor()
        return 0

    def _check_checkout(self):
        needed = ["pyproject.toml", "engine/dragfu/__init__.py", "plugin/dragfu/dragfu.py"]
        missing = [n for n in needed if not (self.checkout / n).exists()]
        if missing:
            raise InstallError(
                "{} is not a Drag-Fu checkout (missing {})".format(
                    self.checkout, ", ".join(missing)
                ),
                "run install/install.py from the checkout it belongs to",
            )

    # --- engine ---
    def venv_dir(self):
        return (
            Path(self.options.venv).expanduser()
            if self.options.venv
            else self.paths.venv_dir(self.host)
        )

    def install_engine(self):
        venv = self.venv_dir()
        python = self.paths.venv_python(venv, self.host)
        old_venv = self.old.data.get("venv") or {}
        venv_info = {"path": str(venv), "dev": bool(self.options.dev)}
        # Recorded as we go: a failed step leaves a manifest that says what was made so far.
        self.new.data["venv"] = venv_info
        if self.options.venv and (python.exists() or self.options.dry_run):
            self.say(f"engine environment: {venv} (given with --venv)")
            venv_info["created"] = bool(
                old_venv.get("created") and old_venv.get("path") == str(venv)
            )
        elif python.exists() and self._python_runs(python):
            self.say(f"engine environment: {venv} (exists)")
            venv_info["created"] = bool(old_venv.get("created")) or self.old.entry(venv) is not None
        else:
            base, version = find_engine_python(self.machine, self.options.python)
            self.say(f"engine Python: {' '.join(base)} ({version[0]}.{version[1]})")
            argv = list(base) + ["-m", "venv"]
            if self.options.system_site_packages:
                argv.append("--system-site-packages")
            self.run_checked(
                argv + [str(venv)], "creating the virtual environment",
                f"created the engine environment {venv}",
            )  # fmt: skip
            venv_info["created"] = True
            if not self.options.engine_no_deps:
                self.run_checked(
                    [python, "-m", "pip", "install", "--upgrade", "pip"], "upgrading pip"
                )
        if venv_info["created"]:
            self.record(path=venv, type="tree", created=True)

        if self.options.no_torch:
            self.say("torch: left as it is (--no-torch)")
            venv_info["torch"] = old_venv.get("torch")
        else:
            choice = choose_torch(self.machine, self.options.torch)
            self.say(f"torch: {choice.reason}")
            have_torch = (not self.options.dry_run) and self._imports(python, "torch")
            if have_torch and old_venv.get("torch") == choice.build:
                self.say(f"  torch {choice.build} already installed")
            else:
                self.run_checked(
                    [python, "-m", "pip"] + choice.pip_args(), "installing torch",
                    f"installed torch ({choice.build})",
                )  # fmt: skip
            venv_info["torch"] = choice.build

        fingerprint = engine_fingerprint(self.checkout, self.options.dev)
        up_to_date = (
            old_venv.get("engine_fingerprint") == fingerprint
            and old_venv.get("path") == str(venv)
            and not self.options.dry_run
            and self._imports(python, "dragfu")
        )
        if up_to_date:
            self.say("engine: up to date")
        else:
            argv = [python, "-m", "pip", "install"]
            if self.options.engine_no_deps:
                argv += ["--no-deps", "--no-build-isolation"]
            argv += ["-e", str(self.checkout)] if self.options.dev else [str(self.checkout)]
            editable = " (editable)" if self.options.dev else ""
            self.run_checked(
                argv,
                "installing the engine",
                f"installed the engine from {self.checkout}{editable}",
            )
        venv_info["engine_fingerprint"] = fingerprint
        if not venv_info["created"]:
            self.record(path=venv, type="pip", package="dragfu", python=str(python))
        return [str(self.paths.venv_script(venv, "dragfu", self.host)), "serve"]

    def _python_runs(self, python):
        code, _ = self.runner.run([python, "-c", "pass"], capture=True, timeout=60)
        return code == 0

    def _imports(self, python, module):
        code, _ = self.runner.run([python, "-c", "import " + module], capture=True, timeout=120)
        return code == 0

    # --- plug-in ---
    def plugin_targets(self):
        """[(layout, plug-in folder, label)]: layout is gimp3 or gimp2."""
        targets = []
        if self.options.plugin_dir:
            for folder in self.options.plugin_dir:
                folder = Path(folder).expanduser()
                version = self.options.gimp_version or ("2.10" if "2.10" in str(folder) else "3")
                layout = "gimp2" if version.startswith("2") else "gimp3"
                targets.append((layout, folder, f"--plugin-dir (GIMP {version})"))
            return targets
        for profile in self.paths.find_gimp_profiles(self.host):
            layout = "gimp3" if profile.major == 3 else "gimp2"
            targets.append((layout, profile.plugin_dir, profile.label))
        return targets

    def plugin_files(self, layout, folder):
        """[(source, destination, executable)] and the folders owned by us."""
        source_plugin = self.checkout / "plugin" / "dragfu"
        core = source_plugin / "dragfu_core"
        if layout == "gimp3":
            root = folder / "dragfu"
            entry = (source_plugin / "dragfu.py", root / "dragfu.py")
            core_dest = root / "dragfu_core"
            owned = [root]
            config = root / self.paths.PLUGIN_CONFIG_NAME
        else:
            gimp2 = self.checkout / "plugin" / "gimp2" / "dragfu_gimp2.py"
            entry = (gimp2, folder / "dragfu_gimp2.py")
            core_dest = folder / "dragfu_core"
            owned = [core_dest]
            config = folder / self.paths.PLUGIN_CONFIG_NAME
        return entry, (core, core_dest), owned, config

    def install_plugins(self, engine_command):
        targets = self.plugin_targets()
        if not targets:
            self.say(
                "GIMP plug-in: no GIMP 3.x or 2.10 user folder found. Start GIMP once (it makes "
                "its folder), then rerun this installer; or pass --plugin-dir DIR."
            )
            return
        for layout, folder, label in targets:
            self.say(f"GIMP plug-in: {label} -> {folder}")
            self.install_plugin(layout, folder, engine_command)
            if "flatpak" in label:
                # The sandboxed plug-in starts the engine on the host through flatpak-spawn.
                self.say(
                    "  Flatpak GIMP: allow it to start the engine on the host, once:\n"
                    "    flatpak override --user --talk-name=org.freedesktop.Flatpak org.gimp.GIMP"
                )
            elif "snap" in label:
                self.say(
                    "  Snap GIMP: strict confinement may stop it from starting the engine; "
                    "see docs/install.md (Troubleshooting) if the menu item cannot reach it."
                )
            self.new.data["plugins"].append(
                {"layout": layout, "plugin_dir": str(folder), "label": label,
                 "mode": "link" if self.options.dev else "copy"}
            )  # fmt: skip

    def _make_dir(self, folder):
        """mkdir -p, recording each folder this install creates (removed if empty at uninstall)."""
        missing = []
        probe = folder
        while not probe.exists():
            missing.append(probe)
            if probe.parent == probe:
                break
            probe = probe.parent
        for path in reversed(missing):
            if not self.options.dry_run:
                path.mkdir()
            self.record(path=path, type="dir", created=True)
        old = self.old.entry(folder)
        if old and not missing and self.new.entry(folder) is None:
            self.record(**old)

    def install_plugin(self, layout, folder, engine_command):
        (entry_src, entry_dest), (core_src, core_dest), owned, config = self.plugin_files(
            layout, folder
        )
        self._make_dir(folder)
        for path in owned:
            if path == entry_dest.parent and path != folder:
                self._make_dir(path)
        if self.options.dev:
            self.link(entry_src, entry_dest)
            self.link(core_src, core_dest)
        else:
            if core_dest.is_symlink():  # an earlier --dev install: never copy through the link
                if not self.options.dry_run:
                    core_dest.unlink()
                self.changed(f"removed the link {core_dest}")
            self.copy(entry_src, entry_dest, executable=True)
            expected = set()
            for source in _source_files(core_src):
                expected.add(core_dest / source.relative_to(core_src))
                self.copy(source, core_dest / source.relative_to(core_src))
            if core_dest.is_dir() and not core_dest.is_symlink():
                for stale in _source_files(core_dest):
                    if stale not in expected:  # a module the checkout no longer has
                        if not self.options.dry_run:
                            stale.unlink()
                        self.changed(f"removed {stale} (no longer in the plug-in)")
        for path in owned:
            self.record(path=path, type="tree", created=True)
        self.write_config(config, engine_command)

    def link(self, source, dest):
        if dest.is_symlink() and os.readlink(str(dest)) == str(source):
            self.record(path=dest, type="link", target=str(source))
            return
        if self.options.dry_run:
            self.changed(f"would link {dest} -> {source}")
            return
        self._remove_path(dest)
        try:
            os.symlink(str(source), str(dest), target_is_directory=source.is_dir())
        except OSError as error:  # e.g. Windows without the symlink privilege
            self.say(f"  cannot link {dest} ({error}): copying instead")
            if source.is_dir():
                for item in _source_files(source):
                    self.copy(item, dest / item.relative_to(source))
            else:
                self.copy(source, dest, executable=True)
            return
        self.changed(f"linked {dest} -> {source}")
        self.record(path=dest, type="link", target=str(source))

    def copy(self, source, dest, executable=False):
        digest = sha256_file(source)
        mode = 0o755 if executable else 0o644
        current = (
            dest.is_file()
            and not dest.is_symlink()
            and sha256_file(dest) == digest
            and (not executable or os.access(str(dest), os.X_OK))
        )
        if not current:
            if self.options.dry_run:
                self.changed(f"would copy {dest}")
            else:
                self._make_dir(dest.parent)
                if dest.is_symlink() or dest.is_dir():
                    self._remove_path(dest)
                tmp = dest.with_name(dest.name + ".dragfu-tmp")
                shutil.copyfile(str(source), str(tmp))
                os.chmod(str(tmp), mode)
                os.replace(str(tmp), str(dest))
                self.changed(f"copied {dest}")
        self.record(path=dest, type="file", sha256=digest, source=str(source))

    def config_document(self, engine_command):
        models_dir = (
            Path(self.options.models_dir).expanduser()
            if self.options.models_dir
            else self.paths.models_dir(self.host)
        )
        env = {}
        for name in ("DRAGFU_HOME", "DRAGFU_MODELS_DIR"):
            if self.host.env.get(name):
                env[name] = self.host.env[name]
        if self.options.models_dir:
            env["DRAGFU_MODELS_DIR"] = str(models_dir)
        for pair in self.options.engine_env or []:
            name, _, value = pair.partition("=")
            env[name] = value
        return {
            "engine_command": engine_command,
            "model": self.options.model,
            "models_dir": str(models_dir),
            "device": self.options.device,
            "engine_env": env,
            "installed_by": "install/install.py",
            "checkout": str(self.checkout),
        }

    def write_config(self, path, engine_command):
        data = (
            json.dumps(self.config_document(engine_command), indent=2, sort_keys=True) + "\n"
        ).encode("utf-8")
        digest = sha256_bytes(data)
        old = self.old.entry(path)
        if path.is_file():
            current = sha256_file(path)
            if current == digest:
                self.record(path=path, type="file", sha256=digest)
                return
            if old and old.get("sha256") != current and not self.options.reset_config:
                self.say(f"  kept your edited {path} (--reset-config rewrites it)")
                self.record(path=path, type="file", sha256=old.get("sha256"), edited=True)
                return
        if self.options.dry_run:
            self.changed(f"would write {path}")
        else:
            self._make_dir(path.parent)
            tmp = path.with_name(path.name + ".dragfu-tmp")
            with open(str(tmp), "wb") as handle:
                handle.write(data)
            os.replace(str(tmp), str(path))
            self.changed(f"wrote {path}")
        self.record(path=path, type="file", sha256=digest)

    def keep_old_entries(self):
        """Things an earlier install made that this run did not touch stay recorded (and installed)."""
        for item in self.old.data["entries"]:
            if self.new.entry(item["path"]) is None and (
                os.path.lexists(item["path"]) or item.get("type") == "pip"
            ):
                self.new.data["entries"].append(item)
        known = {p["plugin_dir"] for p in self.new.data["plugins"]}
        for plugin in self.old.data["plugins"]:
            if plugin["plugin_dir"] not in known and os.path.isdir(plugin["plugin_dir"]):
                self.new.data["plugins"].append(plugin)

    def write_manifest(self):
        self.new.data["format"] = MANIFEST_FORMAT
        self.new.data["entries"].sort(key=lambda item: item["path"])
        self.new.data["plugins"].sort(key=lambda item: item["plugin_dir"])
        old_text = self.old.text() if self.manifest_path.exists() else None
        # Keep the first install time: a rewrite with only a new timestamp is not a change.
        self.new.data["installed"] = self.old.data.get("installed") or time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime()
        )
        text = self.new.text()
        if text == old_text:
            return
        if self.options.dry_run:
            return
        self.manifest_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path.with_name(self.manifest_path.name + ".tmp")
        with open(str(tmp), "w") as handle:
            handle.write(text)
        os.replace(str(tmp), str(self.manifest_path))
        if old_text is None:
            self.changed(f"wrote the install manifest {self.manifest_path}")

    def run_doctor(self):
        venv = self.new.data.get("venv") or {}
        if not venv:
            return
        dragfu = self.paths.venv_script(Path(venv["path"]), "dragfu", self.host)
        self.say("\nChecking the install (dragfu doctor):")
        code, _ = self.runner.run([dragfu, "doctor"])
        if code not in (0, 1):
            self.say(f"dragfu doctor could not run (exit code {code})")

    # --- uninstall ---
    def _remove_path(self, path):
        path = Path(path)
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(str(path))

    def uninstall(self):
        if not self.manifest_path.exists():
            self.say(f"Nothing to uninstall: no install manifest at {self.manifest_path}.")
            return 0
        entries = self.old.data["entries"]
        # Deepest paths first, so a folder is empty by the time we look at it.
        ordered = sorted(entries, key=lambda e: len(Path(e["path"]).parts), reverse=True)
        for item in ordered:
            path = Path(item["path"])
            kind = item.get("type")
            if kind == "pip":
                if Path(item["python"]).exists():
                    if self.options.dry_run:
                        self.changed("would pip-uninstall dragfu from {}".format(item["python"]))
                    else:
                        self.runner.run([item["python"], "-m", "pip", "uninstall", "-y", "dragfu"])
                        self.changed("uninstalled the engine from {}".format(item["python"]))
                continue
            if not os.path.lexists(str(path)):
                continue
            if kind == "dir":
                try:
                    if not self.options.dry_run:
                        path.rmdir()
                    self.changed(f"removed {path}")
                except OSError:
                    self.say(f"  kept {path} (not empty: holds files this install did not make)")
                continue
            if self.options.dry_run:
                self.changed(f"would remove {path}")
                continue
            if kind == "file" and os.path.realpath(str(path.parent)) != os.path.abspath(
                str(path.parent)
            ):
                continue  # reached through a linked folder (a --dev link): never delete there
            if kind == "tree" and path.is_dir() and not path.is_symlink():
                shutil.rmtree(str(path))
            elif kind == "file" and path.is_dir() and not path.is_symlink():
                continue
            else:
                path.unlink()
            self.changed(f"removed {path}")
        if not self.options.dry_run:
            self.manifest_path.unlink()
            self.changed(f"removed {self.manifest_path}")
            try:
                if self.old.entry(self.data_dir) and not any(self.data_dir.iterdir()):
                    self.data_dir.rmdir()
            except OSError:
                pass
        models = self.paths.models_dir(self.host)
        if models.exists():
            self.say(f"Kept your models in {models} (delete the folder to free the space).")
        self.say("Drag-Fu is uninstalled.")
        return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="install.py",
        description="Install Drag-Fu: the engine (with the right torch) and the GIMP plug-in.",
    )
    engine = parser.add_argument_group("engine")
    engine.add_argument("--python", help="Python >= 3.10 for the engine (default: find one)")
    engine.add_argument("--venv", help="engine environment (default: <data folder>/engine-venv)")
    engine.add_argument(
        "--torch", default="auto",
        help="torch build: auto (default), cpu, cuda, cuXYZ (e.g. cu126), rocm, rocmX.Y, mps, default",
    )  # fmt: skip
    engine.add_argument("--no-torch", action="store_true", help="leave torch as it is")
    engine.add_argument(
        "--system-site-packages", action="store_true",
        help="let a new environment see the base Python's packages",
    )  # fmt: skip
    engine.add_argument(
        "--engine-no-deps", action="store_true",
        help="install the engine without its dependencies (an environment you prepared)",
    )  # fmt: skip
    engine.add_argument("--dev", action="store_true", help="editable engine, linked plug-in")
    plugin = parser.add_argument_group("GIMP plug-in")
    plugin.add_argument(
        "--plugin-dir", action="append",
        help="install the plug-in into this folder (repeatable) instead of GIMP's folders",
    )  # fmt: skip
    plugin.add_argument("--gimp-version", help="layout for --plugin-dir: 3 (default) or 2.10")
    plugin.add_argument("--plugin-only", action="store_true", help="no engine here (remote GPU)")
    plugin.add_argument(
        "--engine-command",
        help='command the plug-in runs, e.g. "ssh gpu-box /path/to/dragfu serve"',
    )
    plugin.add_argument(
        "--engine-env", action="append", metavar="NAME=VALUE",
        help="extra environment variable for the engine (repeatable)",
    )  # fmt: skip
    plugin.add_argument("--models-dir", help="models folder (default: <data folder>/models)")
    plugin.add_argument("--model", default="toy", help="model the dialog proposes (default toy)")
    plugin.add_argument("--device", default="auto", help="auto, cuda, mps or cpu (default auto)")
    plugin.add_argument("--reset-config", action="store_true", help="rewrite an edited dragfu.json")
    parser.add_argument("--uninstall", action="store_true", help="remove what the install made")
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would change, change nothing"
    )
    parser.add_argument("--no-doctor", action="store_true", help="skip `dragfu doctor` at the end")
    parser.add_argument("--checkout", help=argparse.SUPPRESS)
    return parser


def main(argv=None, host=None, machine=None, runner=None, out=None):
    parser = build_parser()
    options = parser.parse_args(argv)
    for pair in options.engine_env or []:
        if "=" not in pair or not pair.split("=", 1)[0]:
            parser.error(f"--engine-env needs NAME=VALUE, not {pair!r}")
    installer = Installer(options, host=host, machine=machine, runner=runner, out=out)
    try:
        if options.uninstall:
            return installer.uninstall()
        return installer.install()
    except OSError as error:  # a folder we may not write, a full disk...
        print(f"install.py: error: {error}", file=sys.stderr)
        return 2
    except InstallError as error:
        message = f"install.py: error: {error}"
        if error.hint:
            message += f"\n  fix: {error.hint}"
        print(message, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
