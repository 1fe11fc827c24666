"""Where the plug-in lives in GIMP's folders, what files make it up, and the install manifest.

The one description of these, shared by the installer (install/dragfu_install, on the user's
Python >= 3.8, before any engine exists) and by `dragfu doctor` (in the engine's environment,
where this folder is the top-level package `dragfu_core`). Standard library only, Python 2.7 and
3.x, no pathlib: paths are strings; every function takes the operating system (`sys.platform`
style: linux, darwin, win32), the environment and the home folder, so that tests simulate Windows
and macOS on Linux.

GIMP user folders (a profile exists once GIMP has run):
  Linux    $XDG_CONFIG_HOME/GIMP/<version> (default ~/.config/GIMP/<version>),
           Flatpak ~/.var/app/org.gimp.GIMP/config/GIMP/<version>,
           Snap ~/snap/gimp/current/.config/GIMP/<version>
  macOS    ~/Library/Application Support/GIMP/<version>
  Windows  %APPDATA%\\GIMP\\<version>
  any      $GIMP3_DIRECTORY (GIMP 3) / $GIMP2_DIRECTORY (2.10) replace the native profile
The installed plug-in, in a profile's plug-ins/ folder:
  gimp3    dragfu/dragfu.py (executable), dragfu/dragfu_core/, dragfu/dragfu.json
  gimp2    dragfu_gimp2.py, dragfu_core/, dragfu.json
The manifest (install-manifest.json in the data folder), format 1:
  {"format": 1, "checkout": str, "installed": str, "engine_command": [str],
   "venv": {"path", "created", "dev", "torch", "engine_fingerprint"},
   "entries": [{"path", "type": dir|file|link|tree|pip, ...}],
   "plugins": [{"layout": gimp3|gimp2, "plugin_dir", "label", "mode": copy|link}]}
  file entries carry "sha256" and, when copied from the checkout, "source"; link entries "target".
"""

import json
import os
import re

CONFIG_NAME = "dragfu.json"
MANIFEST_NAME = "install-manifest.json"
MANIFEST_FORMAT = 1
ENTRY_TYPES = ("dir", "file", "link", "tree", "pip")
LAYOUTS = ("gimp3", "gimp2")
FLATPAK_APP = "org.gimp.GIMP"

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)$")


def _is_windows(system):
    return system.startswith("win")


# ---------------------------------------------------------------------------------------------
# GIMP's user folders
# ---------------------------------------------------------------------------------------------


class GimpProfile(object):
    """One GIMP user folder (the one holding gimprc, plug-ins/, ...)."""

    def __init__(self, version, profile_dir, flavour):
        self.version = version  # "3.0", "3.2", "2.10"
        self.profile_dir = profile_dir
        self.flavour = flavour  # native, flatpak, snap, env

    @property
    def plugin_dir(self):
        return os.path.join(self.profile_dir, "plug-ins")

    @property
    def major(self):
        return int(self.version.split(".")[0])

    @property
    def layout(self):
        return "gimp3" if self.major == 3 else "gimp2"

    @property
    def label(self):
        return "GIMP %s (%s)" % (self.version, self.flavour)

    def __repr__(self):
        return "GimpProfile(%r, %r, %r)" % (self.version, self.profile_dir, self.flavour)


def gimp_config_roots(system, env, home):
    """[(flavour, folder holding <version>/ profile folders)] in the order GIMP's packages use."""
    home = str(home)
    if _is_windows(system):
        appdata = env.get("APPDATA") or os.path.join(home, "AppData", "Roaming")
        return [("native", os.path.join(appdata, "GIMP"))]
    if system == "darwin":
        return [("native", os.path.join(home, "Library", "Application Support", "GIMP"))]
    xdg_config = env.get("XDG_CONFIG_HOME", "").strip()
    native = os.path.join(xdg_config, "GIMP") if xdg_config else os.path.join(home, ".config", "GIMP")
    return [
        ("native", native),
        ("flatpak", os.path.join(home, ".var", "app", FLATPAK_APP, "config", "GIMP")),
        # Snap keeps the profile under its per-revision home; `current` is the live revision.
        ("snap", os.path.join(home, "snap", "gimp", "current", ".config", "GIMP")),
    ]


def version_key(version):
    match = _VERSION_RE.match(version)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def supported_version(version):
    major, minor = version_key(version)
    return major == 3 or (major, minor) == (2, 10)


