"""Read NVIDIA's TensorFlow-era StyleGAN2 pickles (`stylegan2-*-config-f.pkl`) without TensorFlow,
executing nothing in them.

What such a file holds (NVIDIA's stylegan2 repository: `dnnlib/tflib/network.py`,
`training/networks_stylegan2.py`): a tuple (G, D, Gs) of `dnnlib.tflib.network.Network` objects,
each pickled as its class plus the state dict of `Network.__getstate__`: `version` (4), `name`,
`static_kwargs` (the build function's keyword arguments), `components` (sub-networks by role; the
generator has `mapping` and `synthesis`), `build_module_src` (the Python source of the module that
builds the network, which TensorFlow's own unpickling exec()s), `build_func_name` (`G_main`) and
`variables`, a list of (local name, numpy value). The numpy values are pickled by numpy itself
(`numpy.core.multiarray._reconstruct` + `numpy.ndarray` + `numpy.dtype`, scalars through
`numpy.core.multiarray.scalar`).

Our unpickler resolves `Network` to a stand-in that keeps the state as data (the source is never
run, compiled or imported) and numpy's array reconstruction to a stand-in that keeps shape, dtype
and bytes until `numpy.frombuffer` makes the array; any other global is refused with
`UnsafeCheckpointError`. Of the three networks, Gs (the moving average of G) is converted.

Conversion to NVIDIA's PyTorch layout, as stylegan2-ada-pytorch's `legacy.py` documents it
(TF names are the variables' local names, prefixed by the component's role):
  static_kwargs: latent_size -> z_dim, dlatent_size -> w_dim, resolution -> img_resolution,
    num_channels -> img_channels, fmap_base (16384) * 2 -> channel_base (TF's block R has
    fmap_base / 2**(log2 R - 1) channels), fmap_max -> channel_max, mapping_layers ->
    mapping num_layers, mapping_lrmul -> lr_multiplier, conv_clamp (none in TF) -> None;
  dlatent_avg -> mapping.w_avg;  mapping/Dense{i}/weight [in, out] -> mapping.fc{i}.weight
    (transposed), .../bias -> bias;
  synthesis/4x4/Const/const [1, C, 4, 4] -> synthesis.b4.const [C, 4, 4];
  synthesis/{R}x{R}/{Conv | Conv0_up | Conv1 | ToRGB} -> synthesis.b{R}.{conv1 | conv0 | conv1 |
    torgb} (4x4 has Conv, larger blocks Conv0_up and Conv1): weight [k, k, in, out] ->
    [out, in, k, k] (transpose 3, 2, 0, 1; Conv0_up's kernel is first flipped in both spatial
    axes), mod_weight [w_dim, in] -> affine.weight (transposed), mod_bias + 1 -> affine.bias,
    noise_strength -> noise_strength, bias -> bias;
  synthesis/noise{i} [1, 1, R, R] -> the noise_const [R, R] of layer i (b4.conv1: 0;
    b{R}.conv0: 2 log2 R - 5; b{R}.conv1: 2 log2 R - 4).
All computations agree with NVIDIA's PyTorch generator at the same weights (same equalised-lr
gains, lrelu gain, demodulation, truncation), so no other value changes.

Supported: unconditional StyleGAN2 generators built by `G_main` with the 'skip' synthesis
(configs E and F; StyleGAN2-ADA's TensorFlow pickles use the same names, untested). StyleGAN1
(`G_style`), progressive-growing configs A-D (`ToRGB_lod*` variables), 'orig' / 'resnet'
synthesis, class-conditional generators and variables without a counterpart are refused with one
line saying so.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from dragfu.errors import CheckpointError, UnsafeCheckpointError, UnsupportedModelError
from dragfu.models.nvidia_pickle import ALLOWED_GLOBALS, RestrictedUnpickler, read_pickle
from dragfu.models.ops import fir_filter

TF_NETWORK_GLOBAL = ("dnnlib.tflib.network", "Network")


class TFNetwork:
    """A `dnnlib.tflib.network.Network` as data: the state its `__setstate__` would have built
    a TensorFlow graph from (after exec()ing `build_module_src`, which we never do)."""

    def __setstate__(self, state: Any) -> None:
        self._state = state  # checked when read (`state` is {} unless it is a dict)

    @property
    def state(self) -> dict:
        state = getattr(self, "_state", None)
        return state if isinstance(state, dict) else {}

    @property
    def build_func_name(self) -> str:
        return str(self.state.get("build_func_name"))


class NDArrayType:
    """Stands for the global `numpy.ndarray` (the type numpy's `_reconstruct` is asked to make)."""


class PickledArray:
    """What `numpy.core.multiarray._reconstruct` + BUILD would have made, kept as data."""

    def __setstate__(self, state: Any) -> None:
        self._state = state

    def to_numpy(self) -> np.ndarray:
        """The array, built with `numpy.frombuffer` from a checked (shape, dtype, bytes)."""
        try:
            _version, shape, dtype, fortran_order, data = getattr(self, "_state", None)
        except (TypeError, ValueError):
            raise CheckpointError("a numpy array without its (shape, dtype, data) state") from None
        if not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise UnsafeCheckpointError(f"a numpy array of dtype {dtype!r}, not numbers")
        if dtype.kind not in "biuf":
            raise CheckpointError(f"a numpy array of dtype {dtype}, not numbers")
        if not isinstance(shape, tuple) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
        ):
            raise CheckpointError(f"a numpy array with an invalid shape {shape!r}")
        if not isinstance(data, bytes | bytearray):
            raise CheckpointError("a numpy array whose data are not bytes")
        if len(data) != math.prod(shape) * dtype.itemsize:
            raise CheckpointError(
                f"a numpy array of shape {shape} whose data hold {len(data)} bytes, not "
                f"{math.prod(shape) * dtype.itemsize}"
            )
        array = np.frombuffer(data, dtype=dtype)
        return array.reshape(shape, order="F" if fortran_order else "C").copy()


