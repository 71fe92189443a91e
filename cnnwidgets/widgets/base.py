"""What every cnnwidgets widget shares: the picture (``view``), ``save``, the
static PNG in ``_repr_mimebundle_``, background jobs with progress and
cancellation, and the layer picker's options."""

from __future__ import annotations

import base64
import pathlib
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import numpy as np

from cnnwidgets import render
from cnnwidgets.probe import Probe
from cnnwidgets.progress import Cancelled


class ViewWidget(widgets.VBox):
    """An ipywidgets.VBox whose main picture is an (H, W, 3) uint8 array.

    Subclasses build their controls, then call ``self._show(picture)``
    whenever the picture changes. ``view`` is exactly what is shown: in
    ``self.image``, or in ``self.picture`` (a :class:`ClickablePicture`) for
    widgets whose tiles can be clicked."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._view: np.ndarray | None = None
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self._job: BackgroundJob | None = None
        self.picture: ClickablePicture | None = None

    @property
    def view(self) -> np.ndarray:
        """(H, W, 3) uint8: exactly what the widget shows right now."""
        if self._view is None:
            raise RuntimeError("the widget has not drawn anything yet")
        return self._view

    def _show(self, picture: np.ndarray) -> None:
        picture = render.to_rgb_uint8(picture)
        self._view = picture
        self.image.value = render.to_png(picture)
        if self.picture is not None:
            self.picture.show(self.image.value, *picture.shape[:2])

    def save(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write ``view`` as a PNG file; returns the path."""
        path = pathlib.Path(path)
        path.write_bytes(render.to_png(self.view, compress_level=6))
        return path

    def _repr_mimebundle_(self, **kwargs):
        # The PNG rides beside the widget view: live front ends show the widget,
        # nbconvert, GitHub and kernel-less graders show the picture.
        data = super()._repr_mimebundle_(**kwargs) or {}
        if isinstance(data, tuple):
            data = data[0]
        data = dict(data)
        if self._view is not None:
            data["image/png"] = base64.b64encode(render.to_png(self._view, 6)).decode("ascii")
        return data

    # -------------------------------------------------------------- jobs

    def _start_job(
        self,
        work: Callable[[Callable[[int, int], None]], Any],
        on_done: Callable[[Any], None],
        progress_bar: widgets.IntProgress | None = None,
    ) -> BackgroundJob:
        """Run ``work(progress)`` in a thread, cancelling the previous job."""
        if self._job is not None:
            self._job.cancel()
        self._job = BackgroundJob(work, on_done, progress_bar)
        self._job.start()
        return self._job

    def wait(self, timeout: float | None = 120.0) -> ViewWidget:
        """Block until the current background job (if any) is finished."""
        if self._job is not None:
            self._job.join(timeout)
            if self._job.error is not None:
                raise self._job.error
        return self


class BackgroundJob:
    """A cancellable thread that reports ``(done, total)`` to a progress bar."""

    def __init__(self, work, on_done, progress_bar: widgets.IntProgress | None = None):
        self._work = work
        self._on_done = on_done
        self._bar = progress_bar
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None
        self.result: Any = None

    def _progress(self, done: int, total: int) -> None:
        if self._cancelled.is_set():
            raise Cancelled()
        if self._bar is not None:
            self._bar.max = max(total, 1)
            self._bar.value = min(done, total)

    def _run(self) -> None:
        try:
            self.result = self._work(self._progress)
            if not self._cancelled.is_set():
                self._on_done(self.result)
        except Cancelled:
            pass
        except BaseException as exc:  # surfaced by wait(); widgets show it too
            self.error = exc

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()


def layer_options(probe: Probe, only_4d: bool = True) -> list[tuple[str, str]]:
    """Dropdown options (label, path): layers grouped by nested model, with shapes.

    A layer inside a nested model is labelled 'vgg16 / block5_conv3  (14, 14, 512)'."""
    options = []
    for info in probe.layers:
        if info.is_model or (only_4d and not info.is_4d):
            continue
        label = info.name.replace("/", " / ")
        shape = tuple(info.output_shape[1:])
        options.append((f"{label}  {shape}", info.name))
    return options


class ClickablePicture:
    """A picture in a bqplot figure (at its own pixel size, or scaled to
    ``size``) that reports clicks in picture pixels, for widgets whose tiles
    or positions can be picked by mouse.

    ``figure`` goes into the widget's children; ``show(png, height, width)``
    replaces the picture; ``on_click(y, x)`` is called with y counted down from
    the top, as in the (H, W, 3) array the PNG came from."""

    def __init__(self, on_click: Callable[[float, float], Any], size: int | None = None):
        """``size``: show the picture scaled into a ``size`` x ``size`` pixel
        square (a small input made big enough to click); default its own size."""
        import bqplot as bq

        self._on_click = on_click
        self._size = size
        self._height = 0.0
        self._xs = bq.LinearScale(min=0.0, max=1.0)
        self._ys = bq.LinearScale(min=0.0, max=1.0)
        # A valid 1x1 PNG until the first show(): an empty image widget would
        # be a broken picture in saved widget state.
        blank = render.to_png(np.full((1, 1, 3), 255, np.uint8))
        self.mark = bq.Image(
            image=widgets.Image(value=blank, format="png"), scales={"x": self._xs, "y": self._ys}
        )
        self.mark.on_element_click(self._clicked)
        self.figure = bq.Figure(
            marks=[self.mark],
            padding_x=0,
            padding_y=0,
            fig_margin={"top": 0, "bottom": 0, "left": 0, "right": 0},
        )

    def show(self, png: bytes, height: int, width: int) -> None:
        """Show PNG bytes of a (height, width) picture; clicks map to its pixels."""
        # bqplot's front end redraws an Image mark when the mark points at a
        # different image widget, not when that widget's value changes: hand it
        # a fresh one and close the old.
        old = self.mark.image
        self.mark.image = widgets.Image(value=png, format="png")
        if old is not None:
            old.close()
        h, w = float(height), float(width)
        self._height = h
        with self.figure.hold_sync(), self.mark.hold_sync():
            self._xs.min, self._xs.max = 0.0, w
            self._ys.min, self._ys.max = 0.0, h
            self.mark.x, self.mark.y = [0.0, w], [0.0, h]
        if self._size:
            scale = self._size / max(height, width)
            height, width = round(height * scale), round(width * scale)
        self.figure.layout.width, self.figure.layout.height = f"{width}px", f"{height}px"

    def _clicked(self, mark: Any, content: dict) -> None:
        """bqplot sends data coordinates, which here are pixels with y pointing up."""
        data = content.get("data", {})
        if "click_x" in data and self._height:
            self._on_click(self._height - float(data["click_y"]), float(data["click_x"]))
