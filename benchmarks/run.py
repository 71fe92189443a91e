"""cnnwidgets against its peers, side by side, in one run.

    .venv/bin/python benchmarks/run.py                 # full: demo, mobilenetv2, vgg16
    .venv/bin/python benchmarks/run.py --quick         # demo + mobilenetv2, 2 repeats
    .venv/bin/python benchmarks/run.py --models demo --repeats 5
    .venv/bin/python benchmarks/run.py --sections incremental --models vgg16,resnet50 [--quick]

Every figure is a ratio of two timings taken in the same repeat (the
contenders of a section run one after the other, in a rotating order, on the
same fresh input), reported as min / median / max over the repeats. Goals are
judged on the median. The full run writes benchmarks/RESULTS.md; --quick
writes benchmarks/out/RESULTS-quick.md. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import peers  # noqa: E402

MODELS = ("demo", "mobilenetv2", "vgg16", "resnet50")
#: Sections each model takes part in (default: all of them).
MODEL_SECTIONS = {"resnet50": {"incremental"}}
#: Incremental occlusion goals (issue 15): speed-up over the batched-predict floor.
INCREMENTAL_GOALS = {"vgg16": 3.0, "resnet50": 2.0}
GRID_SHAPE = (14, 14, 512)  # VGG16 block5_conv3
MIN_TIME = 0.3  # seconds: shorter calls are repeated within one timing
WARM_AGAIN = 5.0  # seconds: a first call shorter than this is followed by a second warm-up


# ----------------------------------------------------------------- reporting


@dataclass
class Row:
    section: str
    model: str
    figure: str
    ratios: list[float]
    goal: str = ""
    check: Callable[[float], bool] | None = None
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def verdict(self) -> str:
        if self.check is None:
            return ""
        return "met" if self.check(self.median) else "NOT met"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    times: list[tuple[str, str, str, list[float]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, row: Row) -> None:
        self.rows.append(row)
        r = row.ratios
        print(
            f"  {row.figure:<52} {min(r):8.3g} {row.median:8.3g} {max(r):8.3g}"
            f"  {row.goal} {row.verdict}".rstrip(),
            flush=True,
        )

    def time(self, section: str, model: str, name: str, seconds: list[float]) -> None:
        self.times.append((section, model, name, seconds))

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)


def fmt(x: float) -> str:
    return f"{x:.3g}"


# -------------------------------------------------------------------- timing


def run_repeats(
    contenders: dict[str, Callable[[int], object]],
    repeats: int,
    report: Report,
    where: str,
    once: tuple[str, ...] = (),
    cold: tuple[str, ...] = (),
) -> dict[str, list[float]]:
    """Warm every contender once (tracing, caches of compiled functions), then
    time each once per repeat, rotating the order. ``fn(key)`` gets a key never
    used before so it can make a fresh input (defeating result caches). A call
    shorter than MIN_TIME is repeated (with new keys) until it lasts that long
    and the time per call is recorded, except for the names in ``once``. A
    contender that raises on warm-up is dropped with a note. The names in
    ``cold`` are not warmed (minutes-long calls whose one-off tracing is noise)."""
    alive, inner = {}, {}
    for name, fn in contenders.items():
        if name in cold:
            alive[name], inner[name] = fn, 1
            continue
        try:
            t0 = time.perf_counter()
            fn(-1)
            t1 = time.perf_counter() - t0
            if name not in once and t1 < WARM_AGAIN:
                # The first call may have traced; time a second one to calibrate.
                t0 = time.perf_counter()
                fn(-2)
                t1 = time.perf_counter() - t0
            t1 = max(t1, 1e-6)
            alive[name] = fn
            inner[name] = 1 if name in once else int(min(50, max(1, np.ceil(MIN_TIME / t1))))
        except Exception as exc:  # a peer that does not run is a result too
            report.note(f"{where}: {name} failed: {type(exc).__name__}: {str(exc)[:300]}")
            traceback.print_exc(limit=3)
    times: dict[str, list[float]] = {name: [] for name in alive}
    names = list(alive)
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)] if names else []
        for name in order:
            n = inner[name]
            t0 = time.perf_counter()
            for i in range(n):
                alive[name](r * 100 + i)
            times[name].append((time.perf_counter() - t0) / n)
    for name, ts in times.items():
        report.time(where.split(":")[0], where.split(":")[-1], name, ts)
    return times


def ratio(times: dict[str, list[float]], num: str, den: str) -> list[float] | None:
    if num not in times or den not in times:
        return None
    return [a / b for a, b in zip(times[num], times[den])]


def add_ratio(report, times, section, model, figure, num, den, goal="", check=None, note=""):
    r = ratio(times, num, den)
    if r is None:
        report.note(f"{section} {model}: '{figure}' not measured ({num} or {den} missing)")
        return
    report.row(Row(section, model, figure, r, goal, check, note))


def fresh(image: np.ndarray, key: int) -> np.ndarray:
    """The image shifted by a tiny key-dependent amount: a new cache key for
    cnnwidgets' result caches, the same work for everyone, and cheap."""
    delta = np.float32(0.01 * ((key + 10) % 5000 + 1))
    return np.clip(np.asarray(image, np.float32) + delta, 0.0, 255.0)


