"""explain_dataset: streamed maps and scores against per-image cw.gradcam, the
same store from every data form, bounded memory, resumption and refusals."""

from __future__ import annotations

import sys
import weakref

import keras
import numpy as np
import pytest
from tiny_models import random_images, tiny_cnn

import cnnwidgets as cw
from cnnwidgets.dataset import chunk as chunk_work
from cnnwidgets.dataset import scores
from cnnwidgets.dataset.store import DatasetStore, StoreMismatchError, weights_digest

NAMES = cw.assets.demo_class_names("shapes_cnn")


@pytest.fixture(scope="module")
def data():
    return cw.assets.make_shapes(40, seed=77)


def explain(model, source, path, **kwargs):
    kwargs.setdefault("chunk", 16)
    kwargs.setdefault("progress", False)
    return cw.explain_dataset(model, source, out=path, **kwargs)


def test_streamed_maps_and_scores_equal_per_image_calls(shapes_probe, data, tmp_path):
    images, labels, boxes = data
    store = explain(shapes_probe, (images, labels), tmp_path / "s", boxes=boxes, dtype="float32")
    assert isinstance(store, DatasetStore) and len(store) == 40 and store.complete
    maps = store.column("maps")
    h, w = shapes_probe.layer_info(shapes_probe.last_conv_layer).output_shape[1:3]
    assert maps.shape == (40, 1, h, w) and maps.dtype == np.float32
    probs = shapes_probe.predict(images)
    np.testing.assert_array_equal(store.column("predicted"), probs.argmax(1))
    np.testing.assert_allclose(store.column("confidence"), probs.max(1), rtol=1e-5)
    true_p = probs[np.arange(40), labels]
    np.testing.assert_allclose(store.column("loss"), -np.log(true_p), rtol=1e-4, atol=1e-6)
    for i in (0, 17, 39):  # one image at a time, the plain way
        ref = cw.gradcam(shapes_probe, images[i], resize=False, normalize=None)
        np.testing.assert_allclose(maps[i], ref[0], atol=1e-5 * ref.max(), rtol=1e-4)
        assert ref.max() > 0
    np.testing.assert_array_equal(store.column("boxes"), boxes)
    np.testing.assert_array_equal(store.column("images"), images)
    meta = store.meta
    assert meta["method"] == "gradcam" and meta["layer"] == shapes_probe.last_conv_layer
    assert meta["class_names"] == NAMES and meta["summary"]["accuracy"] == np.mean(
        probs.argmax(1) == labels
    )
    confusion = store.confusion()
    assert confusion.sum() == 40 and np.trace(confusion) == np.sum(probs.argmax(1) == labels)


def test_label_and_fixed_classes(shapes_probe, data, tmp_path):
    images, labels, _ = data
    by_label = explain(
        shapes_probe,
        images[:20],
        tmp_path / "a",
        labels=labels[:20],
        classes="label",
        dtype="float32",
    )
    ref = cw.gradcam(
        shapes_probe, images[:20], classes=labels[:20, None], resize=False, normalize=None
    )
    np.testing.assert_allclose(by_label.column("maps"), ref, atol=1e-5 * ref.max(), rtol=1e-4)
    np.testing.assert_array_equal(by_label.column("classes")[:, 0], labels[:20])
    fixed = explain(shapes_probe, images[:20], tmp_path / "b", classes=["cross", 0])
    assert fixed.column("maps").shape[:2] == (20, 2) and fixed.column("maps").dtype == np.float32
    assert fixed.column("maps", stored=True).dtype == np.float16
    np.testing.assert_array_equal(fixed.column("classes"), [[3, 0]] * 20)
    probs = shapes_probe.predict(images[:20])
    np.testing.assert_allclose(fixed.column("class_prob"), probs[:, [3, 0]], rtol=1e-5)
    assert np.isnan(fixed.column("loss")).all() and (fixed.column("labels") == -1).all()


