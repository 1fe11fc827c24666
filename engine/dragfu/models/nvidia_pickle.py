"""Read NVIDIA's StyleGAN2 network pickles without executing anything in them.

NVIDIA's `.pkl` files (stylegan2-ada-pytorch, stylegan3 repo) pickle each network as a
`torch_utils.persistence` object whose `meta` carries the module's Python source and the module's
`__dict__`. Unpickling them normally imports and runs that source. We never do: a restricted
unpickler resolves only an allowlist of globals, replaces the persistence hook by a stub that keeps
`meta` as plain data, and rebuilds tensor storages with `torch.load(..., weights_only=True)`.
The state dict and the constructor kwargs are then read out of that data.
"""

from __future__ import annotations

import codecs
import collections
import io
import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dragfu.errors import CheckpointError, UnsafeCheckpointError, UnsupportedModelError


class EasyDict(dict):
    """Stand-in for `dnnlib.util.EasyDict`: a dict, with attribute access."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as error:
            raise AttributeError(name) from error


@dataclass
class PersistentObject:
    """What `torch_utils.persistence._reconstruct_persistent_obj(meta)` would have built, as data."""

    meta: dict
    extra_state: dict = field(default_factory=dict)

    @property
    def class_name(self) -> str:
        return str(self.meta.get("class_name", ""))

    @property
    def state(self) -> dict:
        return self.meta.get("state") or {}

    def __setstate__(self, state: Any) -> None:  # BUILD after reconstruction: keep as data
        if isinstance(state, dict):
            self.extra_state.update(state)


def _reconstruct_persistent_obj(meta: dict) -> PersistentObject:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise UnsafeCheckpointError("persistent object with unexpected metadata")
    return PersistentObject(meta=dict(meta))


def _load_storage_from_bytes(data: bytes):
    # NVIDIA's pickles embed each storage as a torch.save() blob; weights_only=True makes
    # torch refuse anything in it but tensors and storages.
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, *_):
    if not isinstance(storage, torch.storage.TypedStorage | torch.UntypedStorage):
        raise CheckpointError("tensor data is not a storage")
    tensor = torch.empty(0, dtype=storage.dtype)
    tensor.set_(storage._untyped_storage if hasattr(storage, "_untyped_storage") else storage)
    return tensor.as_strided(size, stride, offset).clone()


def _rebuild_parameter(data, requires_grad=False, hooks=None):
    return torch.nn.Parameter(data, requires_grad=requires_grad)


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafeCheckpointError("numpy scalar of a non-numeric dtype")
    return np.frombuffer(data, dtype=dtype)[0] if data is not None else dtype.type()


def _numpy_dtype(name, align=False, copy=False):
    dtype = np.dtype(name)
    if dtype.hasobject:
        raise UnsafeCheckpointError("numpy object dtype")
    return dtype


def _codecs_encode(text, encoding="utf-8"):
    if encoding not in ("latin1", "latin-1"):
        raise UnsafeCheckpointError(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, encoding)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    ("_codecs", "encode"): _codecs_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in `allowed`; anything else stops the load before it runs.

    Subclasses give another allowlist (`tf_pickle` for NVIDIA's TensorFlow-era pickles)."""

    allowed: dict[tuple[str, str], Any] = ALLOWED_GLOBALS

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"refusing to load: the pickle asks for '{module}.{name}', which is not on the "
                "allowlist of a StyleGAN2 network pickle (nothing in the file was executed)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError("refusing to load: the pickle uses persistent ids")


def read_pickle(
    data: bytes, where: str, unpickler: type[RestrictedUnpickler] = RestrictedUnpickler
) -> Any:
    try:
        return unpickler(io.BytesIO(data)).load()
    except (UnsafeCheckpointError, CheckpointError):
        raise
    except Exception as error:  # truncated or corrupt pickles raise all sorts of things
        raise CheckpointError(
            f"{where}: not a readable network pickle ({type(error).__name__}: {error})"
        ) from None


def module_state_dict(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten a pickled nn.Module's `_parameters`, `_buffers`, `_modules` into a state dict."""
    state = obj.state if isinstance(obj, PersistentObject) else getattr(obj, "__dict__", {})
    tensors: dict[str, torch.Tensor] = {}
    for kind in ("_parameters", "_buffers"):
        for name, value in (state.get(kind) or {}).items():
            if value is not None:
                non_persistent = state.get("_non_persistent_buffers_set") or set()
                if kind == "_buffers" and name in non_persistent:
                    continue
                tensors[prefix + name] = value.detach()
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            tensors.update(module_state_dict(child, f"{prefix}{name}."))
    return tensors


@dataclass
class NvidiaNetwork:
    class_name: str
    init_kwargs: dict
    state_dict: dict[str, torch.Tensor]


def _plain(value: Any) -> Any:
    """EasyDicts and numpy scalars -> JSON-able Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_generator(path: str, data: bytes | None = None) -> NvidiaNetwork:
    """The `G_ema` network of an NVIDIA StyleGAN2 pickle, as class name, kwargs and tensors."""
    if data is None:
        with open(path, "rb") as file:
            data = file.read()
    content = read_pickle(data, path)
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: a pickle, but not a network pickle (no dict at the top)")
    network = content.get("G_ema", content.get("G"))
    if not isinstance(network, PersistentObject):
        if "g_ema" in content:
            raise UnsupportedModelError(f"{path}: looks like a rosinality checkpoint, not NVIDIA's")
        raise CheckpointError(f"{path}: a pickle without a G_ema network (keys: {sorted(content)})")
    class_name = network.class_name
    if "networks_stylegan3" in class_name:
        raise UnsupportedModelError(
            f"{path}: a StyleGAN3 (alias-free) generator; only StyleGAN2 generators are supported",
            hint="use a StyleGAN2 checkpoint such as stylegan2-ffhq-512x512.pkl",
        )
    if not class_name.endswith("Generator"):
        raise CheckpointError(f"{path}: G_ema is a {class_name!r}, not a Generator")
    init_kwargs = _plain(network.state.get("_init_kwargs") or {})
    if not init_kwargs:
        raise CheckpointError(f"{path}: G_ema carries no _init_kwargs (its configuration)")
    return NvidiaNetwork(class_name, init_kwargs, module_state_dict(network))
