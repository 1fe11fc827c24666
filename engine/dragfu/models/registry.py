"""The model registry: every generator Drag-Fu knows by name, where it comes from, where it lives.

The catalogue is data: `catalogue.json` beside this module (DragGAN's models, NVIDIA's other
StyleGAN2 releases, the LPIPS-VGG16 weights the projection uses, and the embedded toy model),
read once into `MODELS`. Downloads made by the user (`dragfu models download NAME|URL`) are
recorded in the user's database (`<models dir>/dragfu-models.json`, `dragfu.models.userdb`): the
sha256 of each verified download (trust on first use where the publisher gives no hash),
URL-downloaded models under their own names, accepted licences.

Nothing here downloads: see `dragfu.models.download` and `dragfu models download`.
"""

from __future__ import annotations

import difflib
import json
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from dragfu import paths
from dragfu.errors import UnknownModelError
from dragfu.models import userdb
from dragfu.models.hashing import sha256_file

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
CATALOGUE_PATH = Path(__file__).resolve().parent / "catalogue.json"


@dataclass(frozen=True)
class ModelInfo:
    """One model. `sha256` is the hash of the file published at `url` (None: the publisher gives
    none; then the hash of the user's first verified download is recorded and checked after).

    `filename` is the file the engine loads from the models folder (our safetensors conversion for
    generators); `source_names` are names the published file goes by (a DragGAN `checkpoints/`
    folder renames some), so a folder of existing downloads is recognised as is.

    `source_format` is the format of the published file: "nvidia-pkl" (NVIDIA's PyTorch network
    pickle, `models.nvidia_pickle`), "nvidia-tf-pkl" (NVIDIA's TensorFlow-era StyleGAN2 pickle,
    `models.tf_pickle`), "dragfu-safetensors" (ours), "torchscript"; None where not stated (a
    model added by URL: the loader tells the format from the file itself).
    """

    name: str
    title: str
    resolution: tuple[int, int]  # (width, height) of the image the generator makes
    url: str | None
    sha256: str | None
    license: str
    filename: str
    embedded: bool = False
    notes: str = ""
    kind: str = "stylegan2"  # stylegan2 | lpips
    license_url: str | None = None
    noncommercial: bool = True  # download needs explicit acceptance (--accept-license)
    source_names: tuple[str, ...] = ()
    draggan: bool = False  # offered by DragGAN
    source_format: str | None = None  # see the docstring

    @property
    def source_filename(self) -> str | None:
        """File name of the published download (what the URL serves)."""
        if self.source_names:
            return self.source_names[0]
        if self.url:
            return self.url.rstrip("/").rsplit("/", 1)[-1]
        return None

    def candidates(self, models_dir: Path | None = None) -> list[Path]:
        """Local files that hold this model, preferred first."""
        if self.embedded:
            return [ASSETS_DIR / self.filename]
        folder = models_dir if models_dir is not None else paths.models_dir()
        names = [self.filename] + [n for n in self.source_names if n != self.filename]
        source = self.source_filename
        if source and source not in names:
            names.append(source)
        return [folder / n for n in names]

    def path(self, models_dir: Path | None = None) -> Path:
        """The file the engine should load: the first candidate present, else where it will go."""
        candidates = self.candidates(models_dir)
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        return candidates[0]

    def present(self, models_dir: Path | None = None) -> bool:
        return any(candidate.is_file() for candidate in self.candidates(models_dir))

    def to_json(self) -> dict:
        data = asdict(self)
        data["resolution"] = list(self.resolution)
        data["source_names"] = list(self.source_names)
        return data


def _model_info(entry: dict) -> ModelInfo:
    known = {f.name for f in fields(ModelInfo)}
    unknown = set(entry) - known
    if unknown:
        raise ValueError(f"catalogue entry {entry.get('name')!r}: unknown fields {sorted(unknown)}")
    entry = dict(entry)
    entry["resolution"] = tuple(entry.get("resolution") or (0, 0))
    entry["source_names"] = tuple(entry.get("source_names") or ())
    return ModelInfo(**entry)


def load_catalogue(path: Path = CATALOGUE_PATH) -> dict[str, ModelInfo]:
    """The catalogue file as {name: ModelInfo}, in its order."""
    document = json.loads(path.read_text(encoding="utf-8"))
    return {entry["name"]: _model_info(entry) for entry in document["models"]}


MODELS: dict[str, ModelInfo] = load_catalogue()
#: sha256 of engine/dragfu/assets/toy.safetensors (the trained toy model, docs/benchmarks.md),
#: pinned in catalogue.json. A test compares it with the committed file: retraining the toy
#: means updating the catalogue.
TOY_SHA256: str | None = MODELS["toy"].sha256
DEFAULT_MODEL = "toy"


# ---------------------------------------------------------------------------------------------
# The user's registry file: recorded hashes, URL models, accepted licences
# ---------------------------------------------------------------------------------------------


def load_user_registry(models_dir: Path | None = None) -> dict:
    """{"models": {name: record}, "accepted_licenses": [...]}; empty when there is no file.
    Cached per process (see `userdb`); the result is a copy."""
    return userdb.load(models_dir)


