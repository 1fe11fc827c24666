"""What the installer shares with the engine and the plug-in, loaded from the checkout.

The engine is not installed yet (and may need a newer Python than the one running this), so
nothing is imported as the `dragfu` package: engine/dragfu/paths.py is loaded by file, and the
plug-in core's folder (stdlib, Python 2.7/3.x) is put on sys.path for `dragfu_core.layout` and
`dragfu_core.config`.
"""

import importlib
import importlib.util
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]


def plugin_core_folder(checkout=CHECKOUT):
    return Path(checkout) / "plugin" / "dragfu"


def _core_module(name, checkout=CHECKOUT):
    folder = str(plugin_core_folder(checkout))
    if folder not in sys.path:
        # Appended: plugin/dragfu also holds dragfu.py (never imported here, but never first).
        sys.path.append(folder)
    return importlib.import_module("dragfu_core." + name)


def layout(checkout=CHECKOUT):
    """dragfu_core.layout: GIMP's plug-in folders, the plug-in's files, the manifest schema."""
    return _core_module("layout", checkout)


def plugin_config(checkout=CHECKOUT):
    """dragfu_core.config: dragfu.json and the engine command's parser."""
    return _core_module("config", checkout)


def load_paths_module(checkout=CHECKOUT):
    """engine/dragfu/paths.py, loaded by file: the data folder, venv layout, GIMP profiles."""
    name = "_dragfu_install_paths"
    if name in sys.modules:
        return sys.modules[name]
    layout(checkout)  # paths.py imports dragfu_core.layout
    location = Path(checkout) / "engine" / "dragfu" / "paths.py"
    spec = importlib.util.spec_from_file_location(name, str(location))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def source_files(folder):
    """Files under folder that belong in an install (Paths; the rule is layout.source_files)."""
    return [Path(p) for p in layout().source_files(str(folder))]