def test_energy_share_against_a_pixel_loop(shapes_probe, data):
    images, _, boxes = data
    maps = cw.gradcam(shapes_probe, images[:3], resize=False, normalize=None)
    masks = scores.box_masks(boxes[:3], images.shape[1:3])
    share = scores.energy_inside(maps, masks)
    big = cw.gradcam(shapes_probe, images[:3], resize=True, normalize=None)
    for i in range(3):
        t, l, b, r = boxes[i]
        inside = sum(big[i, 0, y, x] for y in range(t, b) for x in range(l, r))
        assert share[i, 0] == pytest.approx(inside / big[i, 0].sum(), rel=1e-4)
    everything = np.ones((3,) + images.shape[1:3], bool)
    np.testing.assert_allclose(scores.energy_inside(maps, everything), 1.0, rtol=1e-6)
    assert scores.energy_inside(np.zeros_like(maps), masks).max() == 0.0
    left = np.zeros_like(everything)
    left[:, :, :20] = True
    np.testing.assert_allclose(
        scores.energy_inside(maps, left) + scores.energy_inside(maps, ~left), 1.0, rtol=1e-5
    )


def test_every_data_form_gives_the_same_store(shapes_probe, data, tmp_path):
    tf = pytest.importorskip("tensorflow")
    images, labels, boxes = data
    ref = explain(shapes_probe, images, tmp_path / "ref", labels=labels, boxes=boxes)
    forms = {
        "batches": [
            {"image": images[s : s + 7], "label": labels[s : s + 7], "box": boxes[s : s + 7]}
            for s in range(0, 40, 7)
        ],
        "tf-single": tf.data.Dataset.from_tensor_slices(
            {"image": images, "label": labels, "box": boxes}
        ),
        "tf-batched": tf.data.Dataset.from_tensor_slices(
            {"image": images, "label": labels, "box": boxes}
        ).batch(9),
    }
    for name, source in forms.items():
        store = explain(shapes_probe, source, tmp_path / name)
        assert len(store) == 40, name
        for array in ref.arrays:
            np.testing.assert_array_equal(store.column(array), ref.column(array), err_msg=name)
    pairs = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    store = explain(shapes_probe, pairs, tmp_path / "pairs")
    np.testing.assert_array_equal(store.column("labels"), labels)
    np.testing.assert_array_equal(store.column("maps"), ref.column("maps"))


class Instrumented:
    """Batches of copies of ``images``. At each pull it logs how many images
    were pulled before, how many were written (``written``, set by the
    progress callback) and how many pulled images are still alive in memory."""

    def __init__(self, images, batch):
        self.images, self.batch = images, batch
        self.pulled = self.alive = self.written = 0
        self.log = []  # (pulled before this pull, written, alive)

    def _gone(self, n):
        self.alive -= n

    def progress(self, done, total):
        self.written = done

    def __iter__(self):
        for s in range(0, len(self.images), self.batch):
            self.log.append((self.pulled, self.written, self.alive))
            out = self.images[s : s + self.batch].copy()
            weakref.finalize(out, self._gone, len(out))
            self.pulled += len(out)
            self.alive += len(out)
            yield out


def test_memory_holds_one_chunk_at_most(shapes_probe, data, tmp_path):
    images = np.concatenate([data[0]] * 2)  # 80 images, chunks of 16, batches of 5
    source = Instrumented(images, batch=5)
    explain(shapes_probe, source, tmp_path / "m", progress=source.progress)
    assert source.pulled == 80 and source.written == 80 and len(source.log) == 16
    for pulled_before, written, alive in source.log:
        # A batch is asked for only while less than a chunk is waiting to be written,
        assert pulled_before - written < 16, source.log
        # and the images in memory never exceed a chunk plus the batch in hand.
        assert alive <= 16 + 5, source.log
    # The same instrument catches a reader that takes everything first.
    eager = Instrumented(images, batch=5)
    explain(shapes_probe, list(eager), tmp_path / "eager", progress=eager.progress)
    assert max(alive for _, _, alive in eager.log) > 16 + 5
    assert max(p - w for p, w, _ in eager.log) >= 16


