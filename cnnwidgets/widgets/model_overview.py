"""ModelOverview: ``model.summary()`` made alive.

Every layer with its type, output shape, parameters and receptive field;
nested models folded behind a toggle each; layers the other widgets can
inspect marked with '*'. Pick a layer with the public ``layer`` control and
open it in an ActivationBrowser, or make it the target layer of a
GradCAMComparator. The table itself comes from the pure functions of
:mod:`cnnwidgets.explain.summary`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np

from cnnwidgets import render
from cnnwidgets.explain.summary import (
    COLUMNS,
    SummaryRow,
    format_rf,
    format_shape,
    format_table,
    html_table,
    summary_rows,
    table_cells,
    total_params,
    visible_rows,
)
from cnnwidgets.probe import Probe, as_probe
from cnnwidgets.widgets.base import ViewWidget

__all__ = ["ModelOverview", "render_table"]

def render_table(
    rows: Sequence[SummaryRow],
    expanded: Sequence[str] = (),
    selected: str | None = None,
    title: str = "",
) -> np.ndarray:
    """Draw the summary table as a picture.

    Args:
        rows: from :func:`cnnwidgets.explain.summary.summary_rows`.
        expanded: nested models whose layers are shown.
        selected: path of the highlighted row.
        title: a first line above the table.

    Returns:
        (H, W, 3) uint8: one line per visible row under a grey header; nested
        models on a cream band, the selected row on a blue band, inspectable
        layers in dark blue, the others in grey.
    """
    colours = render.TABLE_COLOURS
    shown = visible_rows(rows, expanded)
    cells = [list(COLUMNS)] + [table_cells(r, expanded) for r in shown]
    fills, bands = [colours["text"]], [None]
    for row in shown:
        fills.append(
            colours["text"] if row.is_model
            else colours["accent"] if row.inspectable
            else colours["muted"]
        )
        bands.append(
            colours["selected"] if row.name == selected
            else colours["band"] if row.is_model
            else None
        )
    footer = (
        f"Total params: {total_params(rows):,}    * = inspectable (H, W, C) layer;"
        "  receptive field: size px / jump"
    )
    # Column 3 holds the parameter counts: right-aligned.
    return render.table(cells, fills, bands, title=title, footer=footer, right_align=(3,))


def _activation_browser_class() -> type:
    """The ActivationBrowser class, imported on first use."""
    from cnnwidgets.widgets.activation_browser import ActivationBrowser

    return ActivationBrowser


def _option_values(dropdown: Any) -> list:
    values = []
    for opt in getattr(dropdown, "options", ()):
        values.append(opt[1] if isinstance(opt, (tuple, list)) and len(opt) == 2 else opt)
    return values


class ModelOverview(ViewWidget):
    """The model's layers as a live table; a starting point for the other widgets.

    Args:
        model: a keras.Model or cnnwidgets.Probe (never changed).
        images: optional raw images (N, H, W, C) for the ActivationBrowser
            that ``open_browser`` opens.
        comparator: optional GradCAMComparator (anything with a ``layer``
            Dropdown) whose target layer ``to_comparator`` sets.
        class_names: as for :class:`cnnwidgets.Probe`.
        preprocess: as for :class:`cnnwidgets.Probe`.
        layer: the initially selected layer (default: the last conv layer).
        expanded: True opens every nested model, False folds them all, or a
            list of nested-model paths to open.

    Controls (public, drive them as a user would):
        layer: Dropdown of layer paths.
        folds: {nested model path: ToggleButton}, True = its layers shown.
        open_browser: Button; opens ``layer`` in an ActivationBrowser, kept
            in ``browser`` and shown below the table.
        to_comparator: Button; sets ``comparator.layer`` to ``layer``.
        message: HTML with the last action's result or what is missing.

    ``view`` is the table picture, (H, W, 3) uint8, selected row highlighted.
    """

    def __init__(
        self,
        model: Any,
        images: Any = None,
        comparator: Any = None,
        class_names: Sequence[str] | None = None,
        preprocess: Any = None,
        layer: str | None = None,
        expanded: bool | Sequence[str] = False,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.probe: Probe = as_probe(model, class_names=class_names, preprocess=preprocess)
        self.images = None if images is None else self.probe.check_images(images)
        self.comparator = comparator
        self.browser: Any = None
        self.rows: list[SummaryRow] = summary_rows(self.probe)
        self._by_name = {r.name: r for r in self.rows}
        options, start = self._check_layer(layer)
        opened = self._check_expanded(expanded)
        self._build_controls(options, start, opened)
        self._wire()
        self._lay_out()
        self._reveal(start)
        self._refresh()

    def _check_layer(self, layer: str | None) -> tuple[list[tuple[str, str]], str]:
        """The layer Dropdown's (label, path) options and the starting path."""
        options = [
            (
                ("  " * r.depth) + r.name.replace("/", " / ") + ("  *" if r.inspectable else ""),
                r.name,
            )
            for r in self.rows
            if not r.is_model and r.kind != "InputLayer"
        ]
        if layer is None:
            try:
                start = self.probe.last_conv_layer
            except ValueError:
                start = options[0][1]
        else:
            start = self.probe.resolve(layer)
        if start not in self._by_name or self._by_name[start].is_model:
            raise ValueError(f"layer {start!r} is a nested model; pick one of its layers")
        return options, start

    def _check_expanded(self, expanded: bool | Sequence[str]) -> set[str]:
        """Paths of the nested models that start unfolded."""
        nested = [r for r in self.rows if r.is_model]
        if isinstance(expanded, bool):
            opened = {r.name for r in nested} if expanded else set()
        else:
            opened = {self.probe.resolve(e) for e in expanded}
        return opened

    def _build_controls(
        self, options: list[tuple[str, str]], start: str, opened: set[str]
    ) -> None:
        self.layer = widgets.Dropdown(
            options=options,
            value=start,
            description="Layer",
            layout=widgets.Layout(width="max-content"),
        )
        nested = [r for r in self.rows if r.is_model]
        self.folds: dict[str, widgets.ToggleButton] = {}
        for r in nested:
            n_inner = sum(1 for x in self.rows if x.name.startswith(r.name + "/"))
            self.folds[r.name] = widgets.ToggleButton(
                value=r.name in opened,
                description=f"{r.name} ({n_inner} layers)",
                tooltip=f"show or hide the layers of the nested model {r.name}",
                icon="folder-open" if r.name in opened else "folder",
                layout=widgets.Layout(width="auto"),
            )

        self.open_browser = widgets.Button(
            description="Open in ActivationBrowser", icon="th", layout=widgets.Layout(width="auto")
        )
        self.to_comparator = widgets.Button(
            description="Use as Grad-CAM layer",
            icon="crosshairs",
            layout=widgets.Layout(width="auto"),
        )
        self.details = widgets.HTML()
        self.message = widgets.HTML()
        self.panel = widgets.VBox()

    def _wire(self) -> None:
        self.layer.observe(self._on_layer, names="value")
        for path, toggle in self.folds.items():
            toggle.observe(lambda change, p=path: self._on_fold(p, change), names="value")
        self.open_browser.on_click(self._on_open_browser)
        self.to_comparator.on_click(self._on_to_comparator)

    def _lay_out(self) -> None:
        header = widgets.HTML(f"<b>{self._title()}</b>")
        folds = []
        if self.folds:  # a widget made and never shown would stay registered
            folds = [
                widgets.HBox(
                    [widgets.Label("Nested models:")] + list(self.folds.values()),
                    layout=widgets.Layout(flex_flow="row wrap"),
                )
            ]
        controls = widgets.HBox([self.layer, self.open_browser, self.to_comparator])
        self.children = (
            [header] + folds + [self.image, controls, self.details, self.message, self.panel]
        )


    # ------------------------------------------------------------ state

    @property
    def expanded(self) -> list[str]:
        """Paths of the nested models whose layers are shown."""
        return [p for p, t in self.folds.items() if t.value]

    @property
    def selected_row(self) -> SummaryRow:
        """The summary row of the selected layer."""
        return self._by_name[self.layer.value]

    def _title(self) -> str:
        shape = format_shape(tuple(self.probe.input_shape[1:]))
        head = self.probe.head
        return (
            f"{self.probe.model.name}: input {shape}, {total_params(self.rows):,} params, "
            f"{head.kind} head with {head.num_classes} classes"
        )

    def _reveal(self, path: str) -> None:
        """Open the nested models around a selected layer so its row is visible."""
        parts = path.split("/")
        for k in range(1, len(parts)):
            outer = "/".join(parts[:k])
            if outer in self.folds and not self.folds[outer].value:
                self.folds[outer].value = True

    # ---------------------------------------------------------- drawing

    def _refresh(self) -> None:
        row = self.selected_row
        self._show(render_table(self.rows, self.expanded, row.name, title=self._title()))
        rf = row.rf
        field = (
            "not defined"
            if rf is None
            else f"{format_rf(rf)} (size / jump in input pixels; unit (0, 0) centred at "
            f"({rf.start[0]:g}, {rf.start[1]:g}))"
        )
        use = (
            "inspectable: ActivationBrowser, FilterGallery, Grad-CAM"
            if row.inspectable
            else "not inspectable (no (H, W, C) output)"
        )
        self.details.value = (
            f"<b>{row.name}</b> &middot; {row.kind} &middot; output {format_shape(row.shape)} "
            f"&middot; {row.params:,} params &middot; receptive field {field} &middot; "
            f"inputs: {', '.join(row.parents) or '-'} &middot; {use}"
        )
        no_images = self.images is None
        self.open_browser.disabled = not row.inspectable or no_images
        self.open_browser.tooltip = (
            "pass images= to ModelOverview to open layers"
            if no_images
            else "open this layer in an ActivationBrowser"
        )
        self.to_comparator.disabled = not row.inspectable or self.comparator is None
        self.to_comparator.tooltip = (
            "pass comparator= to ModelOverview to drive a GradCAMComparator"
            if self.comparator is None
            else "make this layer the comparator's Grad-CAM layer"
        )

    # ---------------------------------------------------------- events

    def _on_layer(self, change: dict) -> None:
        self.message.value = ""
        self._reveal(change["new"])
        self._refresh()

    def _on_fold(self, path: str, change: dict) -> None:
        self.folds[path].icon = "folder-open" if change["new"] else "folder"
        if not change["new"] and self.layer.value.startswith(path + "/"):
            # The selected row is being hidden: move the selection to the first layer
            # after the nested model, so the highlight stays on a visible row.
            after = [
                r.name
                for r in self.rows[self.rows.index(self._by_name[path]) + 1 :]
                if not r.name.startswith(path + "/") and not r.is_model
            ]
            if after:
                self.layer.value = after[0]  # _on_layer redraws
                return
        self._refresh()

    def _on_open_browser(self, _button: Any = None) -> Any:
        """Open the selected layer in an ActivationBrowser below the table."""
        row = self.selected_row
        if self.images is None:
            self.message.value = "No images: create the overview with images=... to browse layers."
            return None
        if not row.inspectable:
            self.message.value = f"{row.name} has no (H, W, C) output to browse."
            return None
        browser_cls = _activation_browser_class()
        if self.browser is not None and hasattr(self.browser, "layer"):
            if row.name in _option_values(self.browser.layer):
                self.browser.layer.value = row.name
                self.message.value = f"ActivationBrowser shows {row.name}."
                return self.browser
        self.browser = browser_cls(self.probe, self.images, layer=row.name)
        self.panel.children = (self.browser,)
        self.message.value = f"ActivationBrowser opened on {row.name}."
        return self.browser

    def _on_to_comparator(self, _button: Any = None) -> None:
        """Make the selected layer the comparator's Grad-CAM target layer."""
        row = self.selected_row
        if self.comparator is None:
            self.message.value = "No comparator: pass comparator=GradCAMComparator(...)."
            return
        dropdown = getattr(self.comparator, "layer", None)
        if dropdown is None:
            raise TypeError("comparator has no 'layer' control; pass a GradCAMComparator")
        values = _option_values(dropdown)
        target = row.name if (not values or row.name in values) else None
        if target is None:  # the comparator may list short names
            short = [v for v in values if isinstance(v, str) and v == row.short_name]
            target = short[0] if len(short) == 1 else None
        if target is None:
            self.message.value = f"The comparator cannot use {row.name} as its Grad-CAM layer."
            return
        dropdown.value = target
        self.message.value = f"Grad-CAM layer set to {row.name}."

    # ---------------------------------------------------------- output

    def summary(self) -> str:
        """The table as text (like ``model.summary()``), all nested models open."""
        return format_table(self.rows, title=self._title())

    def _repr_mimebundle_(self, **kwargs):
        data = dict(super()._repr_mimebundle_(**kwargs))
        data["text/html"] = html_table(
            self.rows, self.expanded, self.layer.value, title=self._title()
        )
        data["text/plain"] = format_table(self.rows, self.expanded, title=self._title())
        return data
