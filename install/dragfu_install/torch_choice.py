"""The torch build for this machine, and the package index it comes from.

NVIDIA -> a CUDA build from download.pytorch.org (the newest the driver can run), Apple silicon ->
PyPI's default build (MPS), AMD on Linux with ROCm -> a ROCm build, else the CPU build.

The index: `--torch-index URL` names it (a mirror of download.pytorch.org/whl/<build>), or
`--torch-index pypi` takes torch from whatever index pip is configured to use. Otherwise, when the
user has a pip configuration naming an index (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, a pip.conf /
pip.ini, PIP_NO_INDEX...), that stays pip's main index and the build's index is only added with
`--extra-index-url`; with no configuration the build's index is the `--index-url`.
"""

import configparser
import os
import re
from pathlib import Path

from dragfu_install.machine import InstallError

TORCH_REQUIREMENT = "torch>=2.1"
TORCH_INDEX = "https://download.pytorch.org/whl/"
#: CUDA wheel tags, newest first, with the lowest CUDA version the driver must report. CUDA's
#: minor-version compatibility lets any 12.x driver run the cu12x wheels (their binaries carry
#: compiled kernels for every supported GPU, no PTX JIT needed).
CUDA_TAGS = (("cu130", (13, 0)), ("cu128", (12, 0)), ("cu118", (11, 8)))
DEFAULT_ROCM = "rocm6.4"
#: --torch-index values meaning "the index pip is configured with" (no index options at all)
PIP_OWN_INDEX = ("pypi", "pip", "default")
_PIP_ENV = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX", "PIP_FIND_LINKS")
_PIP_KEYS = ("index-url", "index_url", "extra-index-url", "extra_index_url", "no-index",
             "no_index", "find-links", "find_links")  # fmt: skip


class TorchChoice:
    def __init__(self, build, index_url, reason, forced_index=False):
        self.build = build  # "cu128", "rocm6.4", "cpu", "default"
        self.index_url = index_url
        self.reason = reason
        self.forced_index = forced_index  # named with --torch-index: always the main index
        self.user_index = None  # where the user's pip configuration names an index, if it does

    def pip_args(self):
        args = ["install", TORCH_REQUIREMENT]
        if self.index_url:
            if self.user_index and not self.forced_index:
                args += ["--extra-index-url", self.index_url]
            else:
                args += ["--index-url", self.index_url]
        return args

    def indexes_tried(self):
        """What pip was told to look in, for an error message."""
        tried = []
        if self.user_index and not (self.index_url and self.forced_index):
            tried.append(f"your pip configuration's index ({self.user_index})")
        elif not self.index_url:
            tried.append("PyPI (pip's default index)")
        if self.index_url:
            tried.append(self.index_url)
        return tried

    def failure_hint(self):
        if self.index_url:
            return (
                f"if {self.index_url} cannot be reached from here (a proxy or mirror that serves "
                "only PyPI), rerun with --torch-index URL (your mirror of that index) or "
                "--torch-index pypi (torch from the index your pip configuration uses); "
                "see the pip output above"
            )
        return (
            "check that pip can reach its index (PIP_INDEX_URL, pip.conf / pip.ini, https_proxy) "
            "or name one with --torch-index URL; see the pip output above"
        )

    def __repr__(self):
        return f"TorchChoice({self.build!r}, {self.index_url!r})"


def pip_config_files(host):
    """pip's configuration files for this host, the user's first (site files left out).

    PIP_CONFIG_FILE set to the null device means none at all, as for pip itself.
    """
    env, home = host.env, Path(host.home)
    files = []
    if env.get("PIP_CONFIG_FILE") in (os.devnull, "/dev/null", "nul", "NUL"):
        return []
    if env.get("PIP_CONFIG_FILE"):
        files.append(Path(env["PIP_CONFIG_FILE"]))
    if host.is_windows:
        program_data = env.get("PROGRAMDATA") or "C:\\ProgramData"
        appdata = env.get("APPDATA") or str(home / "AppData" / "Roaming")
        files += [Path(appdata) / "pip" / "pip.ini", home / "pip" / "pip.ini",
                  Path(program_data) / "pip" / "pip.ini"]  # fmt: skip
    elif host.is_macos:
        files += [home / "Library" / "Application Support" / "pip" / "pip.conf",
                  home / ".config" / "pip" / "pip.conf", home / ".pip" / "pip.conf",
                  Path("/Library/Application Support/pip/pip.conf")]  # fmt: skip
    else:
        xdg = env.get("XDG_CONFIG_HOME", "").strip() or str(home / ".config")
        files += [Path(xdg) / "pip" / "pip.conf", home / ".pip" / "pip.conf",
                  Path("/etc/xdg/pip/pip.conf"), Path("/etc/pip.conf")]  # fmt: skip
    return files


def user_pip_index(host):
    """Where the user's pip configuration names an index ('PIP_INDEX_URL', a file), or None."""
    for name in _PIP_ENV:
        if host.env.get(name, "").strip():
            return name
    for path in pip_config_files(host):
        parser = configparser.RawConfigParser()
        try:
            if not parser.read(str(path)):
                continue
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        for section in ("global", "install"):
            if parser.has_section(section) and any(
                parser.has_option(section, key) for key in _PIP_KEYS
            ):
                return str(path)
    return None


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


def choose_torch(machine, requested="auto", index=None):
    """The torch build (what `--torch` asked for, or what the hardware says) and its index."""
    choice = _choose_build(machine, requested)
    if index:
        if index.strip().lower() in PIP_OWN_INDEX:
            choice.index_url = None
            choice.reason += "; from the index pip is configured with (--torch-index pypi)"
        else:
            choice.index_url = index.strip()
            choice.forced_index = True
            choice.reason += f"; from {choice.index_url} (--torch-index)"
    else:
        choice.user_index = user_pip_index(machine.host)
        if choice.user_index and choice.index_url:
            choice.reason += (
                f"; your pip configuration's index is kept ({choice.user_index}), "
                f"{choice.index_url} only added as an extra index"
            )
    if index and choice.index_url is None:
        choice.user_index = user_pip_index(machine.host)
    return choice


def _choose_build(machine, requested="auto"):
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
