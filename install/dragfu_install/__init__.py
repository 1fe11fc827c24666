"""Drag-Fu's installer as a package (standard library only, Python >= 3.8).

install/install.py is the entry point; the parts:
  shared        loads what the installer shares with the engine and the plug-in from the checkout:
                engine/dragfu/paths.py (data folders) and dragfu_core.layout (GIMP's plug-in
                folders, the installed plug-in's files, the manifest's schema; `dragfu doctor`
                reads the same module), dragfu_core.config (the engine command's parser)
  machine       Runner (runs commands; tests replace it), Machine (OS, CPU, programs), InstallError
  torch_choice  the torch build for this machine, the index it comes from, the user's pip config
  venv          a Python >= 3.10 for the engine, its virtual environment, torch and the engine
  gimp_dirs     the plug-in into GIMP's folders: copies or --dev links, dragfu.json
  manifest      what an install made (so a rerun changes nothing and --uninstall removes it)
  installer     the steps in order;  cli  the options and main()
"""

from dragfu_install.cli import build_parser, main
from dragfu_install.machine import InstallError, Machine, Runner, sha256_bytes, sha256_file
from dragfu_install.manifest import Manifest
from dragfu_install.shared import CHECKOUT, load_paths_module, source_files
from dragfu_install.torch_choice import (
    CUDA_TAGS,
    DEFAULT_ROCM,
    TORCH_INDEX,
    TORCH_REQUIREMENT,
    TorchChoice,
    choose_torch,
    user_pip_index,
)
from dragfu_install.venv import ENGINE_PYTHON_MIN, engine_fingerprint, find_engine_python

__all__ = [
    "CHECKOUT", "CUDA_TAGS", "DEFAULT_ROCM", "ENGINE_PYTHON_MIN", "TORCH_INDEX",
    "TORCH_REQUIREMENT", "InstallError", "Machine", "Manifest", "Runner", "TorchChoice",
    "build_parser", "choose_torch", "engine_fingerprint", "find_engine_python",
    "load_paths_module", "main", "sha256_bytes", "sha256_file", "source_files", "user_pip_index",
]  # fmt: skip