# -------------------------------------------------------------------- models


@dataclass
class Subject:
    name: str
    model: object
    probe: object
    image: np.ndarray  # (H, W, 3) float32 raw pixels
    classes: list[int]  # the K classes for the multi-class figures
    max_layer: str  # a layer with >= 64 filters for maximization
    occlusion_strides: tuple[int, ...]


def load_subject(name: str) -> Subject:
    import keras

    import cnnwidgets as cw

    keras.utils.set_random_seed(0)
    if name == "demo":
        model = cw.assets.demo_model("shapes_cnn")
        image = cw.assets.make_pairs(1, seed=5)[0][0]
        max_layer, strides = "block3_conv2", (16, 8)
    elif name == "mobilenetv2":
        model = keras.applications.MobileNetV2(weights=None)
        image = cw.assets.photo("chelsea", 224)
        max_layer, strides = "block_2_expand", (16, 8)
    elif name == "vgg16":
        model = keras.applications.VGG16(weights=None)
        image = cw.assets.photo("chelsea", 224)
        # Stride 8 is 729 VGG16 passes per contender; too long for repeats here.
        max_layer, strides = "block1_conv2", (16,)
    elif name == "resnet50":
        model = keras.applications.ResNet50(weights=None)
        image = cw.assets.photo("chelsea", 224)
        max_layer, strides = "conv2_block1_1_conv", (16,)
    else:
        raise ValueError(f"unknown model {name!r}; choose from {MODELS}")
    probe = cw.Probe(model)
    k = min(10, probe.num_classes)
    classes = [int(c) for c in np.linspace(0, probe.num_classes - 1, k).round()]
    return Subject(name, model, probe, np.asarray(image, np.float32), classes, max_layer, strides)


def forward_one(subject: Subject) -> Callable[[int], object]:
    x = subject.image[None]

    def fn(r):
        return subject.model.predict_on_batch(fresh(x, r))

    return fn


# ------------------------------------------------------------------ sections