def _reconstruct_array(subtype: Any, shape: Any = None, typecode: Any = None) -> PickledArray:
    if subtype is not NDArrayType:
        raise UnsafeCheckpointError("numpy _reconstruct asked for a type other than ndarray")
    return PickledArray()


#: What a TF-era network pickle may name: the Network class, numpy's array and scalar
#: reconstruction (numpy 1.x wrote `numpy.core`, numpy 2.x writes `numpy._core`), and the plain
#: containers the NVIDIA allowlist already has.
TF_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{
        key: ALLOWED_GLOBALS[key]
        for key in (
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("_codecs", "encode"),
            ("collections", "OrderedDict"),
            ("dnnlib.util", "EasyDict"),
        )
    },
    TF_NETWORK_GLOBAL: TFNetwork,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_array,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_array,
    ("numpy", "ndarray"): NDArrayType,
}


class TFUnpickler(RestrictedUnpickler):
    allowed = TF_ALLOWED_GLOBALS


def is_tf_pickle(data: bytes) -> bool:
    """True for a pickle whose first object is a TF `Network` (the (G, D, Gs) tuple's first
    item). Only picks the reader; safety comes from each reader's allowlist."""
    return TF_NETWORK_GLOBAL[0].encode() in data[:256]


# --- static_kwargs -> our config -------------------------------------------------------------