def save_user_registry(data: dict, models_dir: Path | None = None) -> Path:
    """Replace the user's database (locked, atomic). To change part of it, `userdb.editing`."""
    return userdb.save(data, models_dir)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def record_download(
    name: str,
    *,
    url: str | None,
    source_sha256: str,
    files: dict[str, str],
    models_dir: Path | None = None,
    info: ModelInfo | None = None,
) -> dict:
    """Remember a verified download: its source hash and the hash of every local file we made."""
    record = {
        "url": url,
        "source_sha256": source_sha256,
        "files": files,  # local file name -> sha256
        "recorded": _now(),
    }
    if info is not None and info.name not in MODELS:
        record["info"] = info.to_json()
    with userdb.editing(models_dir) as data:
        data["models"][name] = record
    return record


def record_local_hashes(name: str, files: dict[str, str], models_dir: Path | None = None) -> dict:
    """Trust on first use for files put in the models folder by hand (e.g. DragGAN's
    checkpoints): remember their sha256 so later checks catch any change. Never replaces a hash
    already recorded."""
    with userdb.editing(models_dir) as data:
        record = data["models"].setdefault(
            name, {"url": None, "source_sha256": None, "files": {}, "recorded": None}
        )
        record.setdefault("files", {})
        for filename, digest in files.items():
            record["files"].setdefault(filename, digest)
        record["recorded"] = _now()
    return record


def forget_download(name: str, models_dir: Path | None = None) -> bool:
    with userdb.editing(models_dir) as data:
        return data["models"].pop(name, None) is not None


def user_models(models_dir: Path | None = None) -> dict[str, ModelInfo]:
    """Models the user downloaded by URL, as ModelInfo (they live in the user's registry file)."""
    result = {}
    for name, record in load_user_registry(models_dir)["models"].items():
        raw = record.get("info")
        if name in MODELS or not isinstance(raw, dict):
            continue
        try:
            result[name] = _model_info(raw)
        except (TypeError, ValueError):
            continue
    return result


def all_models(models_dir: Path | None = None) -> dict[str, ModelInfo]:
    merged = dict(MODELS)
    merged.update(user_models(models_dir))
    return merged


def recorded_hashes(name: str, models_dir: Path | None = None) -> dict[str, str]:
    """Local file name -> sha256 recorded when this model was downloaded and verified."""
    record = load_user_registry(models_dir)["models"].get(name) or {}
    files = record.get("files") or {}
    return {str(k): str(v) for k, v in files.items()}


def expected_hash(
    info: ModelInfo, path: Path, models_dir: Path | None = None
) -> tuple[str | None, str]:
    """(sha256 the file at `path` should have, where that comes from: published|recorded|none)."""
    published_file = info.filename if info.embedded else info.source_filename
    if info.sha256 and (path.name == published_file or path.name in info.source_names):
        return info.sha256, "published"
    recorded = recorded_hashes(info.name, models_dir).get(path.name)
    if recorded:
        return recorded, "recorded"
    return None, "none"


# ---------------------------------------------------------------------------------------------
# Name -> file
# ---------------------------------------------------------------------------------------------


def _looks_like_path(text: str) -> bool:
    return (
        os.sep in text
        or (os.altsep is not None and os.altsep in text)
        or "/" in text
        or text.startswith("~")
        or Path(text).suffix.lower() in {".pkl", ".pt", ".pth", ".safetensors"}
    )


def resolve(name_or_path: str | os.PathLike, models_dir: Path | None = None) -> Path:
    """The file to load for a model name (registry or the user's downloads) or an existing path.

    Raises `UnknownModelError` with one line naming close matches, or saying how to download a
    known model that is not here yet.
    """
    text = os.fspath(name_or_path)
    candidate = Path(text).expanduser()
    if candidate.is_file():
        return candidate
    models = all_models(models_dir)
    info = models.get(text)
    if info is None and text.lower() in models:
        info = models[text.lower()]
    if info is not None:
        if info.kind != "stylegan2":
            raise UnknownModelError(
                f"'{info.name}' is not a generator ({info.title})",
                hint="pick a generator from `dragfu models list`",
            )
        if info.present(models_dir):
            return info.path(models_dir)
        where = models_dir if models_dir is not None else paths.models_dir()
        if info.url:
            hint = f"run `dragfu models download {info.name}`"
        else:
            hint = info.notes or "see `dragfu models list`"
        raise UnknownModelError(
            f"model '{info.name}' is not downloaded (looked in {where})", hint=hint
        )
    if _looks_like_path(text):
        raise UnknownModelError(
            f"no model file at {candidate}",
            hint="check the path, or use a name from `dragfu models list`",
        )
    close = difflib.get_close_matches(text.lower(), list(models), n=3, cutoff=0.5)
    if not close:
        close = [n for n in models if text.lower() in n][:3]
    suggestion = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"unknown model '{text}'{suggestion}",
        hint="`dragfu models list` shows every model name; a file path works too",
    )


def summary(info: ModelInfo, models_dir: Path | None = None) -> dict:
    """What `dragfu models list --json` prints for one model."""
    data = info.to_json()
    data["present"] = info.present(models_dir)
    data["path"] = str(info.path(models_dir))
    data["recorded_sha256"] = recorded_hashes(info.name, models_dir) or None
    return data


__all__ = [
    "MODELS",
    "DEFAULT_MODEL",
    "ModelInfo",
    "resolve",
    "all_models",
    "user_models",
    "load_user_registry",
    "save_user_registry",
    "record_download",
    "forget_download",
    "record_local_hashes",
    "recorded_hashes",
    "expected_hash",
    "sha256_file",
    "summary",
]
