"""The model registry: entries, name resolution, the user's registry file, `dragfu models list`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dragfu.cli.main import main
from dragfu.errors import UnknownModelError
from dragfu.models import registry

DRAGGAN_MODELS = {
    "ffhq-512", "afhqcat-512", "lsun-car", "lsun-cat", "lions-512", "dogs-1024", "horses-256",
    "elephants-512", "human-512x256",
}  # fmt: skip


@pytest.fixture(autouse=True)
def models_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DRAGFU_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DRAGFU_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path / "models"


def test_entries_are_complete_and_consistent():
    assert DRAGGAN_MODELS <= set(registry.MODELS)
    assert {n for n, i in registry.MODELS.items() if i.draggan} == DRAGGAN_MODELS
    for name, info in registry.MODELS.items():
        assert info.name == name and info.title and info.license
        if info.kind == "stylegan2":
            width, height = info.resolution
            assert width >= 32 and height >= 32, name
            assert info.filename == f"{name}.safetensors"
        if info.url is not None:
            assert info.url.startswith(("https://", "http://")), name
        elif not info.embedded:
            assert "by hand" in info.notes, name  # says how to get it
        if "nvidia" in (info.url or "") or "cloudfront" in (info.url or ""):
            assert info.license.startswith("NVIDIA Source Code License-NC") and info.noncommercial
        if info.sha256 is not None:
            assert re.fullmatch(r"[0-9a-f]{64}", info.sha256), (name, info.sha256)
    assert registry.MODELS["lsun-car"].resolution == (512, 384)
    assert registry.MODELS["human-512x256"].resolution == (256, 512)  # (w, h)
    assert registry.MODELS["toy"].embedded and not registry.MODELS["toy"].noncommercial


def test_toy_hash_matches_the_committed_file():
    toy = registry.MODELS["toy"]
    if not toy.path().exists():
        pytest.skip(
            "the trained toy model is not committed yet (engine/dragfu/assets/toy.safetensors)"
        )
    assert toy.sha256 == registry.sha256_file(toy.path()), (
        "update the toy entry's sha256 in engine/dragfu/models/catalogue.json"
    )


def test_resolve_existing_path_and_present_model(tmp_path, models_home):
    model_file = tmp_path / "mine.safetensors"
    model_file.write_bytes(b"x")
    assert registry.resolve(str(model_file)) == model_file
    models_home.mkdir()
    (models_home / "ffhq-512.safetensors").write_bytes(b"x")
    assert registry.resolve("ffhq-512") == models_home / "ffhq-512.safetensors"
    assert registry.MODELS["ffhq-512"].present()


def test_resolve_recognises_draggan_checkpoint_names(models_home):
    models_home.mkdir()
    (models_home / "stylegan2_lions_512_pytorch.pkl").write_bytes(b"x")
    assert registry.resolve("lions-512") == models_home / "stylegan2_lions_512_pytorch.pkl"
    # the converted file wins once it exists
    (models_home / "lions-512.safetensors").write_bytes(b"x")
    assert registry.resolve("lions-512") == models_home / "lions-512.safetensors"


def test_unknown_name_lists_close_names():
    with pytest.raises(UnknownModelError) as caught:
        registry.resolve("ffhq512")
    message = str(caught.value)
    assert "ffhq-512" in message and "\n" not in message
    assert caught.value.code == "unknown_model"


def test_known_but_absent_model_says_how_to_download(models_home):
    with pytest.raises(UnknownModelError) as caught:
        registry.resolve("afhqcat-512")
    assert "not downloaded" in str(caught.value) and str(models_home) in str(caught.value)
    assert caught.value.hint == "run `dragfu models download afhqcat-512`"
    with pytest.raises(UnknownModelError) as caught:
        registry.resolve("human-512x256")
    assert "by hand" in caught.value.hint


def test_missing_path_and_non_generator():
    with pytest.raises(UnknownModelError, match="no model file at"):
        registry.resolve("/nowhere/model.pkl")
    with pytest.raises(UnknownModelError, match="not a generator"):
        registry.resolve("lpips-vgg16")


def test_user_registry_roundtrip_and_damaged_file(models_home):
    assert registry.load_user_registry() == {"models": {}, "accepted_licenses": []}
    registry.record_download("ffhq-512", url="u", source_sha256="a" * 64,
                             files={"ffhq-512.safetensors": "b" * 64})  # fmt: skip
    assert registry.recorded_hashes("ffhq-512") == {"ffhq-512.safetensors": "b" * 64}
    assert registry.forget_download("ffhq-512") and not registry.forget_download("ffhq-512")
    (models_home / "dragfu-models.json").write_text("{not json")
    assert registry.load_user_registry()["models"] == {}


def test_models_list_json_and_table(models_home, capsys):
    models_home.mkdir()
    (models_home / "ffhq-512.safetensors").write_bytes(b"x")
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["models_dir"] == str(models_home)
    rows = {row["name"]: row for row in listed["models"]}
    assert set(rows) == set(registry.MODELS)
    assert rows["ffhq-512"]["present"] and not rows["afhqcat-512"]["present"]
    assert rows["ffhq-512"]["resolution"] == [512, 512] and rows["ffhq-512"]["url"].startswith(
        "https"
    )
    assert main(["models", "list"]) == 0
    table = capsys.readouterr().out
    for name in registry.MODELS:
        assert name in table
    line = next(line for line in table.splitlines() if line.startswith("ffhq-512 "))
    assert "512 x 512" in line and "yes" in line and "NVIDIA NC" in line
    assert main(["models", "list", "--present", "--json"]) == 0
    present = [r["name"] for r in json.loads(capsys.readouterr().out)["models"]]
    assert present == (["toy"] if registry.MODELS["toy"].present() else []) + ["ffhq-512"]


def test_env_models_dir_is_used(models_home, monkeypatch, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "ffhq-256.safetensors").write_bytes(b"x")
    monkeypatch.setenv("DRAGFU_MODELS_DIR", str(other))
    assert registry.resolve("ffhq-256") == Path(other) / "ffhq-256.safetensors"


def test_verify_record_trusts_hand_placed_files_once(models_home, capsys):
    models_home.mkdir()
    checkpoint = models_home / "stylegan2_lions_512_pytorch.pkl"  # from DragGAN's checkpoints/
    checkpoint.write_bytes(b"lion weights")
    assert main(["models", "verify", "lions-512"]) == 0
    assert "--record" in capsys.readouterr().out
    assert main(["models", "verify", "lions-512", "--record", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["status"] == "ok" and result["files"][0]["source"] == "recorded"
    checkpoint.write_bytes(b"changed weights")
    assert main(["models", "verify", "lions-512", "--record"]) == 1  # --record never overrides
    assert "mismatch" in capsys.readouterr().out


def test_embedded_model_checked_against_its_pinned_hash(tmp_path, monkeypatch):
    from dragfu.cli import doctor
    from dragfu.models import download

    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "tiny.safetensors").write_bytes(b"weights")
    (assets / "tiny.json").write_text("{}")
    monkeypatch.setattr(registry, "ASSETS_DIR", assets)
    info = registry.ModelInfo(
        name="tiny-embedded", title="t", resolution=(32, 32), url=None,
        sha256=registry.sha256_file(assets / "tiny.safetensors"), license="MIT",
        filename="tiny.safetensors", embedded=True, noncommercial=False,
    )  # fmt: skip
    monkeypatch.setitem(registry.MODELS, info.name, info)
    checks = download.verify_model(info)
    assert [(c.path.name, c.status, c.source) for c in checks] == [
        ("tiny.safetensors", "ok", "published")
    ]
    (assets / "tiny.safetensors").write_bytes(b"other weights")
    assert [c.status for c in download.verify_model(info)] == ["mismatch"]
    check = {c.name: c for c in doctor.check_models()}["model tiny-embedded"]
    assert check.status == "fail"