def find_gimp_profiles(system, env, home):
    """Every existing GIMP 3.x / 2.10 user folder, newest version first.

    `GIMP3_DIRECTORY` / `GIMP2_DIRECTORY` (GIMP's own overrides) replace the native GIMP 3 / 2.10
    profile and are reported even before GIMP's first run.
    """
    found = []
    seen = set()

    def add(profile):
        key = os.path.normcase(os.path.abspath(profile.profile_dir))
        if key not in seen:
            seen.add(key)
            found.append(profile)

    overrides = {}
    for major, variable, version in ((3, "GIMP3_DIRECTORY", "3.0"), (2, "GIMP2_DIRECTORY", "2.10")):
        value = env.get(variable, "").strip()
        if value:
            overrides[major] = True
            add(GimpProfile(version, _expand_home(value, home), "env"))

    for flavour, root in gimp_config_roots(system, env, home):
        try:
            names = sorted(os.listdir(root), key=version_key, reverse=True)
        except OSError:
            continue
        for name in names:
            if not _VERSION_RE.match(name) or not supported_version(name):
                continue
            replaced = overrides.get(version_key(name)[0]) and flavour == "native"
            if os.path.isdir(os.path.join(root, name)) and not replaced:
                add(GimpProfile(name, os.path.join(root, name), flavour))
    found.sort(key=lambda p: version_key(p.version), reverse=True)
    return found


def _expand_home(value, home):
    if value == "~" or value.startswith("~/") or value.startswith("~\\"):
        return str(home) + value[1:]
    return value


def layout_for_version(version):
    """gimp3 for "3", "3.0", "3.2"...; gimp2 for "2.10"."""
    return "gimp2" if str(version).startswith("2") else "gimp3"


# ---------------------------------------------------------------------------------------------
# The installed plug-in's files
# ---------------------------------------------------------------------------------------------


class PluginFiles(object):
    """The files of one installed plug-in: sources in the checkout, destinations in plug-ins/."""

    def __init__(self, layout, plugin_dir, checkout=None):
        if layout not in LAYOUTS:
            raise ValueError("unknown plug-in layout %r (gimp3 or gimp2)" % (layout,))
        self.layout = layout
        self.plugin_dir = plugin_dir
        plugin_src = os.path.join(checkout, "plugin", "dragfu") if checkout else None
        self.core_source = os.path.join(plugin_src, "dragfu_core") if plugin_src else None
        if layout == "gimp3":
            root = os.path.join(plugin_dir, "dragfu")
            self.entry = os.path.join(root, "dragfu.py")
            self.entry_source = os.path.join(plugin_src, "dragfu.py") if plugin_src else None
            self.core = os.path.join(root, "dragfu_core")
            self.owned = [root]  # folders that are ours alone (removed whole at uninstall)
        else:
            self.entry = os.path.join(plugin_dir, "dragfu_gimp2.py")
            self.entry_source = (
                os.path.join(checkout, "plugin", "gimp2", "dragfu_gimp2.py") if checkout else None
            )
            self.core = os.path.join(plugin_dir, "dragfu_core")
            self.owned = [self.core]
        self.config = os.path.join(os.path.dirname(self.entry), CONFIG_NAME)


def plugin_files(layout, plugin_dir, checkout=None):
    return PluginFiles(layout, plugin_dir, checkout)


def source_files(folder):
    """Files under folder that belong in an install (no caches, no compiled or hidden files)."""
    result = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")) or name.startswith("."):
                continue
            result.append(os.path.join(root, name))
    return result


# ---------------------------------------------------------------------------------------------
# The install manifest
# ---------------------------------------------------------------------------------------------


def empty_manifest():
    return {"format": MANIFEST_FORMAT, "entries": [], "plugins": []}


def parse_manifest(text):
    """The manifest's dict, checked against the schema; ValueError when it is not one."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the manifest is not a JSON object")
    if data.get("format") != MANIFEST_FORMAT:
        raise ValueError("manifest format %r, expected %d" % (data.get("format"), MANIFEST_FORMAT))
    data.setdefault("entries", [])
    data.setdefault("plugins", [])
    if not isinstance(data["entries"], list) or not isinstance(data["plugins"], list):
        raise ValueError("manifest entries and plugins must be lists")
    for item in data["entries"]:
        if not isinstance(item, dict) or not isinstance(item.get("path"), _string_types()):
            raise ValueError("manifest entry without a path: %r" % (item,))
        if item.get("type") not in ENTRY_TYPES:
            raise ValueError("manifest entry of unknown type: %r" % (item,))
    for plugin in data["plugins"]:
        if not isinstance(plugin, dict) or plugin.get("layout") not in LAYOUTS:
            raise ValueError("manifest plug-in of unknown layout: %r" % (plugin,))
        if not isinstance(plugin.get("plugin_dir"), _string_types()):
            raise ValueError("manifest plug-in without a folder: %r" % (plugin,))
    return data


def load_manifest(path):
    """The manifest at path; an empty one when it is missing, unreadable or of another format."""
    try:
        with open(str(path), "rb") as handle:
            return parse_manifest(handle.read().decode("utf-8"))
    except (IOError, OSError, ValueError):
        return empty_manifest()


def manifest_text(data):
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def entries_under(manifest, folder):
    """The manifest's entries for paths inside folder."""
    prefix = os.path.join(str(folder), "")
    return [item for item in manifest.get("entries", []) if item["path"].startswith(prefix)]


def _string_types():
    try:
        return (str, unicode)  # noqa: F821  (Python 2.7)
    except NameError:
        return (str,)