def test_resume_skips_finished_chunks_and_gives_identical_arrays(
    shapes_probe, data, tmp_path, monkeypatch
):
    images, labels, boxes = data

    def batches():
        return [
            {"image": images[s : s + 5], "label": labels[s : s + 5], "box": boxes[s : s + 5]}
            for s in range(0, 40, 5)
        ]

    def broken():
        for n, batch in enumerate(batches()):
            if n == 7:  # images 35.. never arrive: chunks 0 and 1 (0-31) are finished
                raise RuntimeError("kernel died")
            yield batch

    with pytest.raises(RuntimeError, match="kernel died"):
        explain(shapes_probe, broken(), tmp_path / "r")
    partial = DatasetStore(tmp_path / "r")
    assert not partial.complete and partial.done_chunks().tolist() == [True, True]
    assert partial.finished()[:32].all()

    computed = []
    real = chunk_work.explain_chunk

    def counting(probe, spec, chunk):
        computed.append(chunk.index)
        return real(probe, spec, chunk)

    monkeypatch.setattr(chunk_work, "explain_chunk", counting)
    resumed = explain(shapes_probe, batches(), tmp_path / "r")
    assert computed == [2]  # only the unfinished chunk
    computed.clear()
    fresh = explain(shapes_probe, batches(), tmp_path / "fresh")
    assert computed == [0, 1, 2]
    assert resumed.complete and len(resumed) == 40
    for name in fresh.arrays:
        np.testing.assert_array_equal(resumed.column(name), fresh.column(name), err_msg=name)
    computed.clear()
    again = explain(shapes_probe, batches(), tmp_path / "r")  # complete: nothing to do
    assert computed == [] and len(again) == 40


def test_refuses_to_resume_another_run(shapes_model, data, tmp_path):
    images, labels, _ = data
    path = tmp_path / "s"
    explain(shapes_model, images[:20], path)
    with pytest.raises(StoreMismatchError, match="method"):
        explain(shapes_model, images[:20], path, method="gradcam++")
    with pytest.raises(StoreMismatchError, match="chunk"):
        explain(shapes_model, images[:20], path, chunk=8)
    other = keras.models.clone_model(shapes_model)
    other.set_weights([w * 1.01 for w in shapes_model.get_weights()])
    with pytest.raises(StoreMismatchError, match="weights_digest"):
        explain(other, images[:20], path)
    with pytest.raises(StoreMismatchError, match="differ from the ones"):
        explain(shapes_model, images[20:40], path)  # other images, same run
    store = explain(other, images[:20], path, overwrite=True)
    assert store.meta["weights_digest"] == weights_digest(other) != weights_digest(shapes_model)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(StoreMismatchError, match="not a cnnwidgets dataset store"):
        explain(shapes_model, images[:20], tmp_path / "junk")