def bench_gradcam(s: Subject, repeats: int, report: Report) -> None:
    import cnnwidgets as cw

    layer = s.probe.last_conv_layer
    k = len(s.classes)
    one = s.classes[:1]
    logits_model = peers.without_softmax(s.model)
    try:
        tkv = peers.tfkerasvis_gradcam_object(s.model)
    except Exception as exc:
        tkv = None
        report.note(f"gradcam {s.name}: tf-keras-vis Gradcam(...) failed: {exc!r}"[:300])

    c: dict[str, Callable[[int], object]] = {
        "cw 1": lambda r: cw.gradcam(s.probe, fresh(s.image, r), classes=one, layer=layer),
        f"cw {k}": lambda r: cw.gradcam(s.probe, fresh(s.image, r), classes=s.classes, layer=layer),
        "keras-example 1": lambda r: peers.keras_example_gradcam_classes(
            fresh(s.image, r), logits_model, layer, one
        ),
        f"keras-example {k}": lambda r: peers.keras_example_gradcam_classes(
            fresh(s.image, r), logits_model, layer, s.classes
        ),
    }
    if tkv is not None:
        c["tf-keras-vis 1"] = lambda r: peers.tfkerasvis_gradcam(tkv, fresh(s.image, r), layer, one)
        c[f"tf-keras-vis {k}"] = lambda r: peers.tfkerasvis_gradcam(
            tkv, fresh(s.image, r), layer, s.classes
        )
    t = run_repeats(c, repeats, report, f"gradcam:{s.name}")
    add_ratio(
        report,
        t,
        "gradcam",
        s.name,
        f"cw {k} classes / cw 1 class",
        f"cw {k}",
        "cw 1",
        "<= 1.5",
        lambda m: m <= 1.5,
    )
    add_ratio(
        report,
        t,
        "gradcam",
        s.name,
        f"keras-example {k} / cw {k} (speed-up)",
        f"keras-example {k}",
        f"cw {k}",
        ">= 3",
        lambda m: m >= 3,
    )
    add_ratio(
        report, t, "gradcam", s.name, "keras-example 1 / cw 1 (speed-up)", "keras-example 1", "cw 1"
    )
    add_ratio(
        report,
        t,
        "gradcam",
        s.name,
        f"tf-keras-vis {k} / cw {k} (speed-up)",
        f"tf-keras-vis {k}",
        f"cw {k}",
    )
    add_ratio(
        report, t, "gradcam", s.name, "tf-keras-vis 1 / cw 1 (speed-up)", "tf-keras-vis 1", "cw 1"
    )


def bench_occlusion(s: Subject, repeats: int, report: Report) -> None:
    import cnnwidgets as cw

    cls = s.classes[0]
    c: dict[str, Callable[[int], object]] = {}
    floors = {st: peers.patched_images(s.image, 16, st) for st in s.occlusion_strides}
    for st in s.occlusion_strides:
        c[f"cw s{st}"] = lambda r, st=st: cw.occlusion(
            s.probe, fresh(s.image, r), classes=cls, patch=16, stride=st, fill=127.5
        )
        c[f"floor s{st}"] = lambda r, st=st: peers.occlusion_floor(s.model, floors[st])
    if 16 in s.occlusion_strides:
        c["tf-explain s16"] = lambda r: peers.tfexplain_occlusion(
            s.model, fresh(s.image, r), cls, 16
        )
    t = run_repeats(c, repeats, report, f"occlusion:{s.name}")
    add_ratio(
        report,
        t,
        "occlusion",
        s.name,
        "tf-explain / cw, patch 16 stride 16 (speed-up)",
        "tf-explain s16",
        "cw s16",
        ">= 1.3",
        lambda m: m >= 1.3,
    )
    for st in s.occlusion_strides:
        n = len(floors[st])
        add_ratio(
            report,
            t,
            "occlusion",
            s.name,
            f"cw / floor, patch 16 stride {st} ({n} images)",
            f"cw s{st}",
            f"floor s{st}",
        )
    add_ratio(
        report,
        t,
        "occlusion",
        s.name,
        "tf-explain / floor, stride 16",
        "tf-explain s16",
        "floor s16",
    )
    for st in s.occlusion_strides:
        del floors[st]


