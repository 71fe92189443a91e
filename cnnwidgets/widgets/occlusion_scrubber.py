"""OcclusionScrubber: slide a patch over an image and watch the class probability.

Moving the patch (sliders ``x``/``y``, or a click on the picture) runs one
small forward pass, cached per position, and updates the occluded image, the
top-k class probabilities (bqplot ``bars``) and the drop at this position.
The full sensitivity map of the chosen class fills in coarse to fine in a
background job with a progress bar, laid over the image with the current
patch outlined.

The map panel and its legend are composed in the page
(:class:`~cnnwidgets.widgets.canvas.PictureCanvas`): the map travels once per
level as uint8 colour indices, and the opacity, the colour map and the patch
outline (``x``, ``y``, ``patch``, jslinked) are drawn by the page in its next
frame; the occluded image and its score need the forward pass and come from
the kernel.
"""

from __future__ import annotations

import threading
from typing import Any

import bqplot
import ipywidgets as widgets
import numpy as np
import traitlets

from cnnwidgets import render
from cnnwidgets.explain import target_choices
from cnnwidgets.explain.occlusion import (
    FILLS,
    occlude,
    occlusion_progressive,
    patch_positions,
)
from cnnwidgets.probe import as_probe
from cnnwidgets.probe.targets import Class
from cnnwidgets.widgets.base import ClickablePicture, ViewWidget
from cnnwidgets.widgets.canvas import PictureCanvas

__all__ = ["OcclusionScrubber"]

#: Panels are enlarged (nearest neighbour) to at least this many pixels across.
MIN_PANEL = 192
#: Colour maps offered by the ``cmap`` control.
CMAPS: tuple[str, ...] = ("jet", "viridis", "magma", "inferno", "turbo", "gray")
#: Pixels between the panels (``render.hstack``'s default).
PANEL_GAP = 4
#: Width of the patch outline on the enlarged map, pixels.
OUTLINE = 2


