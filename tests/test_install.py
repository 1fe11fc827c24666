"""install/install.py (the package install/dragfu_install) on fake home trees: every OS layout (simulated on Linux), --plugin-dir, --dev
links, idempotence, manifest-based uninstall that leaves nothing, and the torch-build choice.

The engine's virtual environment and pip are simulated by FakeRunner (no torch is installed);
one slow test creates a real virtual environment.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "install" / "install.py"


sys.path.insert(0, str(REPO / "install"))
import dragfu_install as installer  # noqa: E402  (the installer's package, beside install.py)

paths = installer.load_paths_module(REPO)


class FakeRunner:
    """Plays python/venv/pip/nvidia-smi: records every argv, creates the venv's python file."""

    def __init__(self, python_version="3.11", nvidia_smi=None, fail_on=None):
        self.calls: list[list[str]] = []
        self.python_version = python_version
        self.nvidia_smi = nvidia_smi
        self.fail_on = fail_on
        self.installed: set[tuple[str, str]] = set()  # (python, module)

    def run(self, argv, capture=False, env=None, timeout=None):
        argv = [str(a) for a in argv]
        self.calls.append(argv)
        if self.fail_on and self.fail_on in " ".join(argv):
            return 1, "simulated failure"
        if argv[0] == "nvidia-smi" or argv[0].endswith("/nvidia-smi"):
            return (0, self.nvidia_smi) if self.nvidia_smi else (127, "")
        if argv[1:3] == ["-m", "venv"]:
            venv = Path(argv[-1])
            for python in (venv / "bin" / "python", venv / "Scripts" / "python.exe"):
                python.parent.mkdir(parents=True, exist_ok=True)
                python.write_text("#!fake python\n")
            return 0, ""
        if argv[1:4] == ["-m", "pip", "install"]:
            if "torch>=2.1" in argv:
                self.installed.add((argv[0], "torch"))
            elif argv[-1] == str(REPO):
                self.installed.add((argv[0], "dragfu"))
            return 0, ""
        if argv[1:4] == ["-m", "pip", "uninstall"]:
            self.installed.discard((argv[0], argv[-1]))
            return 0, ""
        if len(argv) >= 3 and argv[1] == "-c":
            code = argv[2]
            if code.startswith("import sys"):
                return 0, self.python_version + "\n"
            if code == "pass":
                return (0, "") if Path(argv[0]).exists() else (127, "")
            if code.startswith("import "):
                module = code.split()[1]
                return (0, "") if (argv[0], module) in self.installed else (1, "")
        if argv[-1] == "doctor":
            return 0, ""
        return 127, f"unexpected command {argv}"

    def pip_installs(self):
        return [c for c in self.calls if c[1:4] == ["-m", "pip", "install"]]


def make_host(system, home, **env):
    # No pip configuration (this machine's /etc/pip.conf is not the simulated host's).
    base = {"PATH": "/usr/bin", "PIP_CONFIG_FILE": os.devnull}
    base.update(env)
    return paths.Host(system=system, env=base, home=home)


def run_installer(args, host, runner, machine="x86_64", which=None):
    machine_obj = installer.Machine(
        host, runner, machine=machine, which=which or (lambda name: None)
    )
    out = io.StringIO()
    code = installer.main(
        list(args) + ["--checkout", str(REPO)], host=host, machine=machine_obj, runner=runner,
        out=out,
    )  # fmt: skip
    return code, out.getvalue()


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root -> what it is (file hash, link target, dir)."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                result[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                result[rel] = "dir"
            else:
                result[rel] = "file:" + installer.sha256_file(path) + oct(path.stat().st_mode)
    return result


# --- OS layouts -------------------------------------------------------------------------------

LAYOUTS = {
    # name: (system, profile folder relative to home, extra env, gimp layout)
    "linux": ("linux", ".config/GIMP/3.0", {}, "gimp3"),
    "linux-3.2": ("linux", ".config/GIMP/3.2", {}, "gimp3"),
    "linux-2.10": ("linux", ".config/GIMP/2.10", {}, "gimp2"),
    "flatpak": ("linux", ".var/app/org.gimp.GIMP/config/GIMP/3.0", {}, "gimp3"),
    "snap": ("linux", "snap/gimp/current/.config/GIMP/3.0", {}, "gimp3"),
    "macos": ("darwin", "Library/Application Support/GIMP/3.0", {}, "gimp3"),
    "windows": (
        "win32",
        "AppData/Roaming/GIMP/3.0",
        {"APPDATA": "{home}/AppData/Roaming"},
        "gimp3",
    ),
    "gimp3-directory": ("linux", "custom-gimp", {"GIMP3_DIRECTORY": "{home}/custom-gimp"}, "gimp3"),
}