# Options of G_main / G_mapping / G_synthesis_stylegan2 (and StyleGAN2-ADA's TF networks) that
# change nothing in the generator's computation at inference.
_IGNORED_KWARGS = {
    "truncation_psi", "truncation_cutoff", "truncation_psi_val", "truncation_cutoff_val",
    "style_mixing_prob", "dlatent_avg_beta", "w_avg_beta", "structure", "conditioning",
    "fused_modconv", "randomize_noise", "dtype", "num_fp16_res", "is_training", "is_validation",
    "return_dlatents", "dlatent_broadcast",
}  # fmt: skip
# Options we read, with TensorFlow's defaults (networks_stylegan2.py).
_DEFAULTS: dict[str, Any] = {
    "latent_size": 512, "label_size": 0, "dlatent_size": 512, "resolution": 1024,
    "num_channels": 3, "fmap_base": 16 << 10, "fmap_decay": 1.0, "fmap_min": 1, "fmap_max": 512,
    "mapping_layers": 8, "mapping_fmaps": 512, "mapping_lrmul": 0.01, "conv_clamp": None,
    "architecture": "skip", "nonlinearity": "lrelu", "mapping_nonlinearity": "lrelu",
    "resample_kernel": [1, 3, 3, 1], "use_noise": True, "normalize_latents": True,
    "mapping_func": "G_mapping", "synthesis_func": "G_synthesis_stylegan2", "label_fmaps": None,
}  # fmt: skip
# Options that must keep one value for our generator to compute what TensorFlow's did.
_REQUIRED = {
    "label_size": (0, "class-conditional generators (label_size > 0) are not supported"),
    "architecture": ("skip", "only the 'skip' synthesis architecture is supported"),
    "nonlinearity": ("lrelu", "only lrelu activations are supported"),
    "mapping_nonlinearity": ("lrelu", "only lrelu activations are supported"),
    "resample_kernel": ([1, 3, 3, 1], "only the [1, 3, 3, 1] resampling filter is supported"),
    "fmap_decay": (1.0, "only fmap_decay 1 is supported"),
    "use_noise": (True, "generators without noise inputs are not supported"),
    "normalize_latents": (True, "generators without latent normalisation are not supported"),
    "mapping_func": ("G_mapping", "only the G_mapping mapping network is supported"),
    "synthesis_func": (
        "G_synthesis_stylegan2",
        "only the StyleGAN2 synthesis network (configs E and F) is supported",
    ),
}


def _integer(kwargs: dict, key: str, where: str) -> int:
    value = kwargs.get(key, _DEFAULTS[key])
    if isinstance(value, np.integer):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CheckpointError(f"{where}: TensorFlow option {key}={value!r} is not a count")
    return value


def _number(kwargs: dict, key: str, where: str) -> float:
    value = kwargs.get(key, _DEFAULTS[key])
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise CheckpointError(f"{where}: TensorFlow option {key}={value!r} is not a number")
    return value


