"""DatasetExplorer: a paged grid of a dataset's images with their heatmaps,
read from a store made by :func:`cnnwidgets.explain_dataset`.

    store = cw.explain_dataset(model, (images, labels), out="maps.zarr", boxes=boxes)
    explorer = cw.DatasetExplorer("maps.zarr", model=model)
    explorer.sort.value = "energy_outside"     # where does it look off the object?
    explorer.show = "mistakes"                 # only the wrong answers (a trait)
    explorer.click(y, x)                       # open a thumbnail in a GradCAMComparator

Sorting and filtering read whole per-image columns (a few bytes per image),
once; a page reads its own rows only, so a store of a million images opens
as fast as one of a hundred (metadata plus one page).
"""

from __future__ import annotations

import pathlib
from typing import Any

import bqplot
import ipywidgets as widgets
import numpy as np
import traitlets

from cnnwidgets import render
from cnnwidgets.dataset.store import DatasetStore
from cnnwidgets.explain.cam import normalize_maps
from cnnwidgets.probe import Probe
from cnnwidgets.widgets.base import ClickablePicture, ViewWidget
from cnnwidgets.widgets.gradcam_comparator import GradCAMComparator

__all__ = ["DatasetExplorer", "SORT_KEYS", "SHOW"]

#: Sort keys (label, store array) offered when the store holds the array.
SORT_KEYS: tuple[tuple[str, str], ...] = (
    ("image number", "index"),
    ("confidence", "confidence"),
    ("loss", "loss"),
    ("energy outside object", "energy_outside"),
    ("energy inside object", "energy_inside"),
)

#: Values of ``show``.
SHOW = ("all", "mistakes", "correct")

_RIGHT, _WRONG, _UNKNOWN = (40, 170, 60), (220, 40, 40), (150, 150, 150)
_TITLE = 18  # height of the title band above the grid
_PAD = 2


