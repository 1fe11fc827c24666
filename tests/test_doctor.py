"""`dragfu doctor` on fake homes: plug-in installed and current (by the real installer), outdated,
broken config; device mismatch (an NVIDIA GPU with a CPU-only torch); model hashes; engine hello.
"""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from test_install import FakeRunner, installer  # noqa: E402  (the installer, loaded by file)

from dragfu.cli import doctor
from dragfu.cli.main import main
from dragfu.models import registry

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".config" / "GIMP" / "3.0").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DRAGFU_HOME", str(tmp_path / "data"))
    for name in ("DRAGFU_MODELS_DIR", "XDG_CONFIG_HOME", "GIMP3_DIRECTORY", "GIMP2_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    return home


def install_plugin(home: Path) -> Path:
    host = installer.load_paths_module(REPO).Host()
    runner = FakeRunner()
    machine = installer.Machine(host, runner, machine="x86_64", which=lambda name: None)
    code = installer.main(["--torch", "cpu", "--no-doctor", "--checkout", str(REPO)], host=host,
                          machine=machine, runner=runner, out=io.StringIO())  # fmt: skip
    assert code == 0
    return home / ".config" / "GIMP" / "3.0" / "plug-ins" / "dragfu"


def by_name(checks):
    return {c.name: c for c in checks}


def test_plugin_installed_current_then_outdated_then_broken(home):
    checks = by_name(doctor.collect(engine=False))
    assert checks["plug-in GIMP 3.0 (native)"].status == "warn"  # found, not installed
    assert "not installed" in checks["plug-in GIMP 3.0 (native)"].detail

    plugin = install_plugin(home)
    check = by_name(doctor.collect(engine=False))["plug-in GIMP 3.0 (native)"]
    assert check.status == "ok" and "current" in check.detail

    (plugin / "dragfu_core" / "geometry.py").write_text("# old\n")
    check = by_name(doctor.collect(engine=False))["plug-in GIMP 3.0 (native)"]
    assert check.status == "warn" and "geometry.py" in check.detail and "rerun" in check.fix

    (plugin / "dragfu.json").write_text("{broken")
    check = by_name(doctor.collect(engine=False))["plug-in GIMP 3.0 (native)"]
    assert check.status == "fail" and "unreadable" in check.detail


def test_no_gimp_folder_is_a_warning_with_a_fix(home):
    (home / ".config" / "GIMP" / "3.0").rmdir()
    check = by_name(doctor.collect(engine=False))["gimp"]
    assert check.status == "warn" and "start GIMP once" in check.fix


def test_nvidia_gpu_with_cpu_torch_is_flagged(home, tmp_path, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a working CUDA torch")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'CUDA Version: 12.8'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    check = by_name(doctor.collect(engine=False))["device"]
    assert check.status == "warn" and "NVIDIA GPU is present" in check.detail
    if not torch.version.cuda:
        assert "--torch cuda" in check.fix


def test_model_hashes_ok_unknown_and_tampered(home, tmp_path):
    models = Path(os.environ["DRAGFU_HOME"]) / "models"
    models.mkdir(parents=True)
    good = models / "ffhq-512.safetensors"
    good.write_bytes(b"weights")
    checks = by_name(doctor.collect(engine=False))
    assert checks["model ffhq-512"].status == "warn"  # present, no hash known
    assert "--record" in checks["model ffhq-512"].fix
    registry.record_download("ffhq-512", url="u", source_sha256="0" * 64,
                             files={good.name: registry.sha256_file(good)})  # fmt: skip
    assert by_name(doctor.collect(engine=False))["model ffhq-512"].status == "ok"
    good.write_bytes(b"tampered")
    check = by_name(doctor.collect(engine=False))["model ffhq-512"]
    assert check.status == "fail" and "--force" in check.fix
    assert main(["doctor", "--json", "--no-engine"]) == 1


def test_engine_command_from_plugin_config(home, capsys):
    plugin = install_plugin(home)
    config = json.loads((plugin / "dragfu.json").read_text())
    config["engine_command"] = ["/nonexistent/dragfu", "serve"]
    (plugin / "dragfu.json").write_text(json.dumps(config))
    check = by_name(doctor.collect(quick=True, timeout=30))["engine command"]
    assert check.status == "fail" and "/nonexistent/dragfu" in check.detail

    config["engine_command"] = [sys.executable, "-m", "dragfu.cli.main", "serve"]
    # The plug-in strips PYTHONPATH (GIMP's own) from the engine's environment; doctor does the
    # same, so this engine finds the checkout through engine_env, as a user's config would say.
    config["engine_env"]["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "engine"), str(REPO / "plugin" / "dragfu")]
    )
    (plugin / "dragfu.json").write_text(json.dumps(config))
    check = by_name(doctor.collect(quick=True, timeout=120))["engine command"]
    assert check.status == "ok", check.detail
    assert "protocol 1" in check.detail


def test_cli_output_has_one_line_per_check_and_fixes(home, capsys):
    code = main(["doctor", "--no-engine", "--quick"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert {line[1:5].strip() for line in lines} <= {"ok", "warn"}
    warned = sum(line.startswith("[warn]") for line in lines)
    # GIMP 3.0 found, the plug-in not installed: a warning with its fix, and exit 0.
    assert any(line.startswith("[warn] plug-in GIMP 3.0") for line in lines)
    assert "fix: run `python3 install/install.py`" in out
    assert code == 0 and f"All essential checks passed ({warned} warning(s))." in out

    # A plug-in whose configuration is unreadable fails the check: exit 1, and it says so.
    (install_plugin(home) / "dragfu.json").write_text("{broken")
    code = main(["doctor", "--no-engine", "--quick"])
    out = capsys.readouterr().out
    assert (
        [line for line in out.splitlines() if line.startswith("[fail]")]
        == [line for line in out.splitlines() if line.startswith("[fail] plug-in GIMP 3.0")]
        != []
    )
    assert code == 1 and "1 check(s) failed." in out