def tf_config(static_kwargs: dict, where: str) -> dict:
    """Our generator config (NVIDIA's init_kwargs names) for a TF G_main's static_kwargs."""
    unknown = sorted(set(static_kwargs) - set(_DEFAULTS) - _IGNORED_KWARGS, key=str)
    if unknown:
        raise UnsupportedModelError(
            f"{where}: TensorFlow generator option {unknown[0]!r} is not supported"
        )
    for key, (required, reason) in _REQUIRED.items():
        value = static_kwargs.get(key, _DEFAULTS[key])
        if isinstance(required, list):
            value = list(value) if isinstance(value, list | tuple) else value
        if value != required:
            raise UnsupportedModelError(f"{where}: {key}={value!r}: {reason}")
    resolution = _integer(static_kwargs, "resolution", where)
    fmap_base = _integer(static_kwargs, "fmap_base", where)
    fmap_max = _integer(static_kwargs, "fmap_max", where)
    smallest = min(2 * fmap_base // max(resolution, 1), fmap_max)
    if _integer(static_kwargs, "fmap_min", where) > smallest:
        raise UnsupportedModelError(f"{where}: fmap_min above the last block's channels")
    w_dim = _integer(static_kwargs, "dlatent_size", where)
    mapping = {
        "num_layers": _integer(static_kwargs, "mapping_layers", where),
        "lr_multiplier": _number(static_kwargs, "mapping_lrmul", where),
        "w_avg_beta": 0.995,  # TF's dlatent_avg_beta (training only)
    }
    layer_features = _integer(static_kwargs, "mapping_fmaps", where)
    if layer_features != w_dim and mapping["num_layers"] > 1:
        mapping["layer_features"] = layer_features
    conv_clamp = static_kwargs.get("conv_clamp")
    if conv_clamp is not None:
        conv_clamp = _number(static_kwargs, "conv_clamp", where)
    return {
        "z_dim": _integer(static_kwargs, "latent_size", where),
        "c_dim": 0,
        "w_dim": w_dim,
        "img_resolution": resolution,
        "img_channels": _integer(static_kwargs, "num_channels", where),
        "channel_base": 2 * fmap_base,
        "channel_max": fmap_max,
        "num_fp16_res": 0,
        "conv_clamp": conv_clamp,
        "mapping_kwargs": mapping,
    }


# --- variables -> NVIDIA's state dict ---------------------------------------------------------


def tf_variables(network: TFNetwork, where: str, prefix: str = "", depth: int = 0) -> dict:
    """{'mapping/Dense0/weight': value, ...}: own variables, then components' under 'role/'."""
    if depth > 3:
        raise CheckpointError(f"{where}: TensorFlow networks nested too deep (a cycle?)")
    variables = network.state.get("variables") or []
    components = network.state.get("components") or {}
    if not isinstance(variables, list | tuple) or not isinstance(components, dict):
        raise CheckpointError(f"{where}: a TensorFlow network without a variable list")
    found: dict[str, Any] = {}
    for entry in variables:
        if not (isinstance(entry, tuple | list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise CheckpointError(f"{where}: a TensorFlow variable entry is not (name, value)")
        found[prefix + entry[0]] = entry[1]
    for role, component in components.items():
        if not isinstance(component, TFNetwork):
            raise CheckpointError(f"{where}: TensorFlow component {role!r} is not a network")
        found.update(tf_variables(component, where, f"{prefix}{role}/", depth + 1))
    return found


class _Variables:
    """Reads TF variables as float32 numpy arrays of a given rank and remembers which were used."""

    def __init__(self, variables: dict, where: str):
        self.variables, self.where, self.used = variables, where, {"lod"}

    def __call__(self, name: str, ndim: int) -> np.ndarray:
        if name not in self.variables:
            raise CheckpointError(f"{self.where}: missing TensorFlow variable '{name}'")
        self.used.add(name)
        value = self.variables[name]
        try:
            if isinstance(value, PickledArray):
                value = value.to_numpy()
            elif isinstance(value, np.generic | float | int) and not isinstance(value, bool):
                value = np.asarray(value)
            else:
                raise CheckpointError(f"a {type(value).__name__}, not an array")
        except CheckpointError as error:
            raise type(error)(f"{self.where}: TensorFlow variable '{name}': {error}") from None
        if value.dtype.kind != "f" or value.ndim != ndim:
            raise CheckpointError(
                f"{self.where}: TensorFlow variable '{name}' is {value.dtype} of shape "
                f"{list(value.shape)}; expected {ndim} float dimensions"
            )
        return value.astype(np.float32)

    def unused(self) -> list[str]:
        return sorted(set(self.variables) - self.used)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32, order="C"))  # keeps 0-d arrays 0-d


def _conv_weight(array: np.ndarray, up: bool) -> torch.Tensor:
    """TF [kh, kw, in, out] -> [out, in, kh, kw]; an up-sampling conv's kernel is also flipped."""
    if up:
        array = array[::-1, ::-1]
    return _tensor(array.transpose(3, 2, 0, 1))


def tf_state_dict(variables: dict, config: dict, where: str) -> dict[str, torch.Tensor]:
    """NVIDIA's state dict for the TF generator variables (`tf_variables`) of `config`."""
    progressive = sorted(name for name in variables if "ToRGB_lod" in name)
    if progressive:
        raise UnsupportedModelError(
            f"{where}: a progressive-growing generator ('{progressive[0]}': StyleGAN2 configs "
            "A-D or StyleGAN1); only the 'skip' generators of configs E and F are supported"
        )
    var = _Variables(variables, where)
    out: dict[str, torch.Tensor] = {}
    for index in range(config["mapping_kwargs"]["num_layers"]):
        out[f"mapping.fc{index}.weight"] = _tensor(var(f"mapping/Dense{index}/weight", 2).T)
        out[f"mapping.fc{index}.bias"] = _tensor(var(f"mapping/Dense{index}/bias", 1))
    out["mapping.w_avg"] = _tensor(var("dlatent_avg", 1))

    def modulation(ours: str, theirs: str) -> None:
        out[f"{ours}.affine.weight"] = _tensor(var(f"{theirs}/mod_weight", 2).T)
        out[f"{ours}.affine.bias"] = _tensor(var(f"{theirs}/mod_bias", 1)) + 1
        out[f"{ours}.bias"] = _tensor(var(f"{theirs}/bias", 1))

    resolution = config["img_resolution"]
    log2 = int(math.log2(resolution)) if resolution >= 4 else 0
    if resolution < 4 or 2**log2 != resolution:
        raise CheckpointError(f"{where}: resolution {resolution} is not a power of two >= 4")
    for level in range(2, log2 + 1):
        res = 2**level
        block, scope = f"synthesis.b{res}", f"synthesis/{res}x{res}"
        out[f"{block}.resample_filter"] = fir_filter()
        if res == 4:
            out[f"{block}.const"] = _tensor(var(f"{scope}/Const/const", 4)[0])
            layers = [("conv1", "Conv", False, 0)]
        else:
            layers = [
                ("conv0", "Conv0_up", True, 2 * level - 5),
                ("conv1", "Conv1", False, 2 * level - 4),
            ]
        for ours, theirs, up, noise_index in layers:
            layer, tf_layer = f"{block}.{ours}", f"{scope}/{theirs}"
            out[f"{layer}.weight"] = _conv_weight(var(f"{tf_layer}/weight", 4), up)
            modulation(layer, tf_layer)
            out[f"{layer}.noise_strength"] = _tensor(var(f"{tf_layer}/noise_strength", 0))
            out[f"{layer}.noise_const"] = _tensor(var(f"synthesis/noise{noise_index}", 4)[0, 0])
            out[f"{layer}.resample_filter"] = fir_filter()
        out[f"{block}.torgb.weight"] = _conv_weight(var(f"{scope}/ToRGB/weight", 4), up=False)
        modulation(f"{block}.torgb", f"{scope}/ToRGB")
    unused = var.unused()
    if unused:
        raise UnsupportedModelError(
            f"{where}: TensorFlow variable '{unused[0]}' has no counterpart in a StyleGAN2 "
            f"'skip' generator ({len(unused)} such); this variant is not supported"
        )
    return out


def _generator_network(content: Any, where: str) -> TFNetwork:
    if isinstance(content, tuple) and len(content) == 3:
        if all(isinstance(network, TFNetwork) for network in content):
            return content[2]  # (G, D, Gs): Gs is the moving average, the one to sample
    if isinstance(content, TFNetwork):
        return content
    raise CheckpointError(
        f"{where}: a TensorFlow-era pickle, but not the (G, D, Gs) tuple of networks"
    )


def read_tf_generator(path: str, data: bytes) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, NVIDIA state dict) of the Gs network in a TF-era StyleGAN2 pickle."""
    network = _generator_network(read_pickle(data, path, TFUnpickler), path)
    if not network.state:
        raise CheckpointError(f"{path}: a TensorFlow network pickled without its state")
    version = network.state.get("version")
    build_func = network.build_func_name
    if build_func == "G_style":
        raise UnsupportedModelError(
            f"{path}: a StyleGAN (version 1) TensorFlow generator; only StyleGAN2 TensorFlow "
            "pickles (config-e, config-f) are supported"
        )
    if not isinstance(version, int) or version < 4:
        raise UnsupportedModelError(
            f"{path}: a TensorFlow network pickle of version {version!r}; only version 4 "
            "(StyleGAN2) is supported"
        )
    if build_func != "G_main":
        raise UnsupportedModelError(
            f"{path}: a TensorFlow network built by {build_func!r}; only StyleGAN2 generators "
            "(G_main) are supported"
        )
    static_kwargs = network.state.get("static_kwargs")
    if not isinstance(static_kwargs, dict):
        raise CheckpointError(f"{path}: the TensorFlow generator carries no static_kwargs")
    config = tf_config(static_kwargs, path)
    return config, tf_state_dict(tf_variables(network, path), config, path)