class OcclusionScrubber(ViewWidget):
    """Occlude one image patch by patch and see what the model loses.

    Args:
        model: a keras.Model or a :class:`cnnwidgets.Probe`.
        image: one raw image (H, W, C) (or (1, H, W, C)).
        classes: the class whose probability is followed: None (top-1), an int
            or a name; a list restricts the class menu to those classes (first
            one selected).
        patch: side of the hidden square in pixels.
        stride: grid step of the sensitivity map in pixels.
        class_names: names of the model's classes (ignored for a Probe).
        preprocess: function applied to raw pixels before the model (ignored for a Probe).
        fill: 'mean', 'zero', 'blur' or a number (see :func:`cnnwidgets.occlusion`).
        top_k: how many classes the bar chart shows.
        targets: follow these targets (:mod:`cnnwidgets.targets`, one or a
            list) instead of classes; on a model that is not a classifier
            the menu offers what its outputs offer (segmentation regions,
            labels, predicted values), and the scores followed are the
            targets' own (logits, predicted values), not probabilities.

    Controls (public attributes, drive them as a user would):
        x, y: IntSliders, column and row of the patch's TOP-LEFT corner.
        patch, stride: IntSliders in pixels.
        fill: Dropdown of fills.
        opacity, cmap: the map's opacity and colour map (drawn by the page).
        class_: Dropdown of classes (value = class index) or of targets
            (value = the target's key); ``class_`` with a trailing underscore
            because ``class`` is a Python keyword.
        bars: bqplot Bars, P(class) unoccluded vs occluded for the top-k classes.
        figure: bqplot Figure with the clickable occluded image.
        map_canvas, legend_canvas: the canvases of the map panel and its legend.

    State:
        occluded: (H, W, C) float32 image as the model sees it now (raw pixels).
        probabilities: (K,) float32 class probabilities of ``occluded``.
        drop: P(class | image) - P(class | occluded) at the current position.
        sensitivity: (H, W) float32 current occlusion map of ``class_`` (None
            before the first level arrives); ``map_stride`` its level's stride.

    ``view`` is the occluded image | the sensitivity overlay with the patch
    outlined, both captioned; ``wait()`` blocks until the map is complete.
    ``selected_class`` mirrors ``class_`` as a trait: link it to a
    :class:`GradCAMComparator`'s to follow the class its slider shows.
    """

    selected_class = traitlets.Int(
        0, help="Index of the class followed (one of the class menu's); set or link it."
    )
    selected_target = traitlets.Any(None, help="The target (cw.targets) followed now.")

    def __init__(
        self,
        model: Any,
        image: Any,
        classes: Any = None,
        patch: int = 16,
        stride: int = 8,
        class_names: Any = None,
        preprocess: Any = None,
        fill: Any = "mean",
        top_k: int = 5,
        targets: Any = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        probe = as_probe(model, class_names, preprocess)
        raw = probe.check_images(image)
        if targets is not None and classes is not None:
            raise TypeError("give classes= or targets=, not both")
        self._classifier = targets is None and probe.head.kind != "none"
        self._choices: dict = {}
        if self._classifier:
            chosen, offered = self._check_arguments(probe, raw, classes, patch, stride, fill)
        else:
            self._check_arguments(probe, raw, None, patch, stride, fill, False)
            if targets is None:
                choices = target_choices.offered_choices(probe, raw, max(int(top_k), 10))
            else:
                choices = target_choices.given_choices(probe, raw, targets)
            self._choices = {c.key: c for c in choices}
            offered = list(self._choices)
            chosen = offered[:1]
        self.probe = probe
        self._raw = raw
        h, w = raw.shape[1:3]
        self.top_k = int(top_k)
        self._scale = render.enlarge_factor((h, w), MIN_PANEL)
        self._lock = threading.RLock()
        self._maps: dict[tuple, np.ndarray] = {}
        self._generation = 0
        self.sensitivity: np.ndarray | None = None
        self.map_stride: int | None = None
        self._sent: dict[str, Any] = {}  # what the canvases and the left panel hold
        self._left: np.ndarray | None = None
        self._shown_map_key: tuple | None = None
        self._build_controls(h, w, patch, stride, fill, chosen, offered)
        self._build_bars()
        self._lay_out()
        self._wire()
        if self._classifier:
            self._mirror(self.class_, "selected_class")
        self._update_live()
        self._start_map()

    @staticmethod
    def _check_arguments(
        probe: Any,
        raw: np.ndarray,
        classes: Any,
        patch: int,
        stride: int,
        fill: Any,
        check_classes: bool = True,
    ) -> tuple[np.ndarray, list[int]] | None:
        """Validate the image, patch, stride, fill and classes up front; (chosen, offered)."""
        if len(raw) != 1:
            raise ValueError(
                f"OcclusionScrubber shows one image, got a batch of {len(raw)}; pass images[i]"
            )
        h, w = raw.shape[1:3]
        patch_positions(h, w, patch, stride)  # validates patch and stride (ValueError)
        occlude(raw[0], 0, 0, patch, fill)  # validates fill
        if not check_classes:
            return None
        probe.predict(raw)  # validates the image once, up front
        chosen = probe.resolve_classes(classes, raw)[0]
        if isinstance(classes, (list, tuple, np.ndarray)):
            offered = [int(c) for c in chosen]
        else:
            offered = list(range(probe.num_classes))
        return chosen, offered

    def _build_controls(
        self, h: int, w: int, patch: int, stride: int, fill: Any, chosen: Any, offered: list
    ) -> None:
        probe = self.probe
        side = min(h, w)
        style = {"description_width": "initial"}
        self.x = widgets.IntSlider(
            value=(w - patch) // 2, min=0, max=w - patch, description="x", style=style
        )
        self.y = widgets.IntSlider(
            value=(h - patch) // 2, min=0, max=h - patch, description="y", style=style
        )
        self.patch = widgets.IntSlider(
            value=patch, min=1, max=side, description="patch", style=style
        )
        self.stride = widgets.IntSlider(
            value=stride, min=1, max=side, description="stride", style=style
        )
        fill_options = [(f, f) for f in FILLS]
        if not (isinstance(fill, str) and fill in FILLS):
            fill_options.append((str(fill), fill))
        self.fill = widgets.Dropdown(options=fill_options, value=fill, description="fill")
        if self._classifier:
            options = [(probe.class_names[i], i) for i in offered]
            chosen = int(chosen[0])
        else:
            options = [(c.label, c.key) for c in self._choices.values()]
            chosen = chosen[0]
        self.class_ = widgets.Dropdown(
            options=options, value=chosen, description="class" if self._classifier else "target"
        )
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="map")
        self.status = widgets.HTML()

        self.opacity = widgets.FloatSlider(
            value=0.5, min=0.0, max=1.0, step=0.05, description="opacity", style=style
        )
        self.cmap = widgets.Dropdown(options=list(CMAPS), value="jet", description="colours")
        # The view's panels: the occluded image (kernel), the map over the image
        # with the patch outlined and its legend (canvases, drawn in the page).
        self.left_image = widgets.Image(format="png")
        self.map_canvas = PictureCanvas(
            cmaps=CMAPS, mode="overlay", upscale=self._scale, opacity=0.5, mark_width=OUTLINE
        )
        self.legend_canvas = PictureCanvas(cmaps=CMAPS, mode="overlay", opacity=1.0)
        self.map_canvas.on_click(self._map_click)
        self._page_links = [
            widgets.jslink((self.x, "value"), (self.map_canvas, "mark_x")),
            widgets.jslink((self.y, "value"), (self.map_canvas, "mark_y")),
            widgets.jslink((self.patch, "value"), (self.map_canvas, "mark_size")),
            widgets.jslink((self.opacity, "value"), (self.map_canvas, "opacity")),
            widgets.jslink((self.cmap, "index"), (self.map_canvas, "cmap")),
            widgets.jslink((self.cmap, "index"), (self.legend_canvas, "cmap")),
        ]
        self.panels = widgets.GridBox(
            [self.left_image, self.map_canvas, self.legend_canvas],
            layout=widgets.Layout(
                grid_gap=f"{PANEL_GAP}px", grid_template_columns="max-content " * 3
            ),
        )

        # The occluded input, big enough to click: a click centres the patch there.
        # (Not ``self.picture``: that would show ``view``, the two panels below.)
        self.input_picture = ClickablePicture(self.click, size=260)
        self.image_mark = self.input_picture.mark
        self.figure = self.input_picture.figure

    def _build_bars(self) -> None:
        bx = bqplot.OrdinalScale()
        # Probabilities on [0, 1]; target scores (logits, values) on their own range.
        by = bqplot.LinearScale(min=0.0, max=1.0) if self._classifier else bqplot.LinearScale()
        self.bars = bqplot.Bars(
            x=["-"],
            y=[[0.0], [0.0]],
            scales={"x": bx, "y": by},
            type="grouped",
            colors=["#9e9e9e", "#d62728"],
            labels=["unoccluded", "occluded"],
            display_legend=True,
        )
        self.bars_figure = bqplot.Figure(
            marks=[self.bars],
            axes=[
                bqplot.Axis(scale=bx),
                bqplot.Axis(
                    scale=by,
                    orientation="vertical",
                    label="P(class)" if self._classifier else "target score",
                ),
            ],
            title="top classes" if self._classifier else "targets",
            legend_location="top-right",
            layout=widgets.Layout(width="360px", height="260px"),
        )

    def _lay_out(self) -> None:
        self.children = [
            widgets.HBox([self.x, self.y]),
            widgets.HBox([self.patch, self.stride, self.fill, self.class_]),
            widgets.HBox([self.opacity, self.cmap]),
            widgets.HBox([self.figure, self.bars_figure]),
            self.panels,
            widgets.HBox([self.progress, self.status]),
        ]

    def _wire(self) -> None:
        for control in (self.x, self.y):
            control.observe(self._on_move, names="value")
        self.patch.observe(self._on_patch, names="value")
        self.stride.observe(self._on_map_params, names="value")
        self.fill.observe(self._on_fill, names="value")
        self.class_.observe(self._on_class, names="value")
        self.opacity.observe(self._on_style, names="value")
        self.cmap.observe(self._on_style, names="value")

    @traitlets.validate("selected_class")
    def _valid_class(self, proposal) -> int:
        cls = int(proposal["value"])
        if not self._classifier:
            raise ValueError("this scrubber follows targets, not classes: set class_.value")
        offered = [v for _, v in self.class_.options]
        if cls not in offered:
            names = [self.probe.class_names[c] for c in offered[:10]]
            raise ValueError(
                f"class {cls} is not in the scrubber's class menu; it offers {offered[:10]} "
                f"({names}); pass classes=[...] to offer others"
            )
        return cls

    # ------------------------------------------------------------ controls

    def click(self, y: float, x: float) -> None:
        """Centre the patch on image pixel (row y, column x), as a click does.

        Every widget's ``click`` takes (y, x), row first, as numpy indexes."""
        p = self.patch.value
        h, w = self._raw.shape[1:3]
        self.move(
            int(np.clip(round(x - p / 2), 0, w - p)), int(np.clip(round(y - p / 2), 0, h - p))
        )

    def move(self, x: int, y: int) -> None:
        """Put the patch's top-left corner at (x, y) with one update."""
        with self._setting_controls(), self.hold_sync():
            self.x.value = int(x)
            self.y.value = int(y)
        self._update_live()

    def _on_move(self, _change: Any = None) -> None:
        if not self._controls_being_set:
            self._update_live()
            if self._shown_map_key != self._map_key():  # the weights changed since
                self._start_map()

    def _on_patch(self, change: Any) -> None:
        h, w = self._raw.shape[1:3]
        p = int(change["new"])
        with self._setting_controls():
            # Keep the patch inside the image: shrink the sliders' ranges first.
            self.x.value = min(self.x.value, w - p)
            self.y.value = min(self.y.value, h - p)
            self.x.max = w - p
            self.y.max = h - p
        self._update_live()
        self._start_map()

    def _on_fill(self, _change: Any) -> None:
        self._update_live()
        self._start_map()

    def _on_class(self, _change: Any) -> None:
        self._update_live()
        self._start_map()

    def _on_map_params(self, _change: Any) -> None:
        self._start_map()

    def _on_style(self, _change: Any) -> None:
        """Opacity or colour map: the page has drawn it; the kernel's canvases
        follow (no picture is sent)."""
        with self._lock:
            self._style_canvases()
            self._view = None
            self._drawn()

    def _style_canvases(self) -> None:
        canvas = self.map_canvas
        with canvas.hold_sync():
            canvas.mark_x, canvas.mark_y = self.x.value, self.y.value
            canvas.mark_size = self.patch.value
            canvas.opacity = self.opacity.value
            canvas.cmap = self.legend_canvas.cmap = self.cmap.index

    def _map_click(self, y: float, x: float) -> None:
        """A click on the map panel (picture pixels) centres the patch there too."""
        point = self.map_canvas.image_point(y, x)
        if point is not None:
            self.click(*point)

    # ------------------------------------------------------------ live pass

    def _fill_key(self) -> Any:
        f = self.fill.value
        return f if isinstance(f, str) else float(f)

    def _scores(self, images: np.ndarray) -> tuple[np.ndarray, list[str], int]:
        """(values of what the bars show (K,), their names, the followed one's
        position): class probabilities, or the menu's target scores."""
        if self._classifier:
            return self.probe.predict(images)[0], self.probe.class_names, self.class_.value
        choices = list(self._choices.values())
        values = self.probe.target_scores(images, [c.target for c in choices])[0]
        return values, [c.label for c in choices], list(self._choices).index(self.class_.value)

    def _update_live(self) -> None:
        """Occlude at the current position, one (cached) forward pass, redraw."""
        x, y, p = self.x.value, self.y.value, self.patch.value
        occluded = occlude(self._raw[0], x, y, p, self.fill.value)
        if not self._classifier:
            self._update_live_target(occluded, x, y)
            return
        c = self.class_.value
        self.selected_target = Class(c)
        # Both cached by the probe under the current weights version: after
        # training, the next move shows the new model.
        probs = self.probe.predict(occluded[None])[0]
        base = self.probe.predict(self._raw)[0]
        with self._lock:
            self.occluded = occluded
            self.probabilities = probs
            self.drop = float(base[c] - probs[c])
        names = self.probe.class_names
        top = np.argsort(-probs, kind="stable")[: self.top_k]
        with self.bars.hold_sync():
            self.bars.x = [names[i] for i in top]
            self.bars.y = np.stack([base[top], probs[top]]).astype(np.float64)
        self.status.value = (
            f"P({names[c]}) {base[c]:.3f} &rarr; {probs[c]:.3f} with the patch at "
            f"x={x}, y={y}: drop <b>{self.drop:+.3f}</b>"
        )
        self._redraw()

    def _update_live_target(self, occluded: np.ndarray, x: int, y: int) -> None:
        """The target mode of :meth:`_update_live`: the followed target's score
        with and without the patch, and the menu's scores in the bars."""
        probs, names, c = self._scores(occluded[None])
        base, _, _ = self._scores(self._raw)
        choice = self._choices[self.class_.value]
        self.selected_target = choice.target
        with self._lock:
            self.occluded = occluded
            self.probabilities = probs
            self.drop = float(base[c] - probs[c])
        top = np.argsort(-base, kind="stable")[: self.top_k]
        if c not in top:
            top = np.append(top[: self.top_k - 1], c)
        with self.bars.hold_sync():
            self.bars.x = [names[i] for i in top]
            self.bars.y = np.stack([base[top], probs[top]]).astype(np.float64)
        self.status.value = (
            f"{choice.label}: score {base[c]:.3f} &rarr; {probs[c]:.3f} with the patch at "
            f"x={x}, y={y}: drop <b>{self.drop:+.3f}</b>"
        )
        self._redraw()

    # ------------------------------------------------------------ map job

    def _map_key(self) -> tuple:
        return (
            self.patch.value,
            self.stride.value,
            self._fill_key(),
            self.class_.value,
            self.probe.weights_version(),
        )

    def _start_map(self) -> None:
        key = self._map_key()
        self._shown_map_key = key
        with self._lock:
            self._generation += 1
            generation = self._generation
        if key in self._maps:
            if self._job is not None:
                self._job.cancel()
            self.progress.value = self.progress.max
            self._set_map(generation, self._maps[key], key[1])
            return
        patch, stride, _, cls, _ = key
        fill = self.fill.value
        if self._classifier:
            what = {"classes": [cls]}
        else:
            what = {"target": [self._choices[cls].target]}

        def work(progress):
            final = None
            for level in occlusion_progressive(
                self.probe,
                self._raw,
                patch=patch,
                stride=stride,
                fill=fill,
                progress=progress,
                **what,
            ):
                final = level.maps[0, 0]
                self._set_map(generation, final, level.stride)
            return final

        def done(result):
            self._maps[key] = result

        self.progress.value = 0
        self._start_job(work, done, self.progress)

    def _set_map(self, generation: int, sensitivity: np.ndarray, stride: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # a newer map was asked for
            self.sensitivity = sensitivity
            self.map_stride = int(stride)
            self._redraw()

    # ------------------------------------------------------------ drawing

    def _map_text(self) -> str:
        sens = self.sensitivity
        if sens is None:
            return "occlusion map: computing"
        return f"drop, max {float(sens.max()):.2f} (stride {self.map_stride})"

    def _send_map(self) -> None:
        """The map panel's canvas: the photo once, the map (uint8 indices at the
        image's size, [0, peak]) and its caption when the map changed."""
        canvas, sens = self.map_canvas, self.sensitivity
        if self._sent.get("photo") is None:
            canvas.set_image(render.to_rgb_uint8(self._raw[0]), png=True)
            self._sent["photo"] = True
        if self._sent.get("map") is sens:
            return
        h, w = self._raw.shape[1:3]
        with canvas.hold_sync():
            if sens is None:  # nothing over the photo yet: a blank map under threshold 1
                canvas.set_maps(np.zeros((1, h, w), np.uint8), [[0.0, 0.0]], ["computing"])
                canvas.threshold = 1.0
            else:
                peak = float(sens.max())
                heat = np.clip(sens / peak, 0, 1) if peak > 0 else np.zeros_like(sens)
                canvas.set_maps(render.colour_index(heat)[None], [[0.0, max(peak, 0.0)]], ["drop"])
                canvas.threshold = 0.0
            strip = render.caption(np.zeros((0, w * self._scale, 3), np.uint8), self._map_text())
            canvas.set_captions(strip[None])
        self._sent["map"] = sens

    def _send_legend(self, height: int) -> None:
        """The legend canvas: the colour bar (recoloured by the page) and its meaning."""
        sens = self.sensitivity
        peak = max(float(sens.max()) if sens is not None else 0.0, 0.0)
        if self._classifier:
            meaning = f"fall of P({self.probe.class_names[self.class_.value]}) when hidden"
        else:
            meaning = f"fall of the score of {self._choices[self.class_.value].label} when hidden"
        key = (peak, meaning, height)
        if self._sent.get("legend") == key:
            return
        picture = render.legend("occlusion", 0.0, peak, meaning, self.cmap.value, height)
        top, left, bar_h, bar_w = render.legend_ramp(meaning, height)
        canvas = self.legend_canvas
        with canvas.hold_sync():
            canvas.set_image(picture, png=True)
            canvas.set_maps(render.ramp_index(bar_h, bar_w)[None], [[0.0, peak]], ["occlusion"])
            canvas.map_box = [top, left, bar_h, bar_w]
        self._sent["legend"] = key

    def _redraw(self) -> None:
        with self._lock:
            c = self.class_.value
            s = self._scale
            small = render.to_rgb_uint8(self.occluded)
            if self._sent.get("input") is not self.occluded:  # a new patch position
                self.input_picture.show(render.to_png(small), *small.shape[:2])
                self._sent["input"] = self.occluded
            left = render.caption(render.enlarge(small, s), self._followed_text(c))
            if self._left is None or not np.array_equal(left, self._left):
                self.left_image.value = render.to_png(left)
                self._left = left
            self._send_map()
            self._send_legend(left.shape[0])
            self._style_canvases()
            self._view = None  # composed when read
            self._drawn()

    def _compose_view(self) -> np.ndarray | None:
        """The occluded image | the map over the image, patch outlined | the
        legend: the canvases composed with the page's tables."""
        if self._left is None:
            return None
        right, legend = self.map_canvas.compose(), self.legend_canvas.compose()
        return render.hstack([self._left, right, legend], pad=PANEL_GAP)

    def _followed_text(self, key: Any) -> str:
        """The caption of the occluded image: the followed score now."""
        if self._classifier:
            return f"P({self.probe.class_names[key]}) {self.probabilities[key]:.2f}"
        i = list(self._choices).index(key)
        return f"{self._choices[key].label}: {self.probabilities[i]:.3g}"
