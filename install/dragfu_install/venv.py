"""The engine's side: a Python >= 3.10, its virtual environment, torch, the engine package."""

import hashlib
import sys
from pathlib import Path

from dragfu_install.machine import InstallError, sha256_file
from dragfu_install.shared import source_files
from dragfu_install.torch_choice import choose_torch

ENGINE_PYTHON_MIN = (3, 10)
_PY_CHECK = "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"
_PY_VERSION_ONLY = "import sys; print('%d.%d' % sys.version_info[:2])"


def _python_version(machine, argv, need_venv=True):
    import re

    output = machine.probe(list(argv) + ["-c", _PY_CHECK if need_venv else _PY_VERSION_ONLY])
    if output:
        match = re.search(r"(\d+)\.(\d+)\s*$", output.strip())
        if match:
            return int(match.group(1)), int(match.group(2))
    return None


def python_candidates(machine, current=None):
    """argv prefixes that may start a Python, most wanted first."""
    current = current or sys.executable
    candidates = []
    if current:
        candidates.append([current])
    if machine.host.is_windows and machine.which("py"):
        candidates += [["py", f"-3.{minor}"] for minor in (13, 12, 11, 10)]
    for name in [f"python3.{minor}" for minor in (13, 12, 11, 10)] + ["python3", "python"]:
        found = machine.which(name)
        if found:
            candidates.append([found])
    unique = []
    for argv in candidates:
        if argv not in unique:
            unique.append(argv)
    return unique


def find_engine_python(machine, requested=None, current=None):
    """argv of a Python >= 3.10 that can make virtual environments."""
    tried = []
    candidates = [[requested]] if requested else python_candidates(machine, current)
    for argv in candidates:
        version = _python_version(machine, argv)
        if version is None:
            if _python_version(machine, argv, need_venv=False):
                tried.append("{} (no venv/ensurepip module)".format(" ".join(argv)))
            continue
        if version >= ENGINE_PYTHON_MIN:
            return argv, version
        tried.append(f"{' '.join(argv)} ({version[0]}.{version[1]})")
    hint = "install Python 3.10 or newer (python.org, or your package manager) and rerun"
    if any("venv" in t for t in tried):
        hint = "install your distribution's venv package (e.g. apt install python3-venv)"
    raise InstallError(
        "no Python >= 3.10 with venv found%s" % (": tried " + ", ".join(tried) if tried else ""),
        hint + "; or pass --python PATH",
    )


def engine_fingerprint(checkout, dev):
    """Changes when reinstalling the engine would change something."""
    checkout = Path(checkout)
    digest = hashlib.sha256(b"dev" if dev else b"copy")
    files = [checkout / "pyproject.toml"]
    if not dev:  # an editable install sees source changes without reinstalling
        files += source_files(checkout / "engine" / "dragfu")
        files += source_files(checkout / "plugin" / "dragfu" / "dragfu_core")  # in the wheel too
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(checkout)).encode("utf-8"))
            digest.update(sha256_file(path).encode("ascii"))
    return digest.hexdigest()


class EngineSteps:
    """Installer steps for the engine (mixed into installer.Installer)."""

    def venv_dir(self):
        return (
            Path(self.options.venv).expanduser()
            if self.options.venv
            else self.paths.venv_dir(self.host)
        )

    def install_engine(self):
        venv = self.venv_dir()
        python = self.paths.venv_python(venv, self.host)
        old_venv = self.old.data.get("venv") or {}
        venv_info = {"path": str(venv), "dev": bool(self.options.dev)}
        # Recorded as we go: a failed step leaves a manifest that says what was made so far.
        self.new.data["venv"] = venv_info
        if self.options.venv and (python.exists() or self.options.dry_run):
            self.say(f"engine environment: {venv} (given with --venv)")
            venv_info["created"] = bool(
                old_venv.get("created") and old_venv.get("path") == str(venv)
            )
        elif python.exists() and self._python_runs(python):
            self.say(f"engine environment: {venv} (exists)")
            venv_info["created"] = bool(old_venv.get("created")) or self.old.entry(venv) is not None
        else:
            base, version = find_engine_python(self.machine, self.options.python)
            self.say(f"engine Python: {' '.join(base)} ({version[0]}.{version[1]})")
            argv = list(base) + ["-m", "venv"]
            if self.options.system_site_packages:
                argv.append("--system-site-packages")
            self.run_checked(
                argv + [str(venv)], "creating the virtual environment",
                f"created the engine environment {venv}",
            )  # fmt: skip
            venv_info["created"] = True
            if not self.options.engine_no_deps:
                self.run_checked(
                    [python, "-m", "pip", "install", "--upgrade", "pip"], "upgrading pip"
                )
        if venv_info["created"]:
            self.record(path=venv, type="tree", created=True)

        if self.options.no_torch:
            self.say("torch: left as it is (--no-torch)")
            venv_info["torch"] = old_venv.get("torch")
        else:
            self.install_torch(python, old_venv, venv_info)

        fingerprint = engine_fingerprint(self.checkout, self.options.dev)
        up_to_date = (
            old_venv.get("engine_fingerprint") == fingerprint
            and old_venv.get("path") == str(venv)
            and not self.options.dry_run
            and self._imports(python, "dragfu")
        )
        if up_to_date:
            self.say("engine: up to date")
        else:
            argv = [python, "-m", "pip", "install"]
            if self.options.engine_no_deps:
                argv += ["--no-deps", "--no-build-isolation"]
            argv += ["-e", str(self.checkout)] if self.options.dev else [str(self.checkout)]
            editable = " (editable)" if self.options.dev else ""
            self.run_checked(
                argv,
                "installing the engine",
                f"installed the engine from {self.checkout}{editable}",
            )
        venv_info["engine_fingerprint"] = fingerprint
        if not venv_info["created"]:
            self.record(path=venv, type="pip", package="dragfu", python=str(python))
        return [str(self.paths.venv_script(venv, "dragfu", self.host)), "serve"]

    def install_torch(self, python, old_venv, venv_info):
        choice = choose_torch(self.machine, self.options.torch, self.options.torch_index)
        self.say(f"torch: {choice.reason}")
        have_torch = (not self.options.dry_run) and self._imports(python, "torch")
        if have_torch and old_venv.get("torch") == choice.build:
            self.say(f"  torch {choice.build} already installed")
        else:
            self.run_checked(
                [python, "-m", "pip"] + choice.pip_args(),
                "installing torch from " + " and ".join(choice.indexes_tried()),
                f"installed torch ({choice.build})",
                hint=choice.failure_hint(),
            )
        venv_info["torch"] = choice.build

    def _python_runs(self, python):
        code, _ = self.runner.run([python, "-c", "pass"], capture=True, timeout=60)
        return code == 0

    def _imports(self, python, module):
        code, _ = self.runner.run([python, "-c", "import " + module], capture=True, timeout=120)
        return code == 0
