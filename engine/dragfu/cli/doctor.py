"""`dragfu doctor`: is everything in place? Each check says ok, warn or fail, with a one-line fix.

Checks: Python; torch and its CUDA/ROCm build; the device `auto` picks (and a GPU that this torch
cannot use); the models folder, the embedded toy model and every downloaded model against its
published or recorded sha256; the LPIPS weights; GIMP's plug-in folders and whether our plug-in is
installed there and current (compared with the checkout the installer recorded); and whether the
plug-in's engine command answers a protocol `hello`. Exit code 0 when nothing failed, else 1.
Nothing is written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from dragfu import paths
from dragfu.cli.common import print_json
from dragfu_core import layout  # after dragfu.paths, which finds dragfu_core in a checkout

INSTALL_HINT = "run `python3 install/install.py` from the Drag-Fu checkout"


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check the install: device, torch, models, GIMP plug-in, engine command"
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("--quick", action="store_true", help="skip hashing model files")
    parser.add_argument("--no-engine", action="store_true", help="do not start the engine command")
    parser.add_argument(
        "--timeout", type=float, default=90.0, help="seconds to wait for the engine's hello"
    )
    parser.set_defaults(func=run)


# --- torch and the device ------------------------------------------------------------------------


def check_python() -> list[Check]:
    version = ".".join(str(v) for v in sys.version_info[:3])
    return [Check("python", "ok", f"Python {version} ({sys.executable})")]


def _nvidia_gpu_present() -> bool:
    return shutil.which("nvidia-smi") is not None


def _amd_gpu_present() -> bool:
    return sys.platform.startswith("linux") and (
        shutil.which("rocminfo") is not None or shutil.which("rocm-smi") is not None
    )


def check_torch_and_device() -> list[Check]:
    try:
        import torch
    except Exception as error:  # ImportError, or OSError for a missing DLL / broken CUDA libs
        kind = type(error).__name__
        return [
            Check(
                "torch", "fail", f"cannot import torch ({kind}: {error})",
                "a broken or half-installed torch: " + INSTALL_HINT
                + " (it reinstalls torch; --torch cpu if the GPU build's libraries fail to load)",
            )
        ]  # fmt: skip
    build = (
        f"CUDA {torch.version.cuda}"
        if torch.version.cuda
        else (f"ROCm {torch.version.hip}" if getattr(torch.version, "hip", None) else "no CUDA")
    )
    checks = [Check("torch", "ok", f"torch {torch.__version__} ({build})")]

    from dragfu.device import choose_device, describe_device

    described = describe_device(choose_device("auto"))
    kind = described.split(" ")[0]
    if kind == "cpu" and _nvidia_gpu_present():
        if torch.version.cuda:
            fix = "check the NVIDIA driver (`nvidia-smi`); it may be older than this torch's CUDA"
            detail = (
                f"cpu: an NVIDIA GPU is present but torch (CUDA {torch.version.cuda}) cannot use it"
            )
        else:
            fix = "reinstall the CUDA build: `python3 install/install.py --torch cuda`"
            detail = "cpu: an NVIDIA GPU is present but this torch is a CPU-only build"
        checks.append(Check("device", "warn", detail, fix))
    elif kind == "cpu" and _amd_gpu_present() and not getattr(torch.version, "hip", None):
        checks.append(
            Check(
                "device", "warn", "cpu: an AMD GPU with ROCm is present but this torch has no ROCm",
                "reinstall the ROCm build: `python3 install/install.py --torch rocm`",
            )
        )  # fmt: skip
    elif kind == "cpu":
        checks.append(
            Check(
                "device",
                "ok",
                "cpu (no GPU found: large models will be slow; remote GPU: docs/install.md)",
            )
        )
    else:
        checks.append(Check("device", "ok", described))
    return checks


# --- models --------------------------------------------------------------------------------------


def check_models(quick: bool = False) -> list[Check]:
    from dragfu.models import download, registry

    folder = paths.models_dir()
    checks = []
    if folder.is_dir():
        checks.append(Check("models folder", "ok", str(folder)))
    else:
        checks.append(
            Check(
                "models folder", "ok",
                f"{folder} (not made yet: no downloads; the embedded toy model works without it)",
            )
        )  # fmt: skip

    for info in registry.all_models(folder).values():
        if not info.present(folder):
            if info.embedded:
                checks.append(
                    Check(
                        f"model {info.name}",
                        "fail",
                        f"embedded file missing: {info.path()}",
                        "reinstall the engine: " + INSTALL_HINT,
                    )  # fmt: skip
                )
            elif info.kind == "lpips":
                checks.append(
                    Check(
                        "lpips weights", "warn",
                        "not downloaded: projection uses its fallback loss (lower fidelity)",
                        f"`dragfu models download {info.name} --accept-license`",
                    )
                )  # fmt: skip
            continue
        label = "lpips weights" if info.kind == "lpips" else f"model {info.name}"
        if quick:
            checks.append(Check(label, "ok", f"{info.path(folder)} (hash not checked: --quick)"))
            continue
        results = download.verify_model(info, folder)
        mismatched = [r for r in results if r.status == "mismatch"]
        unknown = [r for r in results if r.status == "unknown"]
        where = info.path(folder)
        if mismatched:
            names = ", ".join(r.path.name for r in mismatched)
            checks.append(
                Check(
                    label,
                    "fail",
                    f"{names}: sha256 differs from the {mismatched[0].source} one",
                    f"`dragfu models download {info.name} --force`",
                )  # fmt: skip
            )
        elif unknown and info.embedded:
            checks.append(Check(label, "ok", f"{where} (embedded; no sha256 pinned in this build)"))
        elif unknown:
            checks.append(
                Check(
                    label,
                    "warn",
                    f"{where}: no known sha256 to check against",
                    f"`dragfu models verify {info.name} --record` remembers its hash",
                )  # fmt: skip
            )
        else:
            sources = sorted({r.source for r in results})
            checks.append(
                Check(label, "ok", f"{where} (sha256 matches the {'/'.join(sources)} hash)")
            )
    return checks


# --- GIMP plug-in --------------------------------------------------------------------------------


def _load_manifest() -> dict:
    """The installer's manifest (schema: dragfu_core.layout), empty when there is none."""
    return layout.load_manifest(str(paths.install_manifest_path()))