def test_weights_digest_is_the_same_for_the_same_weights(shapes_model):
    again = cw.assets.demo_model("shapes_cnn")  # another load: other objects, same bytes
    assert weights_digest(again) == weights_digest(shapes_model)
    before = shapes_model.predict(np.zeros((1, 64, 64, 3)), verbose=0)
    weights_digest(shapes_model)
    np.testing.assert_array_equal(before, shapes_model.predict(np.zeros((1, 64, 64, 3)), verbose=0))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(method="occlusion"), ValueError, "unknown CAM method"),
        (dict(classes="label"), ValueError, "needs labels"),
        (dict(classes="dog"), ValueError, "unknown class"),
        (dict(chunk=0), ValueError, "chunk must be a positive int"),
        (dict(dtype="int8"), ValueError, "dtype must be one of"),
        (dict(engine="spark"), ValueError, "engine must be one of"),
        (dict(layer="gap"), ValueError, "not \\(N, H, W, C\\)"),
        (dict(boxes=np.zeros((20, 3))), ValueError, "boxes must be"),
    ],
)
def test_bad_arguments_are_explained(shapes_probe, data, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        explain(shapes_probe, data[0][:20], tmp_path / "bad", **kwargs)
    assert not (tmp_path / "bad").exists()  # refused before any store is made


def test_bad_data_is_explained(shapes_probe, tmp_path):
    with pytest.raises(TypeError, match="numpy array"):
        explain(shapes_probe, 42, tmp_path / "x")
    with pytest.raises(ValueError, match=r"\(n, H, W, C\)"):
        explain(shapes_probe, [np.zeros((64, 64, 3))], tmp_path / "y")
    with pytest.raises(ValueError, match="batches differ"):
        explain(
            shapes_probe,
            [np.zeros((2, 64, 64, 3)), (np.zeros((2, 64, 64, 3)), [0, 1])],
            tmp_path / "z",
            chunk=2,
        )
    with pytest.raises(FileNotFoundError, match="explain_dataset"):
        DatasetStore(tmp_path / "nothing")


def test_engine_ray_without_ray_says_how_to_install(shapes_probe, data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r'pip install "cnnwidgets\[ray\]"'):
        explain(shapes_probe, data[0][:4], tmp_path / "r", engine="ray")
    assert not (tmp_path / "r").exists()


def scaled_head(model, factor):
    """A copy of ``model`` whose Dense head (kernel and bias) is multiplied by
    ``factor``: its logits, hence its Grad-CAM maps, are ``factor`` times the
    original's, and its predicted classes are the same."""
    copy = keras.models.clone_model(model)
    weights = model.get_weights()
    copy.set_weights(weights[:-2] + [w * factor for w in weights[-2:]])
    return copy


def test_tiny_maps_survive_the_float16_store(tmp_path):
    # Raw Grad-CAM values far below float16's smallest number (6e-8) are
    # normal: untrained models, saturated heads, deep nets. Here a head 1e-9
    # times smaller than a plain random one.
    model = tiny_cnn(seed=3)
    tiny = scaled_head(model, 1e-9)
    images = random_images(12, 16, seed=5)
    ref = cw.gradcam(tiny, images, resize=False, normalize=None)  # float32, the plain way
    plain = cw.gradcam(model, images, resize=False, normalize=None)
    assert 0 < ref.max() < 6e-8  # the premise: nothing of it is a float16 number
    np.testing.assert_allclose(ref, plain * 1e-9, rtol=1e-3, atol=1e-6 * ref.max())
    store = explain(tiny, images, tmp_path / "tiny", chunk=8)  # dtype float16, the default
    maps = store.column("maps")
    peak = ref.max(axis=(2, 3), keepdims=True)
    print(
        "stored maps: max",
        maps.max(),
        "non-zero",
        (maps > 0).mean(),
        "; float32 reference:",
        "max",
        ref.max(),
        "non-zero",
        (ref > 0).mean(),
    )
    # float16 keeps 11 significant bits of each map scaled to a peak of 1.
    assert (np.abs(maps - ref) <= 1e-3 * peak).all()
    assert maps.shape == ref.shape and maps.dtype == np.float32
    np.testing.assert_allclose(store.column("map_scale")[..., None, None], peak, rtol=1e-6)
    assert store.meta["dtype"] == "float16"
    assert store.column("maps", stored=True).dtype == np.float16
    np.testing.assert_allclose(store.column("maps", stored=True).max(axis=(2, 3)), 1.0)
    # The same images through the unscaled model: the same maps, 1e9 times larger.
    big = explain(model, images, tmp_path / "big", chunk=8)
    np.testing.assert_allclose(big.column("maps") * 1e-9, maps, rtol=1e-3, atol=1e-3 * ref.max())
    np.testing.assert_array_equal(big.column("predicted"), store.column("predicted"))


def test_a_first_format_store_is_read_but_not_resumed(shapes_probe, data, tmp_path):
    images = data[0][:16]
    path = tmp_path / "old"
    new = explain(shapes_probe, images, path, dtype="float32")
    real = new.column("maps")
    # Rewrite it as the first format kept it: raw maps, no map_scale.
    zarr = pytest.importorskip("zarr")
    group = zarr.open_group(str(path), mode="a")
    group["maps"][:] = real
    del group["map_scale"]
    group.attrs["cnnwidgets"] = dict(group.attrs["cnnwidgets"], format="cnnwidgets.dataset/1")
    old = DatasetStore(path)
    assert "map_scale" not in old.arrays
    np.testing.assert_array_equal(old.column("maps"), real)
    np.testing.assert_array_equal(old.rows([3, 1])["maps"], real[[3, 1]])
    with pytest.raises(StoreMismatchError, match="older cnnwidgets.*overwrite=True"):
        explain(shapes_probe, images, path, dtype="float32")
    assert explain(shapes_probe, images, path, dtype="float32", overwrite=True).complete


def test_dataset_runs_accept_every_spelling_gradcam_accepts(tmp_path):
    # The stream used its own list of names and refused aliases cw.gradcam takes.
    model = tiny_cnn(seed=1)
    images = random_images(4, 16, seed=2)
    store = explain(model, images, tmp_path / "alias", method="Grad-CAM++", chunk=4)
    assert store.meta["method"] == "gradcam++"
    ref = cw.gradcam(model, images, method="gradcam++", resize=False, normalize=None)
    peak = ref.max(axis=(2, 3), keepdims=True)
    assert (np.abs(store.column("maps") - ref) <= 1e-3 * peak + 1e-12).all()
