"""The user's model database: cached reads, locked atomic writes; the catalogue file; hashing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading

import pytest

from dragfu.models import registry, userdb
from dragfu.models.hashing import sha256_file
from tests.conftest import REPO

WRITER = """
import sys
from pathlib import Path
from dragfu.models import registry
models_dir, prefix, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
sys.stdin.readline()  # start together
for i in range(count):
    registry.record_download(f"{prefix}-{i}", url=None, source_sha256="a" * 64,
                             files={f"{prefix}-{i}.safetensors": "b" * 64}, models_dir=models_dir)
"""


@pytest.fixture
def models_dir(tmp_path):
    return tmp_path / "models"


def test_two_processes_adding_models_keep_each_others_entries(models_dir):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "engine"), str(REPO)])}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(models_dir), prefix, "40"],
            stdin=subprocess.PIPE,
            env=env,
            text=True,
        )  # fmt: skip
        for prefix in ("a", "b")
    ]
    for writer in writers:
        writer.stdin.write("go\n")
        writer.stdin.close()
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    names = set(registry.load_user_registry(models_dir)["models"])
    assert names == {f"{p}-{i}" for p in "ab" for i in range(40)}
    assert not list(models_dir.glob("*.tmp"))


def test_threads_adding_models_keep_each_others_entries(models_dir):
    def add(prefix):
        for i in range(25):
            registry.record_local_hashes(f"{prefix}-{i}", {"f": "c" * 64}, models_dir)

    threads = [threading.Thread(target=add, args=(str(n),)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(registry.load_user_registry(models_dir)["models"]) == 100


def test_reads_are_cached_until_the_file_changes(models_dir, monkeypatch):
    registry.record_download("x", url=None, source_sha256="a" * 64, files={}, models_dir=models_dir)
    reads = []
    real_read = userdb._read
    monkeypatch.setattr(userdb, "_read", lambda path: reads.append(path) or real_read(path))
    for _ in range(5):
        assert set(registry.load_user_registry(models_dir)["models"]) == {"x"}
    assert reads == []  # this process wrote it: the cache already holds it
    # Another process writes (a new file under the same name): seen on the next read, once.
    path = models_dir / "dragfu-models.json"
    other = {"models": {"y": {"files": {}}}, "accepted_licenses": []}
    (models_dir / "other.tmp").write_text(json.dumps(other))
    os.replace(models_dir / "other.tmp", path)
    assert set(registry.load_user_registry(models_dir)["models"]) == {"y"}
    assert set(registry.load_user_registry(models_dir)["models"]) == {"y"}
    assert len(reads) == 1


def test_loaded_data_is_a_copy(models_dir):
    registry.load_user_registry(models_dir)["models"]["ghost"] = {}
    assert registry.load_user_registry(models_dir)["models"] == {}
    assert not (models_dir / "dragfu-models.json").exists()  # reading never writes


def test_a_failed_edit_leaves_the_file_as_it_was(models_dir):
    registry.record_download("x", url=None, source_sha256="a" * 64, files={}, models_dir=models_dir)
    before = (models_dir / "dragfu-models.json").read_bytes()
    with pytest.raises(RuntimeError), userdb.editing(models_dir) as data:
        data["models"].clear()
        raise RuntimeError("interrupted")
    assert (models_dir / "dragfu-models.json").read_bytes() == before
    assert not registry.forget_download("never-added", models_dir)
    assert (models_dir / "dragfu-models.json").read_bytes() == before  # nothing to forget: no write
    assert sorted(p.name for p in models_dir.iterdir()) == [
        "dragfu-models.json", "dragfu-models.json.lock",
    ]  # fmt: skip


def test_the_catalogue_is_data_and_only_runnable_models():
    document = json.loads(registry.CATALOGUE_PATH.read_text(encoding="utf-8"))
    assert [entry["name"] for entry in document["models"]] == list(registry.MODELS)
    assert registry.load_catalogue() == registry.MODELS
    # The generator refuses class-conditional networks (c_dim > 0): none is offered.
    assert not [name for name in registry.MODELS if "cifar" in name]
    assert "conditional" not in registry.CATALOGUE_PATH.read_text(encoding="utf-8").replace(
        "no class-conditional generators", ""
    )
    assert registry.TOY_SHA256 == registry.MODELS["toy"].sha256
    with pytest.raises(ValueError, match="unknown fields"):
        registry._model_info({"name": "x", "no_such_field": 1})


def test_catalogue_ships_as_package_data():
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert '"models/catalogue.json"' in pyproject


def test_one_hashing_helper(tmp_path):
    path = tmp_path / "f.bin"
    data = os.urandom(10_000)
    path.write_bytes(data)
    assert sha256_file(path, chunk=777) == sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert registry.sha256_file is sha256_file