def _layout_host(tmp_path, name):
    system, profile, env, layout = LAYOUTS[name]
    home = tmp_path / "home"
    env = {k: v.format(home=home) for k, v in env.items()}
    env["DRAGFU_HOME"] = str(tmp_path / "home" / "dragfu-data")
    (home / profile).mkdir(parents=True)
    return make_host(system, home, **env), home / profile, layout


def _installed_plugin(profile: Path, layout: str) -> Path:
    if layout == "gimp3":
        return profile / "plug-ins" / "dragfu" / "dragfu.py"
    return profile / "plug-ins" / "dragfu_gimp2.py"


@pytest.mark.parametrize("layout_name", sorted(LAYOUTS))
def test_install_finds_profile_and_uninstall_leaves_nothing(tmp_path, layout_name):
    host, profile, layout = _layout_host(tmp_path, layout_name)
    before = snapshot(tmp_path)
    runner = FakeRunner()
    code, out = run_installer(["--torch", "cpu"], host, runner)
    assert code == 0, out

    entry = _installed_plugin(profile, layout)
    assert entry.is_file() and os.access(entry, os.X_OK)
    core = entry.parent / "dragfu_core"
    assert (core / "config.py").read_bytes() == (
        REPO / "plugin" / "dragfu" / "dragfu_core" / "config.py"
    ).read_bytes()
    config = json.loads((entry.parent / "dragfu.json").read_text())
    venv = Path(host.env["DRAGFU_HOME"]) / "engine-venv"
    scripts = "Scripts" if layout_name == "windows" else "bin"
    suffix = ".exe" if layout_name == "windows" else ""
    assert config["engine_command"] == [str(venv / scripts / f"dragfu{suffix}"), "serve"]
    assert config["models_dir"] == str(Path(host.env["DRAGFU_HOME"]) / "models")
    assert config["engine_env"] == {"DRAGFU_HOME": host.env["DRAGFU_HOME"]}
    # the plug-in's own config reader accepts what we wrote
    sys.path.insert(0, str(REPO / "plugin" / "dragfu"))
    try:
        from dragfu_core import config as plugin_config

        parsed = plugin_config.parse_config((entry.parent / "dragfu.json").read_text())
        assert parsed["engine_command"] == config["engine_command"]
    finally:
        sys.path.remove(str(REPO / "plugin" / "dragfu"))
    # torch: the CPU build, then the engine from this checkout
    pips = runner.pip_installs()
    expected = ["install", "torch>=2.1"]
    if host.system != "darwin":  # macOS wheels are the CPU/MPS build, from PyPI
        expected += ["--index-url", installer.TORCH_INDEX + "cpu"]
    assert pips[-2][3:] == expected
    assert pips[-1][-1] == str(REPO)
    assert runner.calls[-1][-1] == "doctor"

    code, out = run_installer(["--uninstall"], host, runner)
    assert code == 0, out
    assert snapshot(tmp_path) == before


def test_install_twice_changes_nothing_and_says_so(tmp_path):
    host, profile, _ = _layout_host(tmp_path, "linux")
    runner = FakeRunner()
    assert run_installer(["--torch", "cpu"], host, runner)[0] == 0
    first = snapshot(tmp_path)
    pip_calls = len(runner.pip_installs())
    code, out = run_installer(["--torch", "cpu"], host, runner)
    assert code == 0
    assert "Nothing changed" in out
    assert snapshot(tmp_path) == first
    assert len(runner.pip_installs()) == pip_calls  # neither torch nor the engine again


def test_changed_checkout_file_is_updated_on_rerun(tmp_path):
    host, profile, _ = _layout_host(tmp_path, "linux")
    runner = FakeRunner()
    run_installer(["--torch", "cpu", "--no-doctor"], host, runner)
    installed = profile / "plug-ins" / "dragfu" / "dragfu_core" / "config.py"
    installed.write_text("# stale copy\n")
    code, out = run_installer(["--torch", "cpu", "--no-doctor"], host, runner)
    assert code == 0 and f"copied {installed}" in out and "Nothing changed" not in out
    assert installed.read_bytes() == (REPO / "plugin/dragfu/dragfu_core/config.py").read_bytes()


