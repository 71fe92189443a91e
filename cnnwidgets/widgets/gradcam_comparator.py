"""The class-slider Grad-CAM comparator.

Two panels per method: a pinned class (default: the top prediction) and the
class at the slider's rank among the top-k, side by side, so moving the
slider asks "and where is the evidence for *this* class?". Maps of all top-k
classes are computed together (one forward pass, one backward pass per class)
whenever the image, layer or methods change; moving the slider, the opacity,
the colour map or the scaling only re-draws, with no model pass.

The panels are composed in the page (:class:`~cnnwidgets.widgets.canvas.PictureCanvas`):
per method row, one canvas draws the pinned and the slider panel side by side
from one transfer: the maps of every offered target (the ranked ones and the
pinned one) travel once as uint8 colour indices of their own [0, peak], with
one gain per scale mode (:func:`scale_gains`), and the legend once per scale
mode; the class slider, the pinned choice, the scale mode, the opacity and the
colour map are jslinked to the canvases, so the page redraws in its next frame
and no picture crosses the websocket. The layer, the methods, the sign of a
regression target and a new image change the maps: the kernel sends them again
(after a model pass where one is needed, with progress).
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Sequence
from typing import Any

import bqplot
import ipywidgets as widgets
import numpy as np
import traitlets

from cnnwidgets import render
from cnnwidgets.explain import methods as map_methods
from cnnwidgets.explain import target_choices
from cnnwidgets.explain.common import normalize_maps
from cnnwidgets.explain.target_choices import Choice
from cnnwidgets.probe import as_probe, weights_held
from cnnwidgets.probe.targets import Class, as_targets
from cnnwidgets.widgets.base import BLANK_PNG, ClickablePicture, ViewWidget, layer_options
from cnnwidgets.widgets.canvas import PictureCanvas

#: Colour maps offered by the ``cmap`` control.
CMAPS: tuple[str, ...] = ("jet", "viridis", "magma", "inferno", "turbo", "gray")

#: Smallest side (pixels) a panel is drawn at; small inputs are enlarged.
PANEL_SIZE = 192
#: Pixels between panels, and the height of the title line (binary heads).
PANEL_GAP = 6
TITLE_HEIGHT = 18
#: Height of the caption line above each panel (``render.caption``'s default).
CAPTION_HEIGHT = 16


def row_scale(mode: str | None, peak: float) -> tuple[float, str]:
    """The top of a method row's colour bar and what its colour means, for the
    comparator's scaling ``mode`` and the row's largest raw value ``peak``."""
    if mode == "map":
        return 1.0, "each map divided by its own peak"
    if mode == "method":
        return peak, "raw value, one scale for the row"
    return 1.0, "raw value, clipped at 1"


#: The scale modes, in the order of the ``normalize`` control's options. (Raw
#: is "raw", not None: a Dropdown whose value is None has no option selected.)
SCALE_MODES: tuple[str, ...] = ("map", "method", "raw")


def scale_gains(peak: float, row_peak: float) -> list[float]:
    """Per scale mode of :data:`SCALE_MODES`, the gain a map's colour indices
    (sent as indices of its own [0, ``peak``]) are drawn with
    (:func:`cnnwidgets.render.rescale_index`): 'map' 1; 'method' peak /
    ``row_peak`` (the row's largest raw value, so at most 1); 'raw' peak when
    it is at most 1. A map whose peak exceeds 1 has its raw indices
    (clipped at 1) sent beside it, drawn with gain 1: a gain above 1 would
    coarsen it. An all-zero map (peak 0) keeps gain 1: its indices are 0."""
    if peak <= 0:
        return [1.0, 1.0, 1.0]
    return [1.0, peak / row_peak if row_peak > 0 else 1.0, peak if peak <= 1.0 else 1.0]


__all__ = ["GradCAMComparator", "SCALE_MODES", "scale_gains"]


class GradCAMComparator(ViewWidget):
    """Compare the maps of a pinned target and a slider-picked target.

    On a classifier the targets are its classes, ranked by probability. On
    any other model the slider steps through what its outputs offer (see
    :mod:`cnnwidgets.explain.target_choices`): the classes present in a
    segmentation (a click on the segmentation picture picks the connected
    region under it), the labels of a multi-label head, the values of a
    regression output (with a "raises / lowers" toggle), or the ``targets``
    given.

    Args:
        model: a keras.Model (never changed) or a :class:`~cnnwidgets.Probe`.
        image: one raw image (H, W, C) (or (1, H, W, C)).
        classes: None (the top-``top`` predictions) or the classes to offer
            (ints or names), ranked by probability.
        methods: initial methods: CAM methods and, when
            ``cnnwidgets.explain.saliency`` is available, saliency methods.
        layer: the CAM layer (default: ``last_conv_layer``).
        top: how many ranked classes the slider and bar chart cover.
        class_names: class names ([negative, positive] for a one-unit sigmoid).
        preprocess: function applied to the raw pixels before the model.
        targets: what to explain instead of classes: a list of
            :mod:`cnnwidgets.targets` (or one), offered in this order.

    Controls (public, drive them as a user would): ``class_slider`` (rank
    1..top), ``pinned``, ``layer``, ``methods``, ``opacity``, ``cmap``,
    ``normalize``, ``sign`` (shown for regression targets); ``bars`` is the
    bqplot bar chart of the targets' values (click a bar to pick it);
    ``click(y, x)`` picks a segmentation region. ``view`` is the (H, W, 3)
    uint8 picture of the panels.
    """

    selected_class = traitlets.Int(
        0,
        help="Index of the class at the slider's rank; set it (or link it) to move the slider.",
    )
    selected_target = traitlets.Any(
        None, help="The target (cw.targets) at the slider's rank, on any model."
    )

    def __init__(
        self,
        model: Any,
        image: Any,
        classes: Any = None,
        methods: Sequence[str] | str = ("gradcam",),
        layer: Any = None,
        top: int = 10,
        class_names: Sequence[str] | None = None,
        preprocess: Callable | None = None,
        targets: Any = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.probe = as_probe(model, class_names=class_names, preprocess=preprocess)
        method_values, methods, layer_path = self._check_arguments(top, methods, layer)
        if targets is not None and classes is not None:
            raise TypeError("give classes= or targets=, not both")
        self._top = int(top)
        self._class_arg = classes
        self._targets_arg = targets
        self._sign = 1
        self._picked: Choice | None = None  # the region a click picked
        self._lock = threading.RLock()
        self._store: dict[tuple, np.ndarray] = {}  # (layer or None, method, choice) -> (H, W)
        self._errors: dict[str, str] = {}
        self._scaled: dict[tuple, np.ndarray] = {}
        # Per method row, reused: the canvases (legend; pinned and slider panels
        # drawn by one canvas from one transfer), what each holds (its key),
        # and their links in the page.
        self._rows: list[tuple[PictureCanvas, PictureCanvas]] = []
        self._row_keys: list[dict[str, Any]] = []
        self._page_links: list[widgets.jslink] = []
        self._generation = 0  # bumped whenever stored maps or the targets' texts change
        self._shown_rows = 0  # rows in the grid now
        self._title: str | None = None
        self._captions_shown: list[tuple[str, str]] = []  # (pinned, slider) per row
        self._set_image_state(image)
        self._build_controls(method_values, methods, layer_path)
        self._build_bars()
        self._lay_out()
        self._wire()
        self._update_labels()
        self._recompute(sync=True)

    def _check_arguments(
        self, top: Any, methods: Sequence[str] | str, layer: Any
    ) -> tuple[list[str], tuple[str, ...], str]:
        """(method choices, chosen methods, layer path); raises on a bad argument."""
        if not isinstance(top, (int, np.integer)) or top < 1:
            raise ValueError(f"top must be a positive int, got {top!r}")
        method_values = list(map_methods.MAP_METHODS)
        if isinstance(methods, str):
            methods = (methods,)
        if not methods:
            raise ValueError(f"give at least one method; choose from {tuple(method_values)}")
        methods = tuple(dict.fromkeys(map_methods.resolve(m) for m in methods))
        default_layer = self.probe.last_conv_layer if layer is None else layer
        return method_values, tuple(methods), self.probe.resolve_4d(default_layer)

    def _build_controls(
        self, method_values: list[str], methods: tuple[str, ...], layer_path: str
    ) -> None:
        ranked = self.ranked
        self.class_slider = widgets.IntSlider(
            value=min(2, len(ranked)),
            min=1,
            max=max(1, len(ranked)),
            description="rank",
            continuous_update=True,
        )
        self.class_label = widgets.HTML()
        self.pinned = widgets.Dropdown(
            options=self._pinned_options(), value=ranked[0], description="pinned"
        )
        self.sign = widgets.ToggleButtons(
            options=[("raises", 1), ("lowers", -1)],
            value=1,
            description="value",
            tooltips=["what raises the predicted value", "what lowers it"],
            layout=widgets.Layout(display=None if self._regression else "none"),
        )
        # The segmentation picture: a click picks the region under it.
        self.picker: ClickablePicture | None = None
        if target_choices.segmentation_output(self.probe) is not None:
            self.picker = ClickablePicture(self.click, size=PANEL_SIZE)
            self._show_segmentation()
        self.layer = widgets.Dropdown(
            options=layer_options(self.probe), value=layer_path, description="layer"
        )
        self.methods = widgets.SelectMultiple(
            options=method_values, value=tuple(methods), description="methods", rows=5
        )
        self.opacity = widgets.FloatSlider(
            value=0.4, min=0.0, max=1.0, step=0.05, description="opacity"
        )
        self.cmap = widgets.Dropdown(options=list(CMAPS), value="jet", description="colours")
        labels = {"map": "each map", "method": "one scale per method", "raw": "raw"}
        self.normalize = widgets.Dropdown(
            options=[(labels[m], m) for m in SCALE_MODES], value="map", description="scale"
        )
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="computing")
        self.status = widgets.HTML()
        self.note = widgets.HTML()
        # Each panel is a picture of its own, sent when it changes: a slider
        # move sends the slider's panels only, or none when they were shown before.
        self.panels = widgets.GridBox(
            layout=widgets.Layout(grid_gap=f"{PANEL_GAP}px", justify_content="flex-start")
        )
        self.title_image = widgets.Image(
            value=BLANK_PNG, format="png", layout=widgets.Layout(display="none")
        )

    def _lay_out(self) -> None:
        picker = [] if self.picker is None else [self.picker.figure]
        self.children = [
            widgets.HBox([self.class_slider, self.class_label]),
            widgets.HBox([self.pinned, self.layer, self.sign]),
            *picker,
            widgets.HBox([self.methods, widgets.VBox([self.opacity, self.cmap, self.normalize])]),
            self.progress,
            self.status,
            self.note,
            widgets.VBox([self.title_image, self.panels]),
            self.figure,
        ]

    def _wire(self) -> None:
        self.class_slider.observe(self._on_rank, names="value")
        self.pinned.observe(self._on_pinned, names="value")
        self.layer.observe(self._on_compute_change, names="value")
        self.methods.observe(self._on_compute_change, names="value")
        self.opacity.observe(self._on_redraw, names="value")
        self.cmap.observe(self._on_redraw, names="value")
        self.normalize.observe(self._on_redraw, names="value")
        self.sign.observe(self._on_sign, names="value")

    # ------------------------------------------------------------ state

    def _set_image_state(self, image: Any) -> None:
        raw = self.probe.check_images(image)
        if len(raw) != 1:
            raise ValueError(f"GradCAMComparator shows one image; got a batch of {len(raw)}")
        self._raw = raw
        self._picture = render.to_rgb_uint8(raw[0])
        self._version = self.probe.weights_version()
        self._classifier = self._targets_arg is None and self.probe.head.kind != "none"
        self._probs = self.probe.predict(raw)[0] if self._classifier else None
        self._set_choices()
        self._store.clear()
        self._scaled.clear()
        self._generation += 1

    def _set_choices(self) -> None:
        """The targets the slider offers on the current image (and the region
        a click picked, first), ranked."""
        raw = self._raw
        if self._classifier:
            choices = target_choices.class_choices(self.probe, raw, self._class_arg, self._top)
        elif self._targets_arg is not None:
            targets = [
                target_choices.with_sign(t, self._sign) for t in as_targets(self._targets_arg)
            ]
            choices = target_choices.given_choices(self.probe, raw, targets)
        else:
            choices = target_choices.offered_choices(self.probe, raw, self._top, self._sign)
        if self._picked is not None:
            choices = [self._picked] + [c for c in choices if c.key != self._picked.key]
        self._choices = {c.key: c for c in choices}
        self.ranked: list = [c.key for c in choices]
        self._generation = getattr(self, "_generation", 0) + 1  # captions name the targets
        self._regression = target_choices.has_regression(choices)

    def set_image(self, image: Any) -> None:
        """Show another image: re-rank the targets and recompute the maps."""
        self._picked = None
        self._reload(image, keep_pinned=False)

    def _reload(self, image: Any, keep_pinned: bool) -> None:
        with self._lock:
            pinned = self.pinned.value
            self._set_image_state(image)
            self._offer_choices(pinned if keep_pinned else None)
        self._recompute()

    def _offer_choices(self, pinned: Any = None, rank: int | None = None) -> None:
        """Put the current choices on the slider, the pinned menu and the bars."""
        with self._setting_controls():
            self.class_slider.max = max(1, len(self.ranked))
            if rank is not None:
                self.class_slider.value = min(rank, len(self.ranked))
            self.pinned.options = self._pinned_options()
            keys = [v for _, v in self.pinned.options]
            self.pinned.value = pinned if pinned in keys else self.ranked[0]
        self._update_bars()
        self._update_labels()
        self.sign.layout.display = None if self._regression else "none"
        if self.picker is not None:
            self._show_segmentation()

    def _choice(self, key: Any) -> Choice:
        """The choice of this key: offered ones, or any class of a classifier (pinned)."""
        if key in self._choices:
            return self._choices[key]
        c = int(key)
        return Choice(
            key=c,
            target=Class(c),
            label=self.probe.class_names[c],
            value=float(self._probs[c]),
            value_text=f"{self._probs[c]:.1%}",
            kind="class",
            cls=c,
        )

    def _name(self, key: Any) -> str:
        return self._choice(key).label

    def _pinned_options(self) -> list[tuple[str, Any]]:
        if not self._classifier:
            return [(f"{c.label} ({c.value_text})", c.key) for c in self._choices.values()]
        order = np.argsort(-self._probs, kind="stable")
        return [(f"{self._name(c)} ({self._probs[c]:.1%})", int(c)) for c in order]

    @traitlets.validate("selected_class")
    def _valid_class(self, proposal) -> int:
        cls = int(proposal["value"])
        if not self._classifier:
            raise traitlets.TraitError(
                "selected_class is a classifier's; this comparator offers targets "
                f"({[self._name(k) for k in self.ranked]}): move class_slider"
            )
        if cls not in self.ranked:
            names = [self._name(c) for c in self.ranked]
            raise traitlets.TraitError(
                f"class {cls} is not on the slider; its classes are {self.ranked} ({names})"
            )
        return cls

    @traitlets.observe("selected_class")
    def _move_slider_to_class(self, change) -> None:
        rank = self.ranked.index(change["new"]) + 1
        if self.class_slider.value != rank:
            self.class_slider.value = rank  # draws

    @property
    def probabilities(self) -> np.ndarray:
        """(K_all,) float32 class probabilities of the image (classifiers only)."""
        if self._probs is None:
            self.probe.require_classes()
        return self._probs.copy()

    @property
    def choices(self) -> list[Choice]:
        """What the slider offers, in rank order (target, label, value)."""
        return [self._choices[k] for k in self.ranked]

    def _binary_note(self) -> str | None:
        if self.probe.head.kind != "binary":
            return None
        neg, pos = self.probe.class_names
        return (
            f"one sigmoid unit: p({neg}) = 1 - p({pos}); the {neg} map explains the negative logit"
        )

    def _binary_title(self) -> str | None:
        if self.probe.head.kind != "binary":
            return None
        neg, pos = self.probe.class_names
        return f"one sigmoid unit: p({neg}) = 1 - p({pos})"

    def raw_map(self, method: str, which: str = "slider") -> np.ndarray:
        """The map behind a panel, before any scaling: (H, W) float32 >= 0.

        ``method``: one of the shown methods; ``which``: 'slider' or 'pinned'.
        Call :meth:`wait` first when the maps may still be computing."""
        if which not in ("slider", "pinned"):
            raise ValueError(f"which must be 'slider' or 'pinned', got {which!r}")
        method = map_methods.resolve(method)
        key = self._selected_key if which == "slider" else self.pinned.value
        stored = self._store.get(self._key(method, key))
        if stored is None:
            raise ValueError(
                f"no {method} map of {self._name(key)!r}: "
                + (self._errors.get(method) or f"the methods shown are {self.methods.value}")
            )
        return stored.copy()

    @property
    def _selected_key(self) -> Any:
        return self.ranked[self.class_slider.value - 1]

    def _update_labels(self) -> None:
        key = self._selected_key
        choice = self._choice(key)
        if self._classifier:
            self.selected_class = key
            value = f"p = {self._probs[key]:.2%}"
        else:
            value = choice.value_text
        self.selected_target = choice.target
        self.class_label.value = (
            f"<b>{html.escape(choice.label)}</b> {value} "
            f"(rank {self.class_slider.value} of {len(self.ranked)})"
        )
        self.bars.selected = [self.class_slider.value - 1]
        note = self._binary_note()
        self.note.value = f"<i>{note}</i>" if note else ""

    # ------------------------------------------------------------ bar chart

    def _build_bars(self) -> None:
        x_scale = bqplot.OrdinalScale()
        y_scale = bqplot.LinearScale(min=0.0, max=1.0)
        self.bars = bqplot.Bars(
            x=[],
            y=[],
            scales={"x": x_scale, "y": y_scale},
            colors=["steelblue"],
            selected_style={"fill": "orange"},
            interactions={"click": "select"},
        )
        self.bars.on_element_click(self._on_bar_click)
        axes = [
            bqplot.Axis(scale=x_scale, tick_rotate=-30),
            bqplot.Axis(scale=y_scale, orientation="vertical", tick_format=".0%"),
        ]
        self.figure = bqplot.Figure(
            marks=[self.bars],
            axes=axes,
            title="top classes",
            layout=widgets.Layout(height="220px", width="100%"),
            fig_margin={"top": 30, "bottom": 50, "left": 50, "right": 10},
        )
        self._update_bars()

    def _update_bars(self) -> None:
        choices = self.choices
        values = np.array([c.value for c in choices], np.float64)
        probabilities = all(c.kind in ("class", "label", "region") for c in choices)
        scale = self.bars.scales["y"]
        with self.bars.hold_sync():
            self.bars.x = [c.label for c in choices]
            self.bars.y = values
            # Probabilities on [0, 1]; predicted values on their own range, from 0.
            scale.min = 0.0 if probabilities else float(min(0.0, values.min()))
            scale.max = 1.0 if probabilities else float(max(0.0, values.max()) or 1.0)
        self.figure.title = "top classes" if self._classifier else "targets: the model's values"
        self.figure.axes[1].tick_format = ".0%" if probabilities else ".3g"

    def _on_bar_click(self, bars: Any, event: dict) -> None:
        """bqplot element click: {'event': 'element_click', 'data': {'index': i, ...}}."""
        index = int(event.get("data", {}).get("index", -1))
        if 0 <= index < len(self.ranked):
            self.class_slider.value = index + 1

    # ------------------------------------------------------------ compute

    def _missing(self) -> list[tuple[str, list]]:
        classes = list(dict.fromkeys(self.ranked + [self.pinned.value]))
        todo = []
        for m in self.methods.value:
            need = [c for c in classes if self._key(m, c) not in self._store]
            if need and m not in self._errors:
                todo.append((m, need))
        return todo

    def _key(self, method: str, choice: Any, layer: str | None = None) -> tuple:
        """The store's key of a map: the layer is part of it for every method
        whose maps depend on the layer (the CAM family, guided Grad-CAM)."""
        if not map_methods.METHODS[method].uses_layer:
            layer = None
        elif layer is None:
            layer = self.layer.value
        return (layer, method, choice)

    def _compute(self, todo, layer: str, progress) -> dict:
        """{method: (classes, (K, H, W) maps) or an error message}."""
        out: dict[str, Any] = {}
        n = max(1, len(todo))
        for i, (method, classes) in enumerate(todo):

            def part(done, total, i=i):
                progress(i * 100 + int(100 * done / max(total, 1)), n * 100)

            chosen = [self._choice(k) for k in classes]
            if all(c.cls is not None for c in chosen):
                what = {"classes": [c.cls for c in chosen]}
            else:
                what = {"target": [c.target for c in chosen]}
            try:
                maps = map_methods.explain(
                    self.probe,
                    self._raw,
                    method=method,
                    layer=layer,
                    normalize=None,
                    progress=part,
                    **what,
                )
                out[method] = (classes, np.maximum(np.nan_to_num(maps[0]), 0.0))
            except (ValueError, TypeError) as exc:
                out[method] = str(exc)
            progress((i + 1) * 100, n * 100)
        return out

    def _recompute(self, sync: bool = False) -> None:
        todo = self._missing()
        if not todo:
            self._render()
            return
        layer = self.layer.value

        def work(progress):
            return self._compute(todo, layer, progress)

        def done(result):
            with self._lock:
                for method, value in result.items():
                    if isinstance(value, str):
                        self._errors[method] = value
                        continue
                    classes, maps = value
                    for c, m in zip(classes, maps):
                        self._store[self._key(method, c, layer)] = m
                self._scaled.clear()
                self._generation += 1
            self._render()

        if sync:
            done(work(lambda d, t: None))
        else:
            self._start_job(work, done, self.progress)

    # ------------------------------------------------------------ drawing

    def _display_maps(self) -> dict[tuple, np.ndarray]:
        """Every stored map of the offered targets divided by its own peak: what
        the page receives (as colour indices). The other scale modes are drawn
        from these by gains (:func:`scale_gains`): 'method' gives each method
        (a row) one scale over its targets, raw shows raw values clipped at 1.
        Methods never share a scale: their units differ (logit gradients,
        probabilities, pixels), so one would blank the others."""
        layer = self.layer.value
        key = (layer, tuple(self.methods.value), self.pinned.value)
        if key not in self._scaled:
            scaled: dict[tuple, np.ndarray] = {}
            classes = list(dict.fromkeys(self.ranked + [self.pinned.value]))
            for m in self.methods.value:
                keys = [k for k in (self._key(m, c) for c in classes) if k in self._store]
                if keys:
                    stack = np.stack([self._store[k] for k in keys])  # (K, H, W)
                    scaled.update(zip(keys, normalize_maps(stack, "map")))
            self._scaled[key] = scaled
        return self._scaled[key]

    def _caption(self, method: str, key: Any, what: str) -> str:
        # The method names the row (its legend), so the caption is the target alone.
        choice = self._choice(key)
        return f"{what}: {choice.label} {choice.value_text}"

    def _row_peak(self, method: str) -> float:
        """The largest raw value of this method's maps of the offered classes."""
        classes = dict.fromkeys(self.ranked + [self.pinned.value])
        maps = [self._store.get(self._key(method, c)) for c in classes]
        return max((float(m.max()) for m in maps if m is not None), default=0.0)

    def _row(self, i: int) -> tuple[PictureCanvas, PictureCanvas]:
        """Row i's canvases (legend; the pinned and slider panels, side by side
        in one canvas), made on first use with their links in the page: the
        pinned menu's index picks the first panel's map, the slider's rank the
        second's; the scale mode, the opacity and the colour map are drawn by
        the page alone."""
        while len(self._rows) <= i:
            legend = PictureCanvas(cmaps=CMAPS, mode="overlay", opacity=1.0)
            pair = PictureCanvas(cmaps=CMAPS, mode="overlay", panel_gap=PANEL_GAP)
            pair.on_click(lambda y, x, c=pair: self._panel_click(c, y, x))
            self._page_links += [
                widgets.jslink((self.pinned, "index"), (pair, "shown")),
                widgets.jslink((self.class_slider, "value"), (pair, "second_shown")),
                widgets.jslink((self.opacity, "value"), (pair, "opacity")),
                *(
                    widgets.jslink((self.normalize, "index"), (c, "variant"))
                    for c in (legend, pair)
                ),
                *(widgets.jslink((self.cmap, "index"), (c, "cmap")) for c in (legend, pair)),
            ]
            self._rows.append((legend, pair))
            self._row_keys.append({})
        return self._rows[i]

    def _send_legend(self, i: int, method: str, height: int) -> None:
        """Row i's legend: the method, its colour bar (recoloured by the page when
        the colour map changes: the ramp is a map over the legend's picture) and
        what the colour means, one frame per scale mode (the page shows the
        frame of the mode chosen). Sent when the method or its peak changes."""
        legend = self._rows[i][0]
        peak = self._row_peak(method)
        key = (method, peak, height)
        if self._row_keys[i].get("legend") == key:
            return
        scales = [row_scale(mode, peak) for mode in SCALE_MODES]
        lines = max(render.legend_lines(meaning) for _, meaning in scales)
        frames = np.stack(
            [
                render.legend(method, 0.0, vmax, meaning, self.cmap.value, height, lines=lines)
                for vmax, meaning in scales
            ]
        )
        top, left, bar_h, bar_w = render.legend_ramp(scales[0][1], height, lines=lines)
        with legend.hold_sync():
            legend.set_image(frames, png=True)
            legend.set_maps(render.ramp_index(bar_h, bar_w)[None], [[0.0, 1.0]], [method])
            legend.map_box = [top, left, bar_h, bar_w]
        self._row_keys[i]["legend"] = key

    def _send_row_maps(
        self, i: int, method: str, sent: list, shown: dict[tuple, np.ndarray], factor: int
    ) -> list[tuple[str, str]]:
        """Row i's maps of every target in ``sent`` (uint8 colour indices at the
        image's size, of each map's own [0, peak]; the raw value index 255
        stands for; one gain per scale mode) and their captions (the pinned
        panel's, then the slider panel's), once for both panels; sent only
        when they changed (new maps, targets). Returns each target's (pinned,
        slider) caption."""
        _, pair = self._rows[i]
        keys = self._row_keys[i]
        h, w = self._picture.shape[:2]
        key = (method, self.layer.value, tuple(sent), self._generation, factor)
        if keys.get("maps") == key:
            return keys["captions"]
        known = method in map_methods.METHODS
        heats = [shown.get(self._key(method, c)) if known else None for c in sent]
        index = np.stack(
            [np.zeros((h, w), np.uint8) if m is None else render.colour_index(m) for m in heats]
        )
        row_peak = self._row_peak(method) if known else 0.0
        raws = [self._store.get(self._key(method, c)) if known else None for c in sent]
        tops = [float(raw.max()) if raw is not None else 0.0 for raw in raws]
        gains = [scale_gains(top, row_peak) for top in tops]
        # Maps above 1 also travel as raw values clipped at 1, drawn in 'raw' mode.
        over = [k for k, top in enumerate(tops) if top > 1.0]
        sources = [[k, k, k] for k in range(len(sent))]
        for j, k in enumerate(over):
            sources[k][SCALE_MODES.index("raw")] = len(sent) + j
        if over:
            clipped = [render.colour_index(np.clip(raws[k], 0.0, 1.0)) for k in over]
            index = np.concatenate([index, np.stack(clipped)])
            tops += [1.0] * len(over)
        captions = []
        for c, heat in zip(sent, heats):
            # Not "no evidence here" but "no positive evidence anywhere": say so,
            # or the bare photo reads as a map.
            zero = " | map all zero" if heat is not None and not heat.any() else ""
            captions.append(
                tuple(self._caption(method, c, what) + zero for what in ("pinned", "slider"))
            )
        width = w * factor
        labels = [f"{method}: {self._name(c)}" for c in sent]
        labels += [labels[k] + " (raw)" for k in over]
        blank = np.zeros((0, width, 3), np.uint8)
        strips = np.stack(
            [render.caption(blank, t[col], CAPTION_HEIGHT) for col in (0, 1) for t in captions]
        )
        with pair.hold_sync():
            if keys.get("image") != (self._generation, factor):
                pair.set_image(self._picture, png=True)
                pair.upscale = factor
            pair.set_maps(index, [[0.0, t] for t in tops], labels)
            pair.gains, pair.sources = gains, sources
            pair.set_captions(strips)
        keys.update(maps=key, captions=captions, image=(self._generation, factor))
        return captions

    def _render(self) -> None:
        """Bring the canvases to the controls' state from stored maps (no model
        pass): maps go out only when they changed, so a slider, pinned (among
        the offered targets), opacity or colour map move sends a few numbers."""
        with self._lock:
            pinned_key, slider_key = self.pinned.value, self._selected_key
            shown = self._display_maps()
            h, w = self._picture.shape[:2]
            factor = max(1, PANEL_SIZE // max(h, w))
            height = CAPTION_HEIGHT + h * factor
            sent = list(dict.fromkeys(self.ranked + [pinned_key]))
            at = {k: n for n, k in enumerate(sent)}
            slider_of = [-1] + [at[k] for k in self.ranked]
            pinned_of = [at.get(v, -1) for _, v in self.pinned.options]
            problems, shown_captions = [], []
            methods = list(self.methods.value) or ["(no method)"]
            for i, m in enumerate(methods):
                legend, pair = self._row(i)
                self._send_legend(i, m, height)
                captions = self._send_row_maps(i, m, sent, shown, factor)
                for c in (pinned_key, slider_key):
                    if m in self._errors and shown.get(self._key(m, c)) is None:
                        problems.append(f"{m}: {self._errors[m]}")
                with pair.hold_sync():
                    if pair.shown_of != pinned_of:
                        pair.shown_of = pinned_of
                    if pair.second_shown_of != slider_of:
                        pair.second_shown_of = slider_of
                    pair.shown, pair.second_shown = self.pinned.index, self.class_slider.value
                    pair.opacity = self.opacity.value
                for canvas in (legend, pair):
                    canvas.cmap = self.cmap.index
                    canvas.variant = self.normalize.index
                shown_captions.append((captions[at[pinned_key]][0], captions[at[slider_key]][1]))
            self._captions_shown = shown_captions
            self.status.value = "<br>".join(dict.fromkeys(problems))
            self._lay_out_rows(len(methods), h * factor)

    def _lay_out_rows(self, n: int, panel_width: int) -> None:
        """Show the first n rows of canvases in the grid, under the title line."""
        title = self._binary_title()
        if self._shown_rows != n:
            cells = [c for row in self._rows[:n] for c in row]
            with self.panels.hold_sync():
                self.panels.layout.grid_template_columns = " ".join(["max-content"] * 2)
                self.panels.children = cells
            self._shown_rows = n
        if title != self._title:
            if title:
                legend_w = self._rows[0][0].image_shape[1]
                width = legend_w + 2 * panel_width + 2 * PANEL_GAP
                band = render.caption(np.zeros((0, width, 3), np.uint8), title, TITLE_HEIGHT)
                self.title_image.value = render.to_png(band)
            self.title_image.layout.display = None if title else "none"
            self._title = title
        self._view = None  # composed when read
        self._drawn()

    def _compose_view(self) -> np.ndarray | None:
        """The grid as the page draws it: each canvas composed with the page's
        tables (a row: the legend, then the two panels of the pair canvas)."""
        if not self._shown_rows:
            return None
        rows = [[c.compose() for c in row] for row in self._rows[: self._shown_rows]]
        return render.panel_grid(rows, self._title, pad=PANEL_GAP, title_height=TITLE_HEIGHT)

    @property
    def captions(self) -> list[tuple[str, str]]:
        """Per method row, the (pinned, slider) panel captions shown now."""
        return list(self._captions_shown)

    def _panel_click(self, canvas: PictureCanvas, y: float, x: float) -> None:
        """A click on a row's panels (picture pixels): on a segmentation model it
        picks the region under it (as the picker does); on the slider's panel
        (the second) of any other model it pins the slider's target."""
        point = canvas.panel_point(y, x)
        if point is None:
            return
        panel, iy, ix = point
        if self.picker is not None:
            self.click(iy, ix)
        elif panel == 1 and self._selected_key in [v for _, v in self.pinned.options]:
            self.pinned.value = self._selected_key

    # ------------------------------------------------------------ observers

    def _refresh_if_stale(self) -> bool:
        """After the model's weights changed (training, set_weights, ...), rank
        and compute again from the current weights; True when it did."""
        if self.probe.weights_version() == self._version:
            return False
        self._reload(self._raw[0], keep_pinned=True)
        return True

    def _on_rank(self, change) -> None:
        if self._controls_being_set:
            return
        with weights_held():  # the staleness check and the cached lookups: one read
            if self._refresh_if_stale():
                return
            self._update_labels()
            self._render()

    def _on_pinned(self, change) -> None:
        if self._controls_being_set:
            return
        if self._refresh_if_stale():
            return
        self._recompute()

    def _on_compute_change(self, change) -> None:
        self._errors.clear()
        if self._refresh_if_stale():
            return
        self._recompute()

    def _on_redraw(self, change) -> None:
        with weights_held():
            if self._refresh_if_stale():
                return
            self._render()

    def _on_sign(self, change) -> None:
        """Raise or lower the predicted values: new targets, new maps."""
        pinned = self._choices.get(self.pinned.value)
        self._sign = int(change["new"])
        rank = self.class_slider.value
        with self._lock:
            self._set_choices()
            if pinned is not None:
                pinned = target_choices.with_sign(pinned.target, self._sign).key
            self._offer_choices(pinned, rank)
        self._recompute()

    # ------------------------------------------------------------ regions

    def click(self, y: float, x: float) -> Choice:
        """Pick the region under image pixel (y, x) of a segmentation output:
        the connected area of the class predicted there becomes the slider's
        first target, and its maps are computed. Returns the picked choice."""
        with self._lock:
            picked = target_choices.region_at(self.probe, self._raw, y, x)
            self._picked = picked
            self._set_choices()
            self._offer_choices(self.pinned.value, rank=1)
        self._recompute()
        return picked

    def _show_segmentation(self) -> None:
        """The image under its predicted classes, the picked region outlined."""
        index = target_choices.segmentation_output(self.probe)
        out = self.probe.outputs(self._raw)[index][0]
        picked = None if self._picked is None else self._picked.mask
        picture = render.label_overlay(self._picture, out.argmax(-1), picked)
        self.picker.show(render.to_png(picture), *picture.shape[:2])
