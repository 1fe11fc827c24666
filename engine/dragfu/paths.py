"""Where Drag-Fu keeps things: user data, cache, config, models; and where GIMP keeps plug-ins.

This module is shared with the stdlib-only installer (install/dragfu_install loads this file by
path, without importing the `dragfu` package, on the user's Python >= 3.8). So: standard library
only (platformdirs is imported lazily and optional), no syntax newer than Python 3.8. GIMP's
folders and the plug-in's files are `dragfu_core.layout`'s (the plug-in core, shipped in the wheel
and found beside the engine in a checkout), shared the same way.

Every function takes an optional `Host` (operating system, environment, home folder) so that tests
can simulate Windows and macOS layouts on Linux; `None` means this machine.

Overrides: `DRAGFU_HOME` puts everything under one folder (data = DRAGFU_HOME, models, cache and
config in sub-folders); `DRAGFU_MODELS_DIR` moves the models folder alone.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

try:
    from dragfu_core import layout
except ImportError:  # a source checkout: the plug-in core lies beside the engine
    # Appended: plugin/dragfu also holds dragfu.py, which must never shadow the engine.
    sys.path.append(str(Path(__file__).resolve().parents[2] / "plugin" / "dragfu"))
    from dragfu_core import layout

APP_NAME = "dragfu"
MANIFEST_NAME = layout.MANIFEST_NAME
USER_REGISTRY_NAME = "dragfu-models.json"
PLUGIN_CONFIG_NAME = layout.CONFIG_NAME


@dataclass(frozen=True)
class Host:
    """What the path rules depend on. `system` is `sys.platform`-like: linux, darwin or win32."""

    system: str = field(default_factory=lambda: sys.platform)
    env: dict = field(default_factory=lambda: dict(os.environ))
    home: Path = field(default_factory=Path.home)

    @property
    def is_windows(self) -> bool:
        return self.system.startswith("win")

    @property
    def is_macos(self) -> bool:
        return self.system == "darwin"


def _host(host: Host | None) -> Host:
    return host if host is not None else Host()


def _is_this_machine(host: Host) -> bool:
    return host.system == sys.platform and host.env == dict(os.environ) and host.home == Path.home()


def _stdlib_dir(kind: str, host: Host) -> Path:
    """platformdirs' rules (appauthor=False) for kind in data/config/cache, without platformdirs."""
    env, home = host.env, host.home
    if host.is_windows:
        local = Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local")
        return local / APP_NAME / "Cache" if kind == "cache" else local / APP_NAME
    if host.is_macos:
        if kind == "cache":
            return home / "Library" / "Caches" / APP_NAME
        return home / "Library" / "Application Support" / APP_NAME
    xdg = {"data": "XDG_DATA_HOME", "config": "XDG_CONFIG_HOME", "cache": "XDG_CACHE_HOME"}[kind]
    default = {"data": ".local/share", "config": ".config", "cache": ".cache"}[kind]
    base = env.get(xdg, "").strip()
    return Path(base if base else home / default) / APP_NAME


def _platform_dir(kind: str, host: Host) -> Path:
    # platformdirs knows the real Windows known-folder API; use it for this machine when present.
    if _is_this_machine(host):
        try:
            import platformdirs
        except ImportError:
            pass
        else:
            function = getattr(platformdirs, f"user_{kind}_dir")
            return Path(function(APP_NAME, appauthor=False))
    return _stdlib_dir(kind, host)


def dragfu_home(host: Host | None = None) -> Path | None:
    value = _host(host).env.get("DRAGFU_HOME", "").strip()
    return Path(value).expanduser() if value else None


def data_dir(host: Host | None = None) -> Path:
    """The engine's virtual environment, the install manifest and (by default) the models live here."""
    host = _host(host)
    home = dragfu_home(host)
    return home if home is not None else _platform_dir("data", host)


def cache_dir(host: Host | None = None) -> Path:
    host = _host(host)
    home = dragfu_home(host)
    return home / "cache" if home is not None else _platform_dir("cache", host)


def config_dir(host: Host | None = None) -> Path:
    host = _host(host)
    home = dragfu_home(host)
    return home / "config" if home is not None else _platform_dir("config", host)


def models_dir(host: Host | None = None) -> Path:
    host = _host(host)
    value = host.env.get("DRAGFU_MODELS_DIR", "").strip()
    if value:
        return Path(value).expanduser()
    return data_dir(host) / "models"


def venv_dir(host: Host | None = None) -> Path:
    return data_dir(host) / "engine-venv"


def install_manifest_path(host: Host | None = None) -> Path:
    return data_dir(host) / MANIFEST_NAME


def user_registry_path(host: Host | None = None) -> Path:
    """Hashes of verified downloads and accepted licences live next to the models they describe."""
    return models_dir(host) / USER_REGISTRY_NAME


def venv_python(venv: Path, host: Host | None = None) -> Path:
    if _host(host).is_windows:
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def venv_script(venv: Path, name: str, host: Host | None = None) -> Path:
    if _host(host).is_windows:
        return venv / "Scripts" / f"{name}.exe"
    return venv / "bin" / name


# ---------------------------------------------------------------------------------------------
# GIMP plug-in folders: the rules are dragfu_core.layout's (shared with the installer)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GimpProfile:
    """One GIMP user folder (the one holding gimprc, plug-ins/, ...)."""

    version: str  # "3.0", "3.2", "2.10"
    profile_dir: Path
    flavour: str  # native, flatpak, snap, env (GIMP3_DIRECTORY / GIMP2_DIRECTORY)

    @property
    def plugin_dir(self) -> Path:
        return self.profile_dir / "plug-ins"

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def layout(self) -> str:
        return "gimp3" if self.major == 3 else "gimp2"

    @property
    def label(self) -> str:
        return f"GIMP {self.version} ({self.flavour})"


def gimp_config_roots(host: Host | None = None) -> list[tuple[str, Path]]:
    """(flavour, folder holding <version>/ profile folders) in the order GIMP's packages use them."""
    host = _host(host)
    return [
        (flavour, Path(root))
        for flavour, root in layout.gimp_config_roots(host.system, host.env, host.home)
    ]


def find_gimp_profiles(host: Host | None = None) -> list[GimpProfile]:
    """Every existing GIMP 3.x / 2.10 user folder, newest version first (dragfu_core.layout)."""
    host = _host(host)
    return [
        GimpProfile(p.version, Path(p.profile_dir), p.flavour)
        for p in layout.find_gimp_profiles(host.system, host.env, host.home)
    ]