def _plugin_entry(kind: str, folder: Path) -> Path:
    return Path(layout.plugin_files(kind, str(folder)).entry)


def _stale_files(folder: Path, manifest: dict) -> tuple[list[str], int]:
    """Files the installer put under `folder` that differ from their source now; files checked."""
    from dragfu.models.registry import sha256_file

    stale, checked = [], 0
    for item in layout.entries_under(manifest, folder):
        path = Path(item["path"])
        if item.get("type") == "link":
            checked += 1
            if not os.path.exists(path):
                stale.append(f"{path.name} (broken link)")
            continue
        source = item.get("source")
        if item.get("type") != "file" or not source:
            continue
        checked += 1
        if not path.is_file():
            stale.append(f"{path.name} (missing)")
            continue
        reference = sha256_file(Path(source)) if Path(source).is_file() else item.get("sha256")
        if sha256_file(path) != reference:
            stale.append(path.name)
    return stale, checked


def _read_plugin_config(path: Path) -> tuple[dict | None, str]:
    """dragfu.json read as the plug-in reads it (dragfu_core.config)."""
    from dragfu_core import config as plugin_config

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, f"no {path.name}"
    except OSError as error:
        return None, f"{path} unreadable: {error}"
    try:
        return plugin_config.parse_config(text, str(path)), ""
    except plugin_config.ConfigError as error:
        return None, f"{path.name} unreadable: {error}"


def check_gimp(manifest: dict) -> tuple[list[Check], list[dict]]:
    """Plug-in checks, and the configs found (for the engine-command check)."""
    checks, configs = [], []
    targets: list[tuple[str, Path, str]] = []
    for profile in paths.find_gimp_profiles():
        targets.append((profile.layout, profile.plugin_dir, profile.label))
    known = {str(folder) for _, folder, _ in targets}
    for plugin in manifest.get("plugins", []):
        if plugin.get("plugin_dir") not in known:
            targets.append((plugin["layout"], Path(plugin["plugin_dir"]), plugin.get("label", "")))
    if not targets:
        return [
            Check(
                "gimp", "warn", "no GIMP 3.x or 2.10 user folder found",
                "start GIMP once (it makes its folder), then " + INSTALL_HINT,
            )
        ], configs  # fmt: skip

    for kind, folder, label in targets:
        name = f"plug-in {label}".strip()
        entry = _plugin_entry(kind, folder)
        if not entry.exists():
            checks.append(Check(name, "warn", f"not installed in {folder}", INSTALL_HINT))
            continue
        config_path = entry.parent / paths.PLUGIN_CONFIG_NAME
        config, problem = _read_plugin_config(config_path)
        if config is not None:
            configs.append({"path": str(config_path), **config})
        stale, checked = _stale_files(folder, manifest)
        if problem:
            checks.append(
                Check(name, "fail", f"installed in {folder}, but {problem}", INSTALL_HINT)
            )
        elif stale:
            shown = ", ".join(stale[:3]) + (" ..." if len(stale) > 3 else "")
            checks.append(
                Check(
                    name,
                    "warn",
                    f"outdated in {folder}: {shown}",
                    "rerun the installer to update it",
                )
            )
        elif checked == 0:
            checks.append(
                Check(
                    name,
                    "warn",
                    f"installed in {folder}, but not by the installer (no record)",
                    INSTALL_HINT + " to manage it",
                )  # fmt: skip
            )
        else:
            checks.append(Check(name, "ok", f"installed and current in {folder}"))
    return checks, configs


