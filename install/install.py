#!/usr/bin/env python3
"""Drag-Fu installer: one command from a fresh machine to a working GIMP menu item.

    python3 install/install.py            # engine + torch for this machine + plug-in + doctor
    python3 install/install.py --uninstall

Runs on the Python the user has (>= 3.8), standard library only. It:
  1. finds a Python >= 3.10 for the engine and creates the engine's virtual environment in the
     user data folder (or uses --venv);
  2. installs the torch build for this machine (NVIDIA -> CUDA, Apple silicon -> default build
     with MPS, AMD on Linux -> ROCm, else CPU; --torch to choose, --torch-index for its index,
     --no-torch to keep what is there);
  3. installs the engine from this checkout (--dev: editable);
  4. installs the plug-in into every GIMP 3.x / 2.10 plug-in folder found (or --plugin-dir), with
     the config `dragfu.json` the plug-in reads (engine command, models folder, device);
  5. records everything it made in a manifest, so that --uninstall removes exactly that;
  6. runs `dragfu doctor`.
A second run changes nothing and says so. The work is done by the package dragfu_install beside
this file (its __init__ lists the parts).
"""

import os
import sys

if sys.version_info < (3, 8):  # noqa: UP036  (the user's Python may be old)
    sys.exit(
        "Drag-Fu's installer needs Python 3.8 or newer (this is %d.%d)." % sys.version_info[:2]  # noqa: UP031
    )

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dragfu_install.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
