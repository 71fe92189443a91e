"""Dataset-wide explanations: throughput, memory and Ray, in one run.

    .venv/bin/python benchmarks/dataset.py                 # 10,000 shapes images
    .venv/bin/python benchmarks/dataset.py --images 2000 --no-ray

Prints a Markdown section (paste it into benchmarks/RESULTS.md):

- throughput: images/s of ``cw.explain_dataset`` (Grad-CAM, predicted class,
  boxes, float16 maps, images kept; and lean: no boxes, no images) over N
  shapes images, against plain batched ``model.predict(batch_size=256)`` over
  the same images, as a ratio (goal >= 0.7: Grad-CAM needs a forward and a
  partial backward pass); and against the forward pass alone
  (``predict_on_batch`` 256 at a time, without Keras' predict loop);
- memory: the peak of Python/numpy allocations (tracemalloc) while
  ``explain_dataset`` streams 1,000 and then N images from a generator that
  makes them a batch at a time (the data is never in memory whole): flat means
  the store, not memory, grows;
- Ray: ``engine="ray"`` with 2 local actors against the single process over
  the same N images, and whether the stores are identical.

Timings are wall-clock after a warm-up call; the machine's load is printed
with them.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
import tracemalloc

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import cnnwidgets as cw  # noqa: E402

CHUNK = 256


def shapes_batches(n: int, batch: int = CHUNK, seed: int = 100):
    """(images, labels, boxes) dict batches made on the fly: n images in all."""
    for i, start in enumerate(range(0, n, batch)):
        images, labels, boxes = cw.assets.make_shapes(min(batch, n - start), seed=seed + i)
        yield {"image": images, "label": labels, "box": boxes}


def explain(model, data, out, **kwargs) -> float:
    """Seconds for one explain_dataset run into a fresh store."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    cw.explain_dataset(model, data, out=out, chunk=CHUNK, progress=False, **kwargs)
    return time.perf_counter() - start


def throughput(model, images, labels, boxes, tmp, repeats: int) -> dict:
    """images/s of predict, explain_dataset (full) and explain_dataset (lean), per repeat.

    The three run back to back in an order that rotates every repeat, so a
    burst of load from other jobs hits each of them alike; ratios are taken
    within a repeat."""
    # Warm-up: trace the forward and gradient functions once, outside the timing.
    explain(model, (images[:CHUNK], labels[:CHUNK]), f"{tmp}/warm", boxes=boxes[:CHUNK])
    explain(model, images[:CHUNK], f"{tmp}/warm", keep_images=False)
    model.predict(images[:CHUNK], batch_size=256, verbose=0)

    def predict() -> float:
        start = time.perf_counter()
        model.predict(images, batch_size=256, verbose=0)
        return time.perf_counter() - start

    def forward() -> float:
        # The floor: one forward pass per 256 images, no Keras predict loop around it.
        start = time.perf_counter()
        for s in range(0, len(images), 256):
            model.predict_on_batch(images[s : s + 256])
        return time.perf_counter() - start

    contenders = {
        "predict": predict,
        "forward": forward,
        "explain": lambda: explain(model, (images, labels), f"{tmp}/full", boxes=boxes),
        "explain_lean": lambda: explain(model, images, f"{tmp}/lean", keep_images=False),
    }
    names = list(contenders)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            rates[name].append(len(images) / contenders[name]())
    return rates


def spread(values: list[float]) -> str:
    """'median (min - max)' of a few values."""
    if len(values) == 1:
        return f"{values[0]:.3g}"
    return f"{statistics.median(values):.3g} ({min(values):.3g} - {max(values):.3g})"


def peak_memory(model, n: int, tmp: str) -> float:
    """MiB: tracemalloc's peak while explain_dataset streams n generated images."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    explain(model, shapes_batches(n), f"{tmp}/mem{n}")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - base) / 2**20


def ray_vs_local(model, images, labels, boxes, tmp) -> dict:
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    init_s = time.perf_counter() - start
    try:
        ray_s = explain(model, (images, labels), f"{tmp}/ray", boxes=boxes, engine="ray", workers=2)
    finally:
        ray.shutdown()
    local = cw.dataset.DatasetStore(f"{tmp}/full")
    remote = cw.dataset.DatasetStore(f"{tmp}/ray")
    same = all(
        np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
        for a, b in ((local.column(name), remote.column(name)) for name in local.arrays)
    )
    return {"init": init_s, "ray": len(images) / ray_s, "identical": same}


def ratio(a: list[float], b: list[float]) -> list[float]:
    return [x / y for x, y in zip(a, b)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    n = args.images
    model = cw.assets.demo_model("shapes_cnn")
    load_start = os.getloadavg()
    images, labels, boxes = cw.assets.make_shapes(n, seed=7)
    tmp = tempfile.mkdtemp(prefix="cw-bench-dataset-")
    try:
        tp = throughput(model, images, labels, boxes, tmp, args.repeats)
        small = peak_memory(model, 1000, tmp)
        large = peak_memory(model, n, tmp)
        rr = None if args.no_ray else ray_vs_local(model, images, labels, boxes, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_end = os.getloadavg()
    lines = [
        "## Dataset-wide explanations (benchmarks/dataset.py)",
        "",
        f"Command: `.venv/bin/python benchmarks/dataset.py --images {n} --repeats {args.repeats}"
        + (" --no-ray`" if args.no_ray else "`"),
        "",
        f"- cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        "(shared with other jobs)",
        f"- load average at start / end: {' '.join(f'{v:.2f}' for v in load_start)} / "
        f"{' '.join(f'{v:.2f}' for v in load_end)}",
        f"- model: shapes_cnn (64x64, Grad-CAM on block3_conv2, 16x16 maps), chunk {CHUNK}",
        "",
        f"Throughput: {args.repeats} repeats, contenders back to back in a rotating order; "
        "median (min - max) over repeats, ratios taken within a repeat.",
        "",
        "| figure | value | goal |",
        "| --- | ---: | --- |",
        f"| model.predict, batch 256 (images/s) | {spread(tp['predict'])} | |",
        f"| model.predict_on_batch, 256 at a time (images/s) | {spread(tp['forward'])} | |",
        "| explain_dataset: Grad-CAM + scores + boxes + images kept (images/s) | "
        f"{spread(tp['explain'])} | |",
        f"| explain_dataset / predict | {spread(ratio(tp['explain'], tp['predict']))} | >= 0.7 |",
        "| explain_dataset, keep_images=False, no boxes (images/s) | "
        f"{spread(tp['explain_lean'])} | |",
        "| explain_dataset (lean) / predict | "
        f"{spread(ratio(tp['explain_lean'], tp['predict']))} | |",
        "| explain_dataset / predict_on_batch | "
        f"{spread(ratio(tp['explain'], tp['forward']))} | |",
        "| explain_dataset (lean) / predict_on_batch | "
        f"{spread(ratio(tp['explain_lean'], tp['forward']))} | |",
        f"| peak traced memory, 1,000 images (MiB) | {small:.1f} | |",
        f"| peak traced memory, {n:,} images (MiB) | {large:.1f} | |",
        f"| peak memory {n:,} / 1,000 | {large / small:.2f} | ~1 (flat) |",
    ]
    if rr is not None:
        lines += [
            f"| Ray start-up, 2 CPUs (s) | {rr['init']:.1f} | |",
            f"| engine='ray', 2 local actors (images/s) | {rr['ray']:.0f} | |",
            f"| Ray / single process (median above) | "
            f"{rr['ray'] / statistics.median(tp['explain']):.2f} | |",
            f"| Ray store identical to the single-process store | {rr['identical']} | True |",
        ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