class DatasetExplorer(ViewWidget):
    """Browse a dataset store: thumbnails with heatmaps, sorted and filtered.

    Args:
        path: a store written by :func:`cnnwidgets.explain_dataset` (or an
            open :class:`~cnnwidgets.dataset.store.DatasetStore`).
        model: the keras.Model (or Probe) that made it, to open a clicked
            thumbnail in a :class:`~cnnwidgets.GradCAMComparator`; optional.
        per_page: thumbnails per page. Each shows the map of the first
            class the store explains (the predicted class by default).
        cols: thumbnails per row.
        tile: thumbnail side in pixels.
        opacity: the heatmap's opacity over the image.
        cmap: the heatmap's colour map.
        preprocess: as for the comparator's Probe (when ``model`` is a keras.Model).
        **kwargs: passed to the ipywidgets.VBox (``layout=...``).

    State (traitlets; observe or link them): ``page``, ``sort_by``,
    ``descending``, ``true_class``, ``predicted_class``, ``show``,
    ``selected``. Controls (public, drive them as a user would): ``sort``,
    ``order``, ``true_filter``, ``predicted_filter``, ``show_filter``,
    ``page_slider``; ``confusion`` is a bqplot heat map (click a cell to
    filter by that true and predicted class); ``click(y, x)`` opens the
    thumbnail under a view pixel, as a mouse click on the grid does.
    """

    page = traitlets.Int(0, help="Page of the grid shown, from 0.")
    sort_by = traitlets.Unicode(
        "index",
        help="Store array the grid is sorted by: index, confidence, loss, "
        "energy_outside or energy_inside.",
    )
    descending = traitlets.Bool(True, help="Largest values first (for sort keys other than index).")
    true_class = traitlets.Int(-1, help="Show only images of this true class; -1 for all.")
    predicted_class = traitlets.Int(
        -1, help="Show only images predicted as this class; -1 for all."
    )
    show = traitlets.Unicode("all", help="Which answers to show: 'all', 'mistakes' or 'correct'.")
    selected = traitlets.Int(-1, help="Row of the store opened in the comparator; -1 for none.")

    def __init__(
        self,
        path: str | pathlib.Path | DatasetStore,
        model: Any = None,
        per_page: int = 24,
        cols: int = 6,
        tile: int = 96,
        opacity: float = 0.5,
        cmap: str = "jet",
        preprocess: Any = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.store = path if isinstance(path, DatasetStore) else DatasetStore(path)
        for name, value in (("per_page", per_page), ("cols", cols), ("tile", tile)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.per_page, self.cols, self.tile_px = int(per_page), int(cols), int(tile)
        self.opacity, self.cmap = float(opacity), cmap
        self._model, self._preprocess = model, preprocess
        self._columns: dict[str, np.ndarray] = {}
        self._order: np.ndarray | None = None  # None: every row in store order
        self._page_rows = np.zeros(0, np.int64)
        self.title = ""  # the line above the grid, as text
        self.captions: list[str] = []  # each thumbnail's caption on the page, as text
        names = self.store.class_names
        self.class_names = names
        meta = self.store.meta
        summary = meta.get("summary") or {}
        self.has_labels = bool(summary.get("labelled", meta.get("has_labels", False)))

        keys = [(label, key) for label, key in SORT_KEYS if key == "index" or key in self.store]
        if not self.has_labels:
            keys = [k for k in keys if k[1] != "loss"]
        classes = [("all", -1)] + [(n, i) for i, n in enumerate(names)]
        self.sort = widgets.Dropdown(options=keys, value="index", description="sort by")
        self.order = widgets.ToggleButtons(
            options=[("high first", True), ("low first", False)],
            value=True,
            description="order",
            style={"button_width": "80px"},
        )
        self.true_filter = widgets.Dropdown(options=classes, value=-1, description="true class")
        self.predicted_filter = widgets.Dropdown(options=classes, value=-1, description="predicted")
        self.show_filter = widgets.ToggleButtons(
            options=list(SHOW), value="all", description="show", style={"button_width": "80px"}
        )
        self.page_slider = widgets.IntSlider(value=0, min=0, max=0, description="page")
        self.status = widgets.HTML()
        self.message = widgets.HTML()
        self.picture = ClickablePicture(self.click)
        self.detail = widgets.VBox()
        self.comparator = None
        self._build_confusion()
        widgets.link((self.sort, "value"), (self, "sort_by"))
        widgets.link((self.order, "value"), (self, "descending"))
        widgets.link((self.true_filter, "value"), (self, "true_class"))
        widgets.link((self.predicted_filter, "value"), (self, "predicted_class"))
        widgets.link((self.show_filter, "value"), (self, "show"))
        widgets.link((self.page_slider, "value"), (self, "page"))
        if not self.has_labels:
            self.true_filter.disabled = self.show_filter.disabled = True
        self.children = [
            widgets.HBox([self.sort, self.order]),
            widgets.HBox([self.true_filter, self.predicted_filter, self.show_filter]),
            widgets.HBox([self.page_slider, self.status]),
            widgets.HBox([self.picture.figure, self.confusion_figure]),
            self.message,
            self.detail,
        ]
        self.observe(
            self._on_query, names=["sort_by", "descending", "true_class", "predicted_class", "show"]
        )
        self.observe(self._on_page, names=["page"])
        self.observe(self._on_selected, names=["selected"])
        self._refresh()

    # ------------------------------------------------------------ query

    def _column(self, name: str) -> np.ndarray:
        """A per-image column, read once; (N,) (the first explained class for (N, K))."""
        if name not in self._columns:
            col = self.store.column(name)
            self._columns[name] = col[:, 0] if col.ndim == 2 else col
        return self._columns[name]

    def _compute_order(self) -> np.ndarray | None:
        """Row indices that pass the filters, sorted; None for all rows in order."""
        filtered = (
            self.true_class >= 0 or self.predicted_class >= 0 or self.show != "all"
        ) or not self.store.complete
        if self.sort_by == "index" and not filtered:
            return None
        keep = np.ones(len(self.store), bool)
        if not self.store.complete:
            keep &= self.store.finished()
        if self.true_class >= 0:
            keep &= self._column("labels") == self.true_class
        if self.predicted_class >= 0:
            keep &= self._column("predicted") == self.predicted_class
        if self.show != "all":
            right = self._column("labels") == self._column("predicted")
            known = self._column("labels") >= 0
            keep &= known & (right if self.show == "correct" else ~right)
        rows = np.flatnonzero(keep)
        if self.sort_by != "index":
            values = self._column(self.sort_by)[rows].astype(np.float64)
            values = np.where(np.isnan(values), -np.inf if self.descending else np.inf, values)
            key = -values if self.descending else values
            rows = rows[np.argsort(key, kind="stable")]
        return rows

    @property
    def count(self) -> int:
        """Number of images that pass the filters."""
        return len(self.store) if self._order is None else len(self._order)

    @property
    def page_rows(self) -> np.ndarray:
        """(n,) int64 store rows shown on the current page, in grid order."""
        return self._page_rows.copy()

    def _rows_of_page(self) -> np.ndarray:
        start = self.page * self.per_page
        if self._order is None:
            return np.arange(start, min(start + self.per_page, len(self.store)), dtype=np.int64)
        return self._order[start : start + self.per_page].astype(np.int64)

    # ------------------------------------------------------------ events

    def _on_query(self, change: Any = None) -> None:
        self._refresh()

    def _refresh(self) -> None:
        self._order = self._compute_order()
        pages = max(1, -(-self.count // self.per_page))
        with self._setting_controls():
            self.page_slider.max = pages - 1
            self.page = 0
        self._draw()

    def _on_page(self, change: Any) -> None:
        if not self._controls_being_set:
            self._draw()

    def _build_confusion(self) -> None:
        k = len(self.class_names)
        confusion = self.store.confusion() if self.has_labels else None
        self.confusion_counts = confusion
        x = bqplot.OrdinalScale()
        y = bqplot.OrdinalScale(reverse=True)
        colour = bqplot.ColorScale(scheme="Blues", min=0.0)
        data = np.zeros((k, k)) if confusion is None else confusion.astype(np.float64)
        self.confusion = bqplot.GridHeatMap(
            row=list(self.class_names),
            column=list(self.class_names),
            color=data,
            scales={"row": y, "column": x, "color": colour},
            display_format=".0f",
            interactions={"click": "select"},
            selected_style={"stroke": "orange", "stroke-width": 3},
            anchor_style={"fill": "orange"},
        )
        self.confusion.on_element_click(self._on_cell_click)
        axes = [
            bqplot.Axis(scale=x, label="predicted", tick_rotate=-30),
            bqplot.Axis(scale=y, orientation="vertical", label="true"),
        ]
        title = "confusion (click a cell)" if confusion is not None else "no labels"
        self.confusion_figure = bqplot.Figure(
            marks=[self.confusion],
            axes=axes,
            title=title,
            layout=widgets.Layout(width="320px", height="320px"),
            fig_margin={"top": 40, "bottom": 60, "left": 80, "right": 10},
        )

    def _on_cell_click(self, mark: Any, event: dict) -> None:
        """bqplot cell click: {'event': 'element_click', 'data': {'rowNum', 'columnNum', ...}}."""
        data = event.get("data", {})
        row, col = data.get("rowNum", data.get("row")), data.get("columnNum", data.get("column"))
        if row is None or col is None or self.confusion_counts is None:
            return
        self.filter_cell(int(row), int(col))

    def filter_cell(self, true_class: int, predicted_class: int) -> None:
        """Show the images of one confusion-matrix cell (as a click on it does)."""
        with self.hold_trait_notifications():
            self.show = "all"
            self.true_class = int(true_class)
            self.predicted_class = int(predicted_class)

    # ------------------------------------------------------------ drawing

    def _draw(self) -> None:
        rows = self._rows_of_page()
        self._page_rows = rows
        names = self.class_names
        want = [
            n
            for n in ("maps", "images", "predicted", "labels", "confidence", "boxes")
            if n in self.store
        ]
        data = self.store.rows(rows, want)  # maps at their real values, float32
        tiles, captions = [], []
        size = self.tile_px
        heat = normalize_maps(data["maps"][:, :1], "map")[:, 0]  # (n, h, w) in [0, 1]
        # Not "no evidence here" but "no positive evidence anywhere": say so,
        # or a uniform wash over the photo reads as a map.
        zero = heat.max(axis=(1, 2), initial=0.0) <= 0  # (n,) bool
        for n, row in enumerate(rows):
            pred = int(data["predicted"][n])
            label = int(data["labels"][n])
            border = _UNKNOWN if label < 0 else (_RIGHT if label == pred else _WRONG)
            if zero[n]:  # first, where a narrow tile still shows it
                text = f"{row} map all zero"
            else:
                text = f"{row} {names[pred][:8]} {data['confidence'][n]:.2f}"
            captions.append(text)
            box = tuple(int(v) for v in data["boxes"][n]) if "boxes" in data else None
            if "images" in data:
                tiles.append(
                    render.thumbnail(
                        data["images"][n], heat[n], size, self.opacity, self.cmap, box, border, text
                    )
                )
            else:
                pic = render.apply_colormap(render.resize_map(heat[n], (size, size)), self.cmap)
                tiles.append(render.thumbnail(pic, None, size, border=border, text=text))
        while len(tiles) < min(self.per_page, self.cols) or not tiles:
            tiles.append(render.blank_tile(size, "" if tiles else "no images"))
        grid = render.tile(np.stack(tiles), cols=self.cols, pad=_PAD)
        what = [f"{self.count} of {len(self.store)} images"]
        if self.true_class >= 0:
            what.append(f"true {names[self.true_class]}")
        if self.predicted_class >= 0:
            what.append(f"predicted {names[self.predicted_class]}")
        if self.show != "all":
            what.append(self.show)
        if self.sort_by != "index":
            what.append(f"by {self.sort_by} {'high' if self.descending else 'low'} first")
        if zero.any():
            n_zero = int(zero.sum())
            what.append(f"{n_zero} map{'s' if n_zero > 1 else ''} on this page all zero")
        pages = self.page_slider.max + 1
        self.title = f"page {self.page + 1}/{pages}: " + ", ".join(what)
        self.captions = captions
        self.status.value = self._summary_html()
        self._show(render.caption(grid, self.title, height=_TITLE))

    def _summary_html(self) -> str:
        summary = self.store.meta.get("summary") or {}
        meta = self.store.meta
        parts = [f"{meta['method']} on {meta['layer']}"]
        if "accuracy" in summary:
            parts.append(f"accuracy {summary['accuracy']:.1%}")
        if "mean_energy_outside" in summary:
            parts.append(f"mean energy outside object {summary['mean_energy_outside']:.1%}")
        if not self.store.complete:
            parts.append("partial store (an interrupted run)")
        return " | ".join(parts)

    # ------------------------------------------------------------ clicks

    def click(self, y: float, x: float) -> int:
        """Open the thumbnail under view pixel (y, x); returns its store row or -1."""
        tile_h = self.tile_px + 16  # thumbnails carry a caption band
        k = render.tile_at(y - _TITLE, x, (tile_h, self.tile_px), self.cols, pad=_PAD)
        if y < _TITLE or not 0 <= k < len(self._page_rows):
            return -1
        row = int(self._page_rows[k])
        self.selected = row
        return row

    def _on_selected(self, change: Any) -> None:
        row = self.selected
        if row < 0:
            self._close_comparator()
            return
        if self._model is None:
            self.message.value = (
                f"<i>image {row}: pass model= to DatasetExplorer to open it in a "
                "GradCAMComparator</i>"
            )
            return
        if "images" not in self.store:
            self.message.value = (
                "<i>this store holds no images (keep_images=False): nothing to open</i>"
            )
            return
        image = self.store.rows([row], ["images"])["images"][0]
        meta = self.store.meta
        self._close_comparator()
        kwargs: dict[str, Any] = {"layer": meta["layer"], "methods": (meta["method"],)}
        if not isinstance(self._model, Probe):
            kwargs.update(class_names=self.class_names, preprocess=self._preprocess)
        self.comparator = GradCAMComparator(self._model, image, **kwargs)
        self.message.value = f"<b>image {row}</b> in the comparator below"
        self.detail.children = [self.comparator]

    def _close_comparator(self) -> None:
        if self.comparator is not None:
            self.comparator.close()
            self.comparator = None
        self.detail.children = []

    def close(self) -> None:
        self._close_comparator()
        super().close()
