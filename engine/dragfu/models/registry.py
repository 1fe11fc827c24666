"""The model registry: every generator Drag-Fu knows by name, where it comes from, where it lives.

`MODELS` holds the built-in entries (DragGAN's models, NVIDIA's other StyleGAN2 releases, the
LPIPS-VGG16 weights the projection uses, and the embedded toy model). Downloads made by the user
(`dragfu models download NAME|URL`) are recorded in the user's registry file
(`<models dir>/dragfu-models.json`): the sha256 of each verified download (trust on first use
where the publisher gives no hash), URL-downloaded models under their own names, accepted licences.

Nothing here downloads: see `dragfu.models.download` and `dragfu models download`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from dragfu import paths
from dragfu.errors import UnknownModelError

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"

#: sha256 of engine/dragfu/assets/toy.safetensors (the trained toy model, docs/benchmarks.md).
#: A test compares this constant with the committed file: retraining the toy means updating it.
TOY_SHA256: str | None = "96f236a17ad24e3eee0246a7618137c092bc778bcdda10c148f886c0be701a1b"

NVIDIA_NC = "NVIDIA Source Code License-NC (non-commercial research use only)"
NVIDIA_NC_URL = "https://nvlabs.github.io/stylegan2-ada-pytorch/license.html"
NVIDIA_TF_NC_URL = "https://nvlabs.github.io/stylegan2/license.html"
SELF_DISTILLED_LICENSE = (
    "as published by the Self-Distilled StyleGAN authors (research release used by DragGAN); "
    "read their terms before any non-research use"
)
SELF_DISTILLED_URL = "https://self-distilled-stylegan.github.io/"
HUMAN_LICENSE = (
    "as published by the StyleGAN-Human authors (research use; built on NVIDIA's "
    "non-commercial StyleGAN code)"
)

NGC = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/"
ADA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"
TF_SG2 = "http://d36zk2xti64re0.cloudfront.net/stylegan2/networks/"
SELF_DISTILLED = "https://storage.googleapis.com/self-distilled-stylegan/"


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


def _nvidia(
    name,
    title,
    resolution,
    url,
    notes="",
    draggan=False,
    license_url=NVIDIA_NC_URL,
    source_format="nvidia-pkl",
):
    return ModelInfo(
        name=name,
        title=title,
        resolution=resolution,
        url=url,
        sha256=None,
        license=NVIDIA_NC,
        filename=f"{name}.safetensors",
        notes=notes,
        license_url=license_url,
        draggan=draggan,
        source_format=source_format,
    )


def _self_distilled(name, title, resolution, stem):
    return ModelInfo(
        name=name,
        title=title,
        resolution=resolution,
        url=SELF_DISTILLED + f"{stem}_pytorch.pkl",
        sha256=None,
        license=SELF_DISTILLED_LICENSE,
        filename=f"{name}.safetensors",
        notes="Self-Distilled StyleGAN (Mokady et al.), trained on internet photos.",
        license_url=SELF_DISTILLED_URL,
        source_names=(f"{stem}_pytorch.pkl", f"stylegan2_{stem}_pytorch.pkl"),
        draggan=True,
        source_format="nvidia-pkl",
    )


_TF_NOTE = (
    "TensorFlow-era StyleGAN2 pickle (config-f): read without TensorFlow (nothing in it is "
    "executed) and converted to safetensors on download."
)

_ENTRIES = [
    ModelInfo(
        name="toy",
        title="Toy faces (embedded default, trained for Drag-Fu)",
        resolution=(128, 128),
        url=None,
        sha256=TOY_SHA256,
        license="MIT (trained by the Drag-Fu project on its procedural toy-faces world)",
        filename="toy.safetensors",
        embedded=True,
        notes="Ships inside the engine; nothing to download.",
        noncommercial=False,
        source_format="dragfu-safetensors",
    ),
    # --- DragGAN's list (scripts/download_model.sh and its README) ---
    _nvidia(
        "ffhq-512",
        "FFHQ faces 512 (StyleGAN2)",
        (512, 512),
        NGC + "stylegan2-ffhq-512x512.pkl",
        draggan=True,
    ),
    _nvidia(
        "afhqcat-512",
        "AFHQ cats 512 (StyleGAN2)",
        (512, 512),
        NGC + "stylegan2-afhqcat-512x512.pkl",
        draggan=True,
    ),
    _nvidia(
        "lsun-car",
        "LSUN cars 512x384 (StyleGAN2 config-f)",
        (512, 384),
        TF_SG2 + "stylegan2-car-config-f.pkl",
        notes=_TF_NOTE + " The network outputs 512x512; the picture is the middle 384 rows.",
        draggan=True,
        license_url=NVIDIA_TF_NC_URL,
        source_format="nvidia-tf-pkl",
    ),
    _nvidia(
        "lsun-cat",
        "LSUN cats 256 (StyleGAN2 config-f)",
        (256, 256),
        TF_SG2 + "stylegan2-cat-config-f.pkl",
        notes=_TF_NOTE,
        draggan=True,
        license_url=NVIDIA_TF_NC_URL,
        source_format="nvidia-tf-pkl",
    ),
    _self_distilled("lions-512", "Lions 512 (Self-Distilled StyleGAN)", (512, 512), "lions_512"),
    _self_distilled("dogs-1024", "Dogs 1024 (Self-Distilled StyleGAN)", (1024, 1024), "dogs_1024"),
    _self_distilled("horses-256", "Horses 256 (Self-Distilled StyleGAN)", (256, 256), "horses_256"),
    _self_distilled(
        "elephants-512", "Elephants 512 (Self-Distilled StyleGAN)", (512, 512), "elephants_512"
    ),
    ModelInfo(
        name="human-512x256",
        title="StyleGAN-Human v2 full bodies 512x256",
        resolution=(256, 512),
        url=None,
        sha256=None,
        license=HUMAN_LICENSE,
        filename="human-512x256.safetensors",
        notes=(
            "Published on Google Drive via https://github.com/stylegan-human/StyleGAN-Human "
            "(no direct URL): download stylegan_human_v2_512.pkl by hand into the models folder. "
            "Rectangular generator (512 high, 256 wide)."
        ),
        license_url="https://github.com/stylegan-human/StyleGAN-Human",
        source_names=("stylegan_human_v2_512.pkl",),
        draggan=True,
        source_format="nvidia-pkl",
    ),
    # --- NVIDIA's other StyleGAN2 releases (stylegan3 repository: NGC catalogue) ---
    _nvidia("ffhq-1024", "FFHQ faces 1024", (1024, 1024), NGC + "stylegan2-ffhq-1024x1024.pkl"),
    _nvidia("ffhq-256", "FFHQ faces 256", (256, 256), NGC + "stylegan2-ffhq-256x256.pkl"),
    _nvidia(
        "ffhqu-1024",
        "FFHQ-U (unaligned) faces 1024",
        (1024, 1024),
        NGC + "stylegan2-ffhqu-1024x1024.pkl",
    ),
    _nvidia(
        "ffhqu-256", "FFHQ-U (unaligned) faces 256", (256, 256), NGC + "stylegan2-ffhqu-256x256.pkl"
    ),
    _nvidia(
        "metfaces-1024",
        "MetFaces portraits 1024",
        (1024, 1024),
        NGC + "stylegan2-metfaces-1024x1024.pkl",
    ),
    _nvidia(
        "metfacesu-1024",
        "MetFaces-U portraits 1024",
        (1024, 1024),
        NGC + "stylegan2-metfacesu-1024x1024.pkl",
    ),
    _nvidia(
        "afhqv2-512", "AFHQv2 animal faces 512", (512, 512), NGC + "stylegan2-afhqv2-512x512.pkl"
    ),
    _nvidia("afhqdog-512", "AFHQ dogs 512", (512, 512), NGC + "stylegan2-afhqdog-512x512.pkl"),
    _nvidia(
        "afhqwild-512", "AFHQ wild animals 512", (512, 512), NGC + "stylegan2-afhqwild-512x512.pkl"
    ),
    _nvidia(
        "brecahad-512", "BreCaHAD histology 512", (512, 512), NGC + "stylegan2-brecahad-512x512.pkl"
    ),
    _nvidia(
        "cifar10-32",
        "CIFAR-10 32 (class-conditional)",
        (32, 32),
        NGC + "stylegan2-cifar10-32x32.pkl",
        notes="Conditional generator (c_dim=10): needs a class label.",
    ),
    _nvidia(
        "celebahq-256", "CelebA-HQ faces 256", (256, 256), NGC + "stylegan2-celebahq-256x256.pkl"
    ),
    _nvidia("lsundog-256", "LSUN dogs 256", (256, 256), NGC + "stylegan2-lsundog-256x256.pkl"),
    # --- stylegan2-ada-pytorch's own release (same networks as the NGC files above, ADA paper) ---
    _nvidia(
        "ada-ffhq-1024", "FFHQ faces 1024 (stylegan2-ada-pytorch)", (1024, 1024), ADA + "ffhq.pkl"
    ),
    _nvidia(
        "ada-metfaces-1024",
        "MetFaces 1024 (stylegan2-ada-pytorch)",
        (1024, 1024),
        ADA + "metfaces.pkl",
    ),
    _nvidia(
        "ada-afhqcat-512", "AFHQ cats 512 (stylegan2-ada-pytorch)", (512, 512), ADA + "afhqcat.pkl"
    ),
    _nvidia(
        "ada-afhqdog-512", "AFHQ dogs 512 (stylegan2-ada-pytorch)", (512, 512), ADA + "afhqdog.pkl"
    ),
    _nvidia(
        "ada-afhqwild-512",
        "AFHQ wild 512 (stylegan2-ada-pytorch)",
        (512, 512),
        ADA + "afhqwild.pkl",
    ),
    _nvidia(
        "ada-brecahad-512", "BreCaHAD 512 (stylegan2-ada-pytorch)", (512, 512), ADA + "brecahad.pkl"
    ),
    _nvidia(
        "ada-cifar10-32",
        "CIFAR-10 32 (stylegan2-ada-pytorch, conditional)",
        (32, 32),
        ADA + "cifar10.pkl",
        notes="Conditional generator (c_dim=10): needs a class label.",
    ),
    # --- not a generator: the perceptual loss of the projection (dragfu.project) ---
    ModelInfo(
        name="lpips-vgg16",
        title="LPIPS-VGG16 perceptual loss (TorchScript, for projection)",
        resolution=(0, 0),
        url=ADA + "metrics/vgg16.pt",
        sha256=None,
        license=NVIDIA_NC + "; LPIPS (BSD-2-Clause) weights on VGG16",
        filename="vgg16.pt",
        kind="lpips",
        notes="Used by projection when present (also DRAGFU_LPIPS=path); not converted.",
        license_url=NVIDIA_NC_URL,
        source_format="torchscript",
    ),
]

MODELS: dict[str, ModelInfo] = {info.name: info for info in _ENTRIES}
DEFAULT_MODEL = "toy"


# ---------------------------------------------------------------------------------------------
# The user's registry file: recorded hashes, URL models, accepted licences
# ---------------------------------------------------------------------------------------------


def _registry_path(models_dir: Path | None) -> Path:
    if models_dir is None:
        return paths.user_registry_path()
    return Path(models_dir) / paths.USER_REGISTRY_NAME


def load_user_registry(models_dir: Path | None = None) -> dict:
    """{"models": {name: record}, "accepted_licenses": [...]}; empty when there is no file."""
    path = _registry_path(models_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        data = {}
    except (OSError, ValueError):
        # A damaged registry must not stop the engine: it only holds hashes we can record again.
        data = {}
    if not isinstance(data, dict):
        data = {}
    data.setdefault("models", {})
    data.setdefault("accepted_licenses", [])
    return data


def save_user_registry(data: dict, models_dir: Path | None = None) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves half a registry."""
    path = _registry_path(models_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


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
    data = load_user_registry(models_dir)
    record = {
        "url": url,
        "source_sha256": source_sha256,
        "files": files,  # local file name -> sha256
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if info is not None and info.name not in MODELS:
        record["info"] = info.to_json()
    data["models"][name] = record
    save_user_registry(data, models_dir)
    return record


def record_local_hashes(name: str, files: dict[str, str], models_dir: Path | None = None) -> dict:
    """Trust on first use for files put in the models folder by hand (e.g. DragGAN's
    checkpoints): remember their sha256 so later checks catch any change. Never replaces a hash
    already recorded."""
    data = load_user_registry(models_dir)
    record = data["models"].setdefault(
        name, {"url": None, "source_sha256": None, "files": {}, "recorded": None}
    )
    record.setdefault("files", {})
    for filename, digest in files.items():
        record["files"].setdefault(filename, digest)
    record["recorded"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save_user_registry(data, models_dir)
    return record


def forget_download(name: str, models_dir: Path | None = None) -> bool:
    data = load_user_registry(models_dir)
    if data["models"].pop(name, None) is None:
        return False
    save_user_registry(data, models_dir)
    return True


def user_models(models_dir: Path | None = None) -> dict[str, ModelInfo]:
    """Models the user downloaded by URL, as ModelInfo (they live in the user's registry file)."""
    result = {}
    for name, record in load_user_registry(models_dir)["models"].items():
        raw = record.get("info")
        if name in MODELS or not isinstance(raw, dict):
            continue
        try:
            raw = dict(raw)
            raw["resolution"] = tuple(raw.get("resolution") or (0, 0))
            raw["source_names"] = tuple(raw.get("source_names") or ())
            result[name] = ModelInfo(**raw)
        except TypeError:
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


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


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