# --- engine command ------------------------------------------------------------------------------


class _NoDialog:
    """The plug-in's run options when its dialog changes nothing (doctor has no dialog)."""

    engine_command = None
    device = None


def check_engine(configs: list[dict], timeout: float) -> list[Check]:
    """Start the engine exactly as the plug-in does (dragfu_core.session): the config's argv, its
    environment (GIMP's Python variables stripped, engine_env, models folder, device) and the
    Flatpak wrapping; then say hello."""
    try:
        import dragfu.protocol  # noqa: F401  (finds dragfu_core in a source checkout)
        from dragfu_core import engine_client, session
    except ImportError:
        return [Check("engine command", "ok", "skipped: this engine has no protocol module yet")]
    if configs:
        config, where = configs[0], configs[0]["path"]
    else:
        # No plug-in config: check this engine's own command (the venv's script beside Python).
        sibling = Path(sys.executable).parent / ("dragfu.exe" if os.name == "nt" else "dragfu")
        found = str(sibling) if sibling.is_file() else shutil.which("dragfu")
        config, where = {"engine_command": [found, "serve"] if found else None}, "this engine"
    try:
        argv, extra_env = session.engine_argv_env(config, _NoDialog())
    except Exception as error:  # dragfu_core.job.JobError: no command at all
        return [Check("engine command", "fail", f"{error} ({where})", INSTALL_HINT)]
    command = session.flatpak_argv(argv, extra_env)
    shown = " ".join(str(part) for part in command)
    try:
        engine = engine_client.EngineClient(
            command, env=engine_client.engine_environment(extra=extra_env),
            startup_timeout=timeout, client_name="dragfu-doctor",
        )  # fmt: skip
        try:
            header = dict(engine.start())
        finally:
            engine.close()
    except Exception as error:  # anything at all: the point is to report it in one line
        return [
            Check("engine command", "fail", f"`{shown}` (from {where}) did not answer hello: {error}",
                  "run that command by hand to see why; fix dragfu.json or rerun the installer")
        ]  # fmt: skip
    detail = (
        f"`{shown}` answers: engine {header.get('engine_version', '?')}, protocol "
        f"{header.get('protocol', '?')}, device {header.get('device', '?')}"
    )
    return [Check("engine command", "ok", detail)]


# --- the command ---------------------------------------------------------------------------------


def collect(quick: bool = False, engine: bool = True, timeout: float = 90.0) -> list[Check]:
    manifest = _load_manifest()
    checks = check_python() + check_torch_and_device() + check_models(quick)
    gimp_checks, configs = check_gimp(manifest)
    checks += gimp_checks
    if engine:
        checks += check_engine(configs, timeout)
    return checks


def run(args: argparse.Namespace) -> int:
    checks = collect(quick=args.quick, engine=not args.no_engine, timeout=args.timeout)
    failed = any(c.status == "fail" for c in checks)
    if args.json:
        print_json({"ok": not failed, "checks": [asdict(c) for c in checks]})
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            print(f"[{c.status:4}] {c.name.ljust(width)}  {c.detail}")
            if c.fix and c.status != "ok":
                print(f"       {' ' * width}  fix: {c.fix}")
        warned = sum(c.status == "warn" for c in checks)
        if failed:
            print(f"\n{sum(c.status == 'fail' for c in checks)} check(s) failed.")
        else:
            print(f"\nAll essential checks passed ({warned} warning(s)).")
    return 1 if failed else 0
