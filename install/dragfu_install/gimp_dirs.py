"""The plug-in into GIMP's folders (where: dragfu_core.layout), and its dragfu.json."""

import json
import os
import shutil
from pathlib import Path

from dragfu_install.machine import sha256_bytes, sha256_file
from dragfu_install.shared import layout, source_files


class PluginSteps:
    """Installer steps for the GIMP plug-in (mixed into installer.Installer)."""

    def plugin_targets(self):
        """[(layout, plug-in folder, label)]: layout is gimp3 or gimp2."""
        targets = []
        if self.options.plugin_dir:
            for folder in self.options.plugin_dir:
                folder = Path(folder).expanduser()
                version = self.options.gimp_version or ("2.10" if "2.10" in str(folder) else "3")
                targets.append(
                    (layout().layout_for_version(version), folder, f"--plugin-dir (GIMP {version})")
                )
            return targets
        for profile in self.paths.find_gimp_profiles(self.host):
            targets.append((profile.layout, profile.plugin_dir, profile.label))
        return targets

    def plugin_files(self, kind, folder):
        """((entry source, entry dest), (core source, core dest), owned folders, config path)."""
        files = layout().plugin_files(kind, str(folder), str(self.checkout))
        return (
            (Path(files.entry_source), Path(files.entry)),
            (Path(files.core_source), Path(files.core)),
            [Path(p) for p in files.owned],
            Path(files.config),
        )

    def install_plugins(self, engine_command):
        targets = self.plugin_targets()
        if not targets:
            self.say(
                "GIMP plug-in: no GIMP 3.x or 2.10 user folder found. Start GIMP once (it makes "
                "its folder), then rerun this installer; or pass --plugin-dir DIR."
            )
            return
        for kind, folder, label in targets:
            self.say(f"GIMP plug-in: {label} -> {folder}")
            self.install_plugin(kind, folder, engine_command)
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
                {"layout": kind, "plugin_dir": str(folder), "label": label,
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

    def install_plugin(self, kind, folder, engine_command):
        (entry_src, entry_dest), (core_src, core_dest), owned, config = self.plugin_files(
            kind, folder
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
            for source in source_files(core_src):
                expected.add(core_dest / source.relative_to(core_src))
                self.copy(source, core_dest / source.relative_to(core_src))
            if core_dest.is_dir() and not core_dest.is_symlink():
                for stale in source_files(core_dest):
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
                for item in source_files(source):
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