def bench_incremental(s: Subject, repeats: int, report: Report, strides: tuple[int, ...]) -> None:
    """Incremental occlusion (engine='incremental') against the batched-predict
    floor over the same patched images, cnnwidgets' batched engine, and
    tf-explain (stride = patch = 16 only), patch 16, grey fill."""
    import cnnwidgets as cw

    cls = s.classes[0]
    floors = {st: peers.patched_images(s.image, 16, st) for st in strides}
    plan = cw.occlusion_plan(s.probe, s.image, patch=16, stride=min(strides))
    report.note(
        f"incremental {s.name}: plan {plan.engine}, estimated {plan.speedup:.2f}x faster "
        f"({plan.reason}); branches run whole from {list(plan.full_from)[:4]}"
    )

    def occ(engine: str, st: int) -> Callable[[int], object]:
        # Each engine its own images: the result cache must not answer across engines.
        shift = 2500 if engine == "batched" else 0
        return lambda r: cw.occlusion(
            s.probe, fresh(s.image, r + shift), classes=cls, patch=16, stride=st, fill=127.5,
            engine=engine,
        )

    c: dict[str, Callable[[int], object]] = {}
    for st in strides:
        c[f"incremental s{st}"] = occ("incremental", st)
        c[f"floor s{st}"] = lambda r, st=st: peers.occlusion_floor(s.model, floors[st])
        c[f"cw batched s{st}"] = occ("batched", st)
    if 16 not in strides:
        c["incremental s16"] = occ("incremental", 16)
    c["tf-explain s16"] = lambda r: peers.tfexplain_occlusion(s.model, fresh(s.image, r), cls, 16)
    slow = tuple(n for n in c if not n.startswith("incremental"))
    t = run_repeats(c, repeats, report, f"incremental:{s.name}", once=tuple(c), cold=slow)
    goal = INCREMENTAL_GOALS.get(s.name)
    for st in strides:
        n = len(floors[st])
        add_ratio(
            report,
            t,
            "incremental",
            s.name,
            f"floor / incremental, patch 16 stride {st} ({n} images) (speed-up)",
            f"floor s{st}",
            f"incremental s{st}",
            f">= {goal:g}" if goal else "",
            (lambda m, g=goal: m >= g) if goal else None,
        )
        add_ratio(
            report,
            t,
            "incremental",
            s.name,
            f"cw batched / incremental, stride {st} (speed-up)",
            f"cw batched s{st}",
            f"incremental s{st}",
        )
    add_ratio(
        report,
        t,
        "incremental",
        s.name,
        "tf-explain / incremental, patch 16 stride 16 (speed-up)",
        "tf-explain s16",
        "incremental s16",
    )
    for st in strides:
        del floors[st]


def bench_grid(repeats: int, report: Report) -> None:
    from cnnwidgets import render

    acts = np.random.default_rng(0).standard_normal(GRID_SHAPE).astype(np.float32)
    acts = np.maximum(acts, 0.0)  # ReLU-like
    maps = np.ascontiguousarray(np.moveaxis(acts, -1, 0))  # (512, 14, 14)
    c = {
        "render.tile": lambda r: render.tile(maps),
        "render.tile + PNG": lambda r: render.to_png(render.tile(maps)),
        "matplotlib subplots": lambda r: peers.matplotlib_grid(acts),
    }
    t = run_repeats(c, repeats, report, "grid:14x14x512")
    add_ratio(
        report,
        t,
        "grid",
        "14x14x512",
        "matplotlib subplots / render.tile (speed-up)",
        "matplotlib subplots",
        "render.tile",
        ">= 20",
        lambda m: m >= 20,
    )
    add_ratio(
        report,
        t,
        "grid",
        "14x14x512",
        "matplotlib subplots / (tile + PNG) (speed-up)",
        "matplotlib subplots",
        "render.tile + PNG",
    )


def bench_maximize(s: Subject, repeats: int, report: Report, steps: int) -> None:
    import cnnwidgets as cw

    filters = list(range(64))

    def batched(r):
        return cw.maximize(
            s.probe, s.max_layer, filters=filters, size=64, steps=steps, seed=10_000 + r
        )

    def one_at_a_time(r):
        return [
            cw.maximize(s.probe, s.max_layer, filters=[f], size=64, steps=steps, seed=20_000 + r)
            for f in filters
        ]

    c = {"batched 64": batched, "one at a time x64": one_at_a_time}
    t = run_repeats(c, repeats, report, f"maximize:{s.name}", once=tuple(c))
    add_ratio(
        report,
        t,
        "maximize",
        s.name,
        f"one-at-a-time / batched, 64 filters of {s.max_layer}, {steps} steps",
        "one at a time x64",
        "batched 64",
        ">= 5",
        lambda m: m >= 5,
    )


