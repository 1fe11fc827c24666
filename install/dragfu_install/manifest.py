"""What an install made (the schema is dragfu_core.layout's, which `dragfu doctor` reads too)."""

import os
import shutil
import time
from pathlib import Path

from dragfu_install.shared import layout


class Manifest:
    """Paths an install made (file/link/dir/tree/pip) and facts about the environment."""

    def __init__(self, path, data=None):
        self.path = path
        self.data = data or layout().empty_manifest()

    @classmethod
    def load(cls, path):
        return cls(path, layout().load_manifest(str(path)))

    def entry(self, path):
        for item in self.data["entries"]:
            if item["path"] == str(path):
                return item
        return None

    def text(self):
        return layout().manifest_text(self.data)


class ManifestSteps:
    """Writing the manifest, and --uninstall from it (mixed into installer.Installer)."""

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
        self.new.data["format"] = layout().MANIFEST_FORMAT
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
            self._uninstall_entry(item)
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

    def _uninstall_entry(self, item):
        path = Path(item["path"])
        kind = item.get("type")
        if kind == "pip":
            if Path(item["python"]).exists():
                if self.options.dry_run:
                    self.changed("would pip-uninstall dragfu from {}".format(item["python"]))
                else:
                    self.runner.run([item["python"], "-m", "pip", "uninstall", "-y", "dragfu"])
                    self.changed("uninstalled the engine from {}".format(item["python"]))
            return
        if not os.path.lexists(str(path)):
            return
        if kind == "dir":
            try:
                if not self.options.dry_run:
                    path.rmdir()
                self.changed(f"removed {path}")
            except OSError:
                self.say(f"  kept {path} (not empty: holds files this install did not make)")
            return
        if self.options.dry_run:
            self.changed(f"would remove {path}")
            return
        if kind == "file" and os.path.realpath(str(path.parent)) != os.path.abspath(
            str(path.parent)
        ):
            return  # reached through a linked folder (a --dev link): never delete there
        if kind == "tree" and path.is_dir() and not path.is_symlink():
            shutil.rmtree(str(path))
        elif kind == "file" and path.is_dir() and not path.is_symlink():
            return
        else:
            path.unlink()
        self.changed(f"removed {path}")
