"""Running commands and what the machine has (both injectable, so tests fake them)."""

import hashlib
import platform
import shutil
import subprocess


class InstallError(Exception):
    def __init__(self, message, hint=""):
        Exception.__init__(self, message)
        self.hint = hint


class Runner:
    """Runs commands. Tests replace it with a fake that records argv and simulates effects."""

    def run(self, argv, capture=False, env=None, timeout=None):
        """(exit code, stdout text or '')."""
        try:
            completed = subprocess.run(
                [str(a) for a in argv],
                stdout=subprocess.PIPE if capture else None,
                stderr=subprocess.STDOUT if capture else None,
                env=env,
                timeout=timeout,
                text=True,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return 127, str(error)
        return completed.returncode, completed.stdout or ""


class Machine:
    """OS, CPU, programs on PATH; `probe` runs a detection command and returns its output."""

    def __init__(self, host, runner, machine=None, which=None):
        self.host = host
        self.runner = runner
        self.machine = (machine or platform.machine() or "").lower()
        self._which = which

    def which(self, name):
        if self._which is not None:
            return self._which(name)
        return shutil.which(name, path=self.host.env.get("PATH"))

    def probe(self, argv):
        code, output = self.runner.run(argv, capture=True, timeout=30)
        return output if code == 0 else None


def sha256_file(path):
    digest = hashlib.sha256()
    with open(str(path), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()