def bench_widgets(s: Subject, repeats: int, report: Report) -> None:
    import cnnwidgets as cw

    c: dict[str, Callable[[int], object]] = {"forward pass": forward_one(s)}
    image = s.image
    try:
        comp = cw.GradCAMComparator(s.model, image)
        comp.wait()
        values = _slider_values(comp.class_slider)

        def slide(key):
            value = values[key % len(values)]
            if value == comp.class_slider.value:
                value = values[(key + 1) % len(values)]
            comp.class_slider.value = value
            comp.wait()

        c["comparator class-slider move"] = slide
    except Exception as exc:
        report.note(f"widgets {s.name}: GradCAMComparator unavailable: {exc!r}"[:300])
    try:
        browser = cw.ActivationBrowser(s.model, image[None])
        browser.wait()
        start = browser.layer.value
        unseen = [v for _, v in browser.layer.options if v != start]

        def first_visit(key):
            # Warm-up takes unseen[0]; repeat r takes unseen[r + 1]: never computed before.
            browser.layer.value = unseen[0 if key < 0 else key // 100 + 1]
            browser.wait()

        def revisit(key):
            # Toggle between two layers already shown (never a no-op).
            browser.layer.value = start if browser.layer.value == unseen[0] else unseen[0]
            browser.wait()

        if len(unseen) > repeats:
            c["browser layer change (first visit)"] = first_visit
        c["browser layer change (cached)"] = revisit
    except Exception as exc:
        report.note(f"widgets {s.name}: ActivationBrowser unavailable: {exc!r}"[:300])
    try:
        scrub = cw.OcclusionScrubber(s.model, image)
        scrub.wait()
        h = image.shape[0]

        span = h - 16 + 1

        def move(key):
            # A position never visited before: one small forward pass, nothing cached.
            idx = key + 5000
            scrub.move(idx % span, (idx // span) % span)

        c["scrubber move"] = move
    except Exception as exc:
        report.note(f"widgets {s.name}: OcclusionScrubber unavailable: {exc!r}"[:300])
    t = run_repeats(
        c, repeats, report, f"widgets:{s.name}", once=("browser layer change (first visit)",)
    )
    add_ratio(
        report,
        t,
        "widgets",
        s.name,
        "comparator class-slider move / forward pass",
        "comparator class-slider move",
        "forward pass",
        "<= 0.1",
        lambda m: m <= 0.1,
    )
    for kind in ("first visit", "cached"):
        add_ratio(
            report,
            t,
            "widgets",
            s.name,
            f"browser layer change ({kind}) / forward pass",
            f"browser layer change ({kind})",
            "forward pass",
        )
    add_ratio(
        report,
        t,
        "widgets",
        s.name,
        "scrubber move / forward pass",
        "scrubber move",
        "forward pass",
    )


def _slider_values(slider) -> list:
    options = getattr(slider, "options", None)
    if options:
        return [o[1] if isinstance(o, tuple) else o for o in options][:10]
    return list(range(int(slider.min), int(slider.max) + 1))[:10]


# ---------------------------------------------------------------------- main


def machine() -> dict[str, str]:
    import keras
    import matplotlib
    import tensorflow as tf

    cpu = platform.processor() or "unknown"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for mod in ("tf_keras_vis", "tf_explain", "cv2"):
        try:
            versions[mod] = getattr(__import__(mod), "__version__", "?")
        except Exception as exc:
            versions[mod] = f"not importable ({type(exc).__name__})"
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "tensorflow / keras": f"{tf.__version__} / {keras.__version__}",
        "numpy / matplotlib": f"{np.__version__} / {matplotlib.__version__}",
        "tf-keras-vis / tf-explain / opencv": " / ".join(versions.values()),
    }


def write_markdown(path: pathlib.Path, info: dict, report: Report, args, wall: float) -> None:
    lines = ["# cnnwidgets benchmark results", ""]
    lines.append(
        f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/run.py', *sys.argv[1:]])}`"
        + f" — {args.repeats} repeats, {wall:.0f} s wall."
    )
    lines.append("")
    for k, v in info.items():
        lines.append(f"- {k}: {v}")
    lines.append(f"- load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    lines += [
        "",
        "Each ratio is taken within one repeat (same input, same machine state), then",
        "summarised over repeats. 'speed-up' rows are peer time / cnnwidgets time (bigger is",
        "better for cnnwidgets); goals are judged on the median.",
        "",
        "| section | model | figure | min | median | max | goal | verdict |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in report.rows:
        lines.append(
            f"| {r.section} | {r.model} | {r.figure} | {fmt(min(r.ratios))} | "
            f"{fmt(r.median)} | {fmt(max(r.ratios))} | {r.goal} | {r.verdict} |"
        )
    lines += ["", "## Absolute times (seconds, min / median / max)", ""]
    lines += [
        "| section | model | contender | min | median | max |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for section, model, name, ts in report.times:
        if ts:
            lines.append(
                f"| {section} | {model} | {name} | {fmt(min(ts))} | "
                f"{fmt(statistics.median(ts))} | {fmt(max(ts))} |"
            )
    if report.notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {n}" for n in report.notes]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="demo + mobilenetv2, 2 repeats, stride 16 only on mobilenetv2",
    )
    p.add_argument("--models", default=None, help=f"comma-separated from {','.join(MODELS)}")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument(
        "--sections", default="gradcam,occlusion,grid,maximize,widgets,incremental"
    )
    p.add_argument("--out", default=None, help="markdown file to write")
    args = p.parse_args(argv)
    models = (
        args.models.split(",")
        if args.models
        else (["demo", "mobilenetv2"] if args.quick else list(MODELS))
    )
    args.repeats = args.repeats or (2 if args.quick else 3)
    out = (
        pathlib.Path(args.out)
        if args.out
        else (HERE / "out" / "RESULTS-quick.md" if args.quick else HERE / "RESULTS.md")
    )
    sections = set(args.sections.split(","))
    steps = 4 if args.quick else 8
    start = time.perf_counter()
    info = machine()
    for k, v in info.items():
        print(f"{k}: {v}")
    report = Report()
    print(f"\n{'figure':<54} {'min':>8} {'median':>8} {'max':>8}  goal")

    def section(name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except ImportError as exc:
            report.note(f"{name}: skipped, module not importable yet ({exc})")
        except Exception as exc:
            report.note(f"{name}: failed: {type(exc).__name__}: {str(exc)[:300]}")
            traceback.print_exc(limit=5)

    if "grid" in sections:
        print("[grid 14x14x512]", flush=True)
        section("grid", lambda: bench_grid(args.repeats, report))
    for name in models:
        print(f"[{name}] loading", flush=True)
        subject = load_subject(name)
        if args.quick and subject.name != "demo":
            subject.occlusion_strides = (16,)
        for sec, fn in (
            ("widgets", lambda s=subject: bench_widgets(s, max(args.repeats, 5), report)),
            ("gradcam", lambda s=subject: bench_gradcam(s, args.repeats, report)),
            ("occlusion", lambda s=subject: bench_occlusion(s, args.repeats, report)),
            ("maximize", lambda s=subject: bench_maximize(s, args.repeats, report, steps)),
            (
                "incremental",
                lambda s=subject: bench_incremental(
                    s, args.repeats, report, (16,) if args.quick else (8,)
                ),
            ),
        ):
            if sec not in sections or sec not in MODEL_SECTIONS.get(name, {sec}):
                continue
            if sec == "incremental" and name not in INCREMENTAL_GOALS:
                continue
            if sec == "maximize" and name == "vgg16":
                report.note("maximize vgg16: skipped (64 filters x 224 px VGG16 passes per step)")
                continue
            print(f"[{name}] {sec}", flush=True)
            section(f"{sec} {name}", fn)
        del subject
    wall = time.perf_counter() - start
    write_markdown(out, info, report, args, wall)
    print(f"\nwrote {out} ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
