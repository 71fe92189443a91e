"""How faithful is each explanation method on the shipped demo CNN?

    .venv/bin/python benchmarks/faithfulness.py            # 32 two-object images
    .venv/bin/python benchmarks/faithfulness.py --n 8      # quicker

On the two-object shapes set (``cnnwidgets.assets.make_pairs``: two shapes of
different classes per image, with their boxes) every method explains both
classes of every image. For each method it prints, using
``cnnwidgets.explain.metrics``:

- deletion AUC (lower is better) and insertion AUC (higher is better), mean
  over images and both classes (Petsiuk et al. 2018);
- the pointing game: how often the map's maximum falls in the box of the
  object of the class explained (Zhang et al. 2016);
- the model-randomization sanity check (Adebayo et al. 2018): mean Spearman
  correlation between maps of the trained model and of the same architecture
  re-initialized. Near 1 means the map does not depend on what was learned.

A 'random' row (uniform noise maps) gives the chance level of each metric.
With --out the table is also written as markdown.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import cnnwidgets as cw  # noqa: E402
from cnnwidgets.explain import metrics  # noqa: E402
from cnnwidgets.explain.cam import CAM_METHODS  # noqa: E402
from cnnwidgets.explain.saliency import SALIENCY_METHODS  # noqa: E402


def cam_maps(probe, images, classes, method):
    return cw.gradcam(probe, images, classes=classes, method=method)


def saliency_maps(probe, images, classes, method):
    return cw.saliency(probe, images, classes=classes, method=method)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="faithfulness metrics of every method")
    p.add_argument("--n", type=int, default=32, help="two-object images")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--steps", type=int, default=32, help="deletion/insertion steps")
    p.add_argument("--tolerance", type=int, default=0, help="pointing-game box margin (px)")
    p.add_argument("--out", default=None, help="also write the table as markdown here")
    args = p.parse_args(argv)

    model = cw.assets.demo_model("shapes_cnn")
    probe = cw.Probe(model, class_names=cw.assets.demo_class_names("shapes_cnn"))
    images, labels, boxes = cw.assets.make_pairs(args.n, seed=args.seed)
    classes = labels.astype(np.int64)  # (N, 2): explain both objects of every image
    twin = metrics.randomized_model(probe, seed=0)

    methods = [("cam", m) for m in CAM_METHODS] + [("saliency", m) for m in SALIENCY_METHODS]
    methods.append(("baseline", "random"))
    header = (
        f"{'family':<9} {'method':<15} {'deletion AUC':>13} {'insertion AUC':>14} "
        f"{'pointing':>9} {'sanity rho':>11} {'seconds':>8}"
    )
    print(f"shapes_cnn, {args.n} two-object images x 2 classes, {args.steps} steps")
    print("deletion: lower is better; insertion, pointing: higher; sanity rho: lower\n")
    print(header)
    rows = []
    for family, method in methods:
        t0 = time.perf_counter()
        try:
            if family == "cam":
                maps = cam_maps(probe, images, classes, method)
                random_maps = cam_maps(twin, images, classes, method)
                rho = float(metrics.rank_correlation(maps, random_maps, batch_dims=2).mean())
            elif family == "saliency":
                maps = saliency_maps(probe, images, classes, method)
                rho = metrics.randomization_sanity(probe, images, method, classes=classes).mean
            else:
                maps = np.random.default_rng(0).random((args.n, 2) + images.shape[1:3])
                maps = maps.astype(np.float32)
                rho = float("nan")
            dele = metrics.deletion_auc(probe, images, maps, classes=classes, steps=args.steps)
            ins = metrics.insertion_auc(probe, images, maps, classes=classes, steps=args.steps)
            point = metrics.pointing_game(maps, boxes, tolerance=args.tolerance)
        except Exception as exc:  # one broken method must not hide the others
            print(f"{family:<9} {method:<15} failed: {type(exc).__name__}: {exc}"[:200])
            rows.append((family, method, None, None, None, None, 0.0))
            continue
        sec = time.perf_counter() - t0
        row = (family, method, float(dele.mean()), float(ins.mean()), point, rho, sec)
        rows.append(row)
        print(
            f"{family:<9} {method:<15} {row[2]:13.3f} {row[3]:14.3f} {point:9.3f} "
            f"{rho:11.3f} {sec:8.1f}",
            flush=True,
        )
    if args.out:
        write_markdown(pathlib.Path(args.out), args, rows)
        print(f"\nwrote {args.out}")
    return 0


def write_markdown(path: pathlib.Path, args, rows) -> None:
    def f(x):
        return "failed" if x is None else ("n/a" if x != x else f"{x:.3f}")

    lines = [
        "# Faithfulness on the demo CNN",
        "",
        f"shapes_cnn, {args.n} two-object images (seed {args.seed}) x both classes, "
        f"{args.steps} deletion/insertion steps, pointing tolerance {args.tolerance} px.",
        "",
        "| family | method | deletion AUC (lower better) | insertion AUC (higher better) "
        "| pointing game | sanity rho (lower better) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for family, method, dele, ins, point, rho, _ in rows:
        lines.append(f"| {family} | {method} | {f(dele)} | {f(ins)} | {f(point)} | {f(rho)} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