def test_user_edited_config_is_kept(tmp_path):
    host, profile, _ = _layout_host(tmp_path, "linux")
    runner = FakeRunner()
    run_installer(["--torch", "cpu", "--no-doctor"], host, runner)
    config = profile / "plug-ins" / "dragfu" / "dragfu.json"
    edited = json.loads(config.read_text())
    edited["device"] = "cuda:1"
    config.write_text(json.dumps(edited))
    code, out = run_installer(["--torch", "cpu", "--no-doctor"], host, runner)
    assert "kept your edited" in out
    assert json.loads(config.read_text())["device"] == "cuda:1"
    run_installer(["--torch", "cpu", "--no-doctor", "--reset-config"], host, runner)
    assert json.loads(config.read_text())["device"] == "auto"
    # the edited file is still ours: uninstall removes it
    run_installer(["--uninstall"], host, runner)
    assert not config.exists()


def test_plugin_dir_option_for_both_layouts_and_no_profiles(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    host = make_host("linux", home, DRAGFU_HOME=str(tmp_path / "data"))
    runner = FakeRunner()
    code, out = run_installer(["--torch", "cpu", "--no-doctor"], host, runner)
    assert code == 0 and "no GIMP 3.x or 2.10 user folder found" in out

    target3, target2 = tmp_path / "p3", tmp_path / "gimp-2.10-plugins"
    code, out = run_installer(
        ["--torch", "cpu", "--no-doctor", "--plugin-dir", str(target3), "--plugin-dir", str(target2)],
        host, runner,
    )  # fmt: skip
    assert code == 0, out
    assert (target3 / "dragfu" / "dragfu.py").is_file()
    assert (target2 / "dragfu_gimp2.py").is_file() and (
        target2 / "dragfu_core" / "job.py"
    ).is_file()
    assert (target2 / "dragfu.json").is_file()
    run_installer(["--uninstall"], host, runner)
    assert not target3.exists() and not target2.exists()  # created by the install: removed
    assert not (tmp_path / "data").exists()


def test_dev_mode_links_into_the_checkout(tmp_path):
    host, profile, _ = _layout_host(tmp_path, "linux")
    target2 = tmp_path / "gimp2"
    target2.mkdir()
    runner = FakeRunner()
    code, out = run_installer(["--dev", "--no-torch", "--no-doctor"], host, runner)
    assert code == 0, out
    plugin = profile / "plug-ins" / "dragfu"
    assert os.readlink(plugin / "dragfu.py") == str(REPO / "plugin" / "dragfu" / "dragfu.py")
    assert os.readlink(plugin / "dragfu_core") == str(REPO / "plugin" / "dragfu" / "dragfu_core")
    assert (plugin / "dragfu.json").is_file() and not (plugin / "dragfu.json").is_symlink()
    engine = runner.pip_installs()[-1]
    assert engine[-2:] == ["-e", str(REPO)]
    assert not any("torch>=2.1" in call for call in runner.pip_installs())  # --no-torch

    run_installer(["--dev", "--no-torch", "--no-doctor", "--plugin-dir", str(target2),
                   "--gimp-version", "2.10"], host, runner)  # fmt: skip
    assert os.readlink(target2 / "dragfu_gimp2.py") == str(REPO / "plugin/gimp2/dragfu_gimp2.py")
    assert os.readlink(target2 / "dragfu_core") == str(REPO / "plugin/dragfu/dragfu_core")

    run_installer(["--uninstall"], host, runner)
    assert not plugin.exists() and sorted(os.listdir(target2)) == []
    assert (REPO / "plugin" / "dragfu" / "dragfu.py").is_file()  # links removed, never targets


def test_switching_between_dev_links_and_copies_never_touches_the_checkout(tmp_path):
    host, profile, _ = _layout_host(tmp_path, "linux")
    before = snapshot(tmp_path)
    checkout_files = installer.source_files(REPO / "plugin")
    runner = FakeRunner()
    for args in (["--dev"], [], ["--dev"], []):
        code, out = run_installer(args + ["--no-torch", "--no-doctor"], host, runner)
        assert code == 0, out
    core = profile / "plug-ins" / "dragfu" / "dragfu_core"
    assert core.is_dir() and not core.is_symlink()
    (core / "retired_module.py").write_text("# gone from the checkout\n")
    code, out = run_installer(["--no-torch", "--no-doctor"], host, runner)
    assert not (core / "retired_module.py").exists() and "no longer in the plug-in" in out
    run_installer(["--uninstall"], host, runner)
    assert snapshot(tmp_path) == before
    assert all(path.is_file() for path in checkout_files)  # nothing deleted through a link


def test_existing_venv_is_used_and_only_our_package_removed(tmp_path):
    host, _, _ = _layout_host(tmp_path, "linux")
    venv = tmp_path / "my-env"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!fake\n")
    runner = FakeRunner()
    code, out = run_installer(["--venv", str(venv), "--no-torch", "--no-doctor"], host, runner)
    assert code == 0, out
    assert not any(c[1:3] == ["-m", "venv"] for c in runner.calls)
    run_installer(["--uninstall"], host, runner)
    assert (venv / "bin" / "python").exists()  # not ours to delete
    assert [str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-y", "dragfu"] in runner.calls


def test_plugin_only_with_remote_engine_command(tmp_path):
    host, profile, _ = _layout_host(tmp_path, "linux")
    runner = FakeRunner()
    code, out = run_installer(["--plugin-only", "--no-doctor"], host, runner)
    assert code == 2  # no engine here and no command given
    remote = "ssh gpu-box /opt/dragfu/engine-venv/bin/dragfu serve"
    code, out = run_installer(
        ["--plugin-only", "--engine-command", remote, "--engine-env", "CUDA_VISIBLE_DEVICES=1",
         "--device", "cuda"], host, runner,
    )  # fmt: skip
    assert code == 0, out
    config = json.loads((profile / "plug-ins" / "dragfu" / "dragfu.json").read_text())
    assert config["engine_command"] == remote.split() and config["device"] == "cuda"
    assert config["engine_env"]["CUDA_VISIBLE_DEVICES"] == "1"
    assert not any("pip" in c for c in runner.calls)


def test_failed_pip_is_a_clear_error_and_rerun_resumes(tmp_path, capsys):
    host, profile, _ = _layout_host(tmp_path, "linux")
    before = snapshot(tmp_path)
    runner = FakeRunner(fail_on="torch>=2.1")
    code, out = run_installer(["--torch", "cpu"], host, runner)
    assert code == 2
    err = capsys.readouterr().err
    assert "installing torch from https://download.pytorch.org/whl/cpu failed" in err
    venv = Path(host.env["DRAGFU_HOME"]) / "engine-venv"
    assert venv.is_dir()  # made before the failure, and recorded:
    manifest = json.loads((Path(host.env["DRAGFU_HOME"]) / "install-manifest.json").read_text())
    assert {"path": str(venv), "type": "tree", "created": True} in manifest["entries"]

    runner.fail_on = None
    code, out = run_installer(["--torch", "cpu", "--no-doctor"], host, runner)
    assert code == 0 and "(exists)" in out and "installed torch (cpu)" in out
    assert sum(1 for c in runner.calls if c[1:3] == ["-m", "venv"]) == 1
    run_installer(["--uninstall"], host, runner)
    assert snapshot(tmp_path) == before


def test_no_suitable_python_is_a_clear_error(tmp_path, capsys):
    host, _, _ = _layout_host(tmp_path, "linux")
    runner = FakeRunner(python_version="3.8")
    code, _ = run_installer(["--torch", "cpu"], host, runner, which=lambda n: f"/usr/bin/{n}")
    assert code == 2
    err = capsys.readouterr().err
    assert "no Python >= 3.10" in err and "3.8" in err and "--python" in err


# --- GIMP folder discovery ----------------------------------------------------------------------


def test_profiles_found_newest_first_and_old_gimp_ignored(tmp_path):
    home = tmp_path
    for version in ("2.8", "2.10", "3.0", "3.2"):
        (home / ".config" / "GIMP" / version).mkdir(parents=True)
    (home / ".var/app/org.gimp.GIMP/config/GIMP/3.0").mkdir(parents=True)
    profiles = paths.find_gimp_profiles(make_host("linux", home))
    assert [(p.version, p.flavour) for p in profiles] == [
        ("3.2", "native"), ("3.0", "native"), ("3.0", "flatpak"), ("2.10", "native"),
    ]  # fmt: skip


def test_xdg_config_home_and_gimp3_directory(tmp_path):
    (tmp_path / "xdg" / "GIMP" / "3.0").mkdir(parents=True)
    (tmp_path / "xdg" / "GIMP" / "2.10").mkdir(parents=True)
    host = make_host("linux", tmp_path / "home", XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    assert [p.profile_dir for p in paths.find_gimp_profiles(host)] == [
        tmp_path / "xdg" / "GIMP" / "3.0", tmp_path / "xdg" / "GIMP" / "2.10",
    ]  # fmt: skip
    host = make_host(
        "linux", tmp_path / "home", XDG_CONFIG_HOME=str(tmp_path / "xdg"),
        GIMP3_DIRECTORY=str(tmp_path / "g3"),
    )  # fmt: skip
    found = paths.find_gimp_profiles(host)
    assert [(p.profile_dir, p.flavour) for p in found] == [
        (tmp_path / "g3", "env"), (tmp_path / "xdg" / "GIMP" / "2.10", "native"),
    ]  # fmt: skip


# --- torch build choice --------------------------------------------------------------------------

NVIDIA_SMI = "| NVIDIA-SMI 550.54   Driver Version: 550.54   CUDA Version: {} |"


@pytest.mark.parametrize(
    "system, cpu, programs, smi, requested, build",
    [
        ("linux", "x86_64", {"nvidia-smi"}, "12.4", "auto", "cu128"),
        ("linux", "x86_64", {"nvidia-smi"}, "12.8", "auto", "cu128"),
        ("win32", "amd64", {"nvidia-smi"}, "13.0", "auto", "cu130"),
        ("linux", "x86_64", {"nvidia-smi"}, "11.8", "auto", "cu118"),
        ("linux", "x86_64", {"nvidia-smi"}, "11.4", "auto", "cpu"),  # driver too old
        ("darwin", "arm64", set(), None, "auto", "default"),
        ("darwin", "x86_64", set(), None, "auto", "default"),
        ("linux", "x86_64", {"rocminfo"}, None, "auto", installer.DEFAULT_ROCM),
        ("win32", "amd64", {"rocminfo"}, None, "auto", "cpu"),  # no ROCm wheels on Windows
        ("linux", "aarch64", set(), None, "auto", "cpu"),
        ("linux", "x86_64", {"nvidia-smi"}, "12.8", "cpu", "cpu"),
        ("linux", "x86_64", set(), None, "cu126", "cu126"),
        ("linux", "x86_64", {"nvidia-smi"}, "12.6", "cuda", "cu128"),
        ("linux", "x86_64", set(), None, "rocm6.2", "rocm6.2"),
        ("darwin", "arm64", set(), None, "mps", "default"),
    ],
)
def test_torch_choice(tmp_path, system, cpu, programs, smi, requested, build):
    host = make_host(system, tmp_path)
    runner = FakeRunner(nvidia_smi=NVIDIA_SMI.format(smi) if smi else None)
    machine = installer.Machine(
        host, runner, machine=cpu, which=lambda n: f"/usr/bin/{n}" if n in programs else None
    )
    choice = installer.choose_torch(machine, requested)
    assert choice.build == build
    if build == "default":
        assert choice.index_url is None
    else:
        assert choice.index_url == installer.TORCH_INDEX + build


@pytest.mark.parametrize(
    "system, requested", [("darwin", "cuda"), ("linux", "mps"), ("win32", "rocm"), ("linux", "tpu")]
)
def test_impossible_torch_requests_are_refused(tmp_path, system, requested):
    machine = installer.Machine(make_host(system, tmp_path), FakeRunner(), machine="x86_64",
                                which=lambda n: None)  # fmt: skip
    with pytest.raises(installer.InstallError):
        installer.choose_torch(machine, requested)


def test_data_dirs_match_platformdirs_on_this_machine(monkeypatch):
    import platformdirs

    for name in ("DRAGFU_HOME", "DRAGFU_MODELS_DIR"):
        monkeypatch.delenv(name, raising=False)
    host = paths.Host()
    for kind in ("data", "config", "cache"):
        expected = Path(getattr(platformdirs, f"user_{kind}_dir")("dragfu", appauthor=False))
        assert paths._stdlib_dir(kind, host) == expected


def test_data_dirs_per_os_and_overrides(tmp_path):
    home = tmp_path
    win = make_host("win32", home, LOCALAPPDATA=str(home / "AppData" / "Local"))
    assert paths.data_dir(win) == home / "AppData" / "Local" / "dragfu"
    assert paths.venv_python(paths.venv_dir(win), win).parts[-2:] == ("Scripts", "python.exe")
    mac = make_host("darwin", home)
    assert paths.data_dir(mac) == home / "Library" / "Application Support" / "dragfu"
    assert paths.cache_dir(mac) == home / "Library" / "Caches" / "dragfu"
    linux = make_host("linux", home, DRAGFU_HOME=str(home / "df"), DRAGFU_MODELS_DIR="/m")
    assert paths.data_dir(linux) == home / "df" and paths.models_dir(linux) == Path("/m")
    assert paths.cache_dir(linux) == home / "df" / "cache"


# --- the real thing -----------------------------------------------------------------------------


def test_installer_runs_as_a_script_with_help():
    result = subprocess.run(
        [sys.executable, str(INSTALL), "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "--uninstall" in result.stdout


def _old_python():
    candidates = [shutil.which(name) for name in ("python3.8", "python3.9")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(str(p) for p in pyenv.glob("3.[89].*/bin/python"))
    for found in candidates:
        if found and subprocess.run([found, "-c", "pass"], capture_output=True).returncode == 0:
            return found
    return None


def test_installer_dry_run_on_python_38(tmp_path):
    """The installer runs on the user's Python >= 3.8 (an old one, where this machine has it)."""
    old = _old_python()
    if old is None:
        pytest.skip("no Python 3.8 or 3.9 on this machine (vermin still checks the syntax)")
    home = tmp_path / "home"
    (home / ".config" / "GIMP" / "3.0").mkdir(parents=True)
    env = dict(os.environ, HOME=str(home), DRAGFU_HOME=str(tmp_path / "data"))
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "GIMP3_DIRECTORY", "GIMP2_DIRECTORY"):
        env.pop(name, None)
    result = subprocess.run(
        [old, str(INSTALL), "--dry-run", "--python", sys.executable, "--torch", "cpu"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "would copy " + str(home / ".config/GIMP/3.0/plug-ins/dragfu/dragfu.py") in result.stdout
    assert "would run: " in result.stdout and "torch>=2.1" in result.stdout
    assert not (tmp_path / "data").exists()  # a dry run makes nothing
    assert sorted(os.listdir(home / ".config" / "GIMP" / "3.0")) == []


def test_installer_and_shared_paths_module_need_only_python_38():
    vermin = Path(sys.executable).parent / "vermin"
    if not vermin.exists():
        pytest.skip("vermin is not installed")
    result = subprocess.run(
        [vermin, "-t=3.8-", "--no-tips", "--violations", str(INSTALL),
         str(REPO / "install" / "dragfu_install"), str(REPO / "engine" / "dragfu" / "paths.py")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_real_venv_install_and_uninstall(tmp_path):
    """A real `python -m venv` and a real (offline, no-deps) pip install of the engine."""
    base = Path(getattr(sys, "_base_executable", sys.executable))
    home = tmp_path / "home"
    profile = home / ".config" / "GIMP" / "3.0"
    profile.mkdir(parents=True)
    # Offline: no index; the build backend (setuptools new enough for pyproject's licence field)
    # comes from this test environment, linked alone into a folder on PYTHONPATH.
    backend = tmp_path / "backend"
    backend.mkdir()
    import setuptools

    site = Path(setuptools.__file__).resolve().parents[1]
    for item in site.iterdir():
        if item.name.split("-")[0] in ("setuptools", "pkg_resources", "_distutils_hack"):
            (backend / item.name).symlink_to(item)
    env = dict(
        os.environ, HOME=str(home), DRAGFU_HOME=str(tmp_path / "data"), PIP_NO_INDEX="1",
        PYTHONPATH=str(backend),
    )  # fmt: skip
    env.pop("XDG_CONFIG_HOME", None)
    env.pop("GIMP3_DIRECTORY", None)
    command = [
        sys.executable,
        str(INSTALL),
        "--python",
        str(base),
        "--no-torch",
        "--system-site-packages",
        "--engine-no-deps",
        "--no-doctor",
        "--dev",
    ]  # fmt: skip  (editable: the checkout may change under a parallel edit)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    python = tmp_path / "data" / "engine-venv" / "bin" / "python"
    check = subprocess.run([python, "-c", "import dragfu.paths; print(dragfu.__file__)"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert (
        profile / "plug-ins" / "dragfu" / "dragfu.py"
    ).resolve() == REPO / "plugin/dragfu/dragfu.py"

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and "Nothing changed" in again.stdout, again.stdout

    gone = subprocess.run([sys.executable, str(INSTALL), "--uninstall"], capture_output=True,
                          text=True, env=env, timeout=120)  # fmt: skip
    assert gone.returncode == 0, gone.stderr
    assert not (tmp_path / "data").exists()
    assert sorted(os.listdir(profile)) == []
