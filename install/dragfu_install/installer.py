"""The install, step by step: data folder, engine (venv.py), plug-ins (gimp_dirs.py), manifest."""

import shlex
import sys
from pathlib import Path

from dragfu_install.gimp_dirs import PluginSteps
from dragfu_install.machine import InstallError, Machine, Runner
from dragfu_install.manifest import Manifest, ManifestSteps
from dragfu_install.shared import CHECKOUT, load_paths_module, plugin_config
from dragfu_install.venv import EngineSteps


class Installer(EngineSteps, PluginSteps, ManifestSteps):
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

    def run_checked(self, argv, what, done=None, hint=None):
        """Run a step's command; `done` is the change it makes (reported once it succeeded)."""
        if self.options.dry_run:
            self.changed("would run: " + " ".join(shlex.quote(str(a)) for a in argv))
            return
        self.say("  running: " + " ".join(shlex.quote(str(a)) for a in argv))
        code, output = self.runner.run(argv)
        if code != 0:
            raise InstallError(
                f"{what} failed (exit code {code})",
                hint or "see the output above; rerun this installer after fixing it (it resumes)",
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
            # The plug-in's own parser (the dialog uses it too): Windows paths keep backslashes.
            engine_command = plugin_config(self.checkout).parse_command(
                self.options.engine_command, windows=self.host.is_windows
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

    def run_doctor(self):
        venv = self.new.data.get("venv") or {}
        if not venv:
            return
        dragfu = self.paths.venv_script(Path(venv["path"]), "dragfu", self.host)
        self.say("\nChecking the install (dragfu doctor):")
        code, _ = self.runner.run([dragfu, "doctor"])
        if code not in (0, 1):
            self.say(f"dragfu doctor could not run (exit code {code})")
