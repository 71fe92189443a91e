"""What every cnnwidgets widget shares: the picture (``view``), ``save``, the
static PNG in ``_repr_mimebundle_``, background jobs with progress and
cancellation, and the layer picker's options."""

from __future__ import annotations

import atexit
import base64
import contextlib
import html
import pathlib
import threading
import weakref
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import numpy as np
import traitlets

from cnnwidgets import render
from cnnwidgets.probe import Probe
from cnnwidgets.progress import Cancelled

#: The colour of selection marks (the ring around the selected tile).
SELECTION_COLOUR = "#{:02x}{:02x}{:02x}".format(*render.SELECTION)

#: A white pixel: what an image widget holds before its first picture.
BLANK_PNG = render.to_png(np.full((1, 1, 3), 255, np.uint8))


class ViewWidget(widgets.VBox):
    """An ipywidgets.VBox whose main picture is an (H, W, 3) uint8 array.

    Subclasses build their controls, then call ``self._show(picture)``
    whenever the picture changes. ``view`` is exactly what is shown: in
    ``self.image``, or in ``self.picture`` (a :class:`ClickablePicture`) for
    widgets whose tiles can be clicked."""

    error = traitlets.Unicode(
        "", help="The message of the last failed background job ('' when none failed)."
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._view: np.ndarray | None = None
        # Starts as a white pixel, never empty: an empty PNG is a broken picture
        # in saved widget state. Widgets with a clickable figure never fill it.
        self.image = widgets.Image(
            value=BLANK_PNG, format="png", layout=widgets.Layout(max_width="100%")
        )
        self._job: BackgroundJob | None = None
        self._worker: JobWorker | None = None
        self._guard_depth = 0
        self._links: list[widgets.link] = []
        self.picture: ClickablePicture | None = None

    @contextlib.contextmanager
    def _setting_controls(self):
        """Set controls from code without their observers reacting: the one
        re-entrancy guard of every widget (handlers return early while
        :attr:`_controls_being_set`)."""
        self._guard_depth += 1
        try:
            yield
        finally:
            self._guard_depth -= 1

    @property
    def _controls_being_set(self) -> bool:
        return self._guard_depth > 0

    def _mirror(self, control: widgets.Widget, trait: str) -> None:
        """Keep the widget's ``trait`` and ``control.value`` equal both ways, so
        the state can be observed and linked (``widgets.link((a, 'selected_class'),
        (b, 'selected_class'))``) without knowing which control holds it. The
        trait's validator checks a value set from code before the control sees it."""
        self._links.append(widgets.link((control, "value"), (self, trait)))

    @property
    def view(self) -> np.ndarray:
        """(H, W, 3) uint8: exactly what the widget shows right now."""
        if self._view is None:
            self._view = self._compose_view()
        if self._view is None:
            raise RuntimeError("the widget has not drawn anything yet")
        return self._view

    def _compose_view(self) -> np.ndarray | None:
        """``view`` of a widget that shows its picture in parts (each part sent
        only when it changed): the parts put together as they are laid out.
        Called on demand, when ``view`` is read after a redraw."""
        return None

    def _show(self, picture: np.ndarray) -> None:
        picture = render.to_rgb_uint8(picture)
        self._view = picture
        png = render.to_png(picture)
        # The PNG crosses the websocket once: into the clickable figure when the
        # widget has one (its ``image`` is then not displayed), else into ``image``.
        if self.picture is not None:
            self.picture.show(png, *picture.shape[:2])
        else:
            self.image.value = png
        self._drawn()

    def _drawn(self) -> None:
        """Called when a redraw has gone out to the front end (benchmarks time it)."""

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
        with contextlib.suppress(RuntimeError):  # nothing drawn yet: no picture
            data["image/png"] = base64.b64encode(render.to_png(self.view, 6)).decode("ascii")
        return data

    # -------------------------------------------------------------- jobs

    def _start_job(
        self,
        work: Callable[[Callable[[int, int], None]], Any],
        on_done: Callable[[Any], None],
        progress_bar: widgets.IntProgress | None = None,
    ) -> BackgroundJob:
        """Run ``work(progress)`` on this widget's worker thread.

        A newer job cancels the running one (it stops at its next progress
        call, i.e. between batches) and replaces any job still waiting, so a
        storm of control changes runs at most one job at a time and ends on
        the last one. An error is shown in the widget and raised by
        :meth:`wait`."""
        job = BackgroundJob(work, on_done, progress_bar, on_error=self._show_error)
        if self._worker is None:
            self._worker = JobWorker()
        self._job = job
        self._clear_error()
        self._worker.submit(job)
        return job

    def wait(self, timeout: float | None = 120.0) -> ViewWidget:
        """Block until the background work is done; raises that work's error."""
        if self._worker is not None:
            if not self._worker.idle.wait(timeout):
                raise TimeoutError(f"the widget's background work took over {timeout} s")
        if self._job is not None and self._job.error is not None:
            raise self._job.error
        return self

    def _show_error(self, exc: BaseException) -> None:
        """Say what failed where the user looks: the status line, in red."""
        message = f"{type(exc).__name__}: {exc}"
        status = getattr(self, "status", None)
        if isinstance(status, widgets.HTML):
            status.value = (
                f'<span style="color:#c62828"><b>error</b>: {html.escape(message)}</span>'
            )
        elif isinstance(status, widgets.Label):
            status.value = f"error: {message}"
            status.style.text_color = "#c62828"
        for bar in self._progress_bars():
            bar.value = 0
            bar.bar_style = "danger"
        self.error = message

    def _clear_error(self) -> None:
        if self.error:
            self.error = ""
            status = getattr(self, "status", None)
            if isinstance(status, widgets.Label):
                status.style.text_color = None
            for bar in self._progress_bars():
                bar.bar_style = ""

    def _progress_bars(self) -> list[widgets.IntProgress]:
        return [v for v in vars(self).values() if isinstance(v, widgets.IntProgress)]

    def close(self) -> None:
        """Cancel the background work and close this widget and every widget
        inside it (controls, figures, marks, layouts), so nothing stays
        registered with the kernel."""
        if self._worker is not None:
            self._worker.stop()
        links, self._links = self._links, []  # close() runs again from __del__
        for link in links:
            link.unlink()
        for child in _owned_widgets(self):
            child.close()
        super().close()


def _owned_widgets(root: widgets.Widget) -> list[widgets.Widget]:
    """Every widget reachable from ``root`` through synced traits (children,
    layout, style, bqplot marks and scales) or its attributes, root excluded."""
    seen = {id(root)}
    out: list[widgets.Widget] = []
    stack: list[Any] = [getattr(root, k, None) for k in root.keys] + list(vars(root).values())
    while stack:
        value = stack.pop()
        if isinstance(value, (list, tuple)):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, ClickablePicture):
            stack.extend((value.figure, *value._buffers))
        elif isinstance(value, widgets.Widget) and id(value) not in seen:
            seen.add(id(value))
            out.append(value)
            stack.extend(getattr(value, k, None) for k in value.keys)
    return out


class BackgroundJob:
    """One piece of background work with its progress bar and cancellation."""

    def __init__(self, work, on_done, progress_bar=None, on_error=None):
        self._work = work
        self._on_done = on_done
        self._on_error = on_error
        self._bar = progress_bar
        self._cancelled = threading.Event()
        self._finished = threading.Event()
        self.error: BaseException | None = None
        self.result: Any = None

    def _progress(self, done: int, total: int) -> None:
        if self._cancelled.is_set():
            raise Cancelled()
        if self._bar is not None:
            with self._bar.hold_sync():
                self._bar.max = max(total, 1)
                self._bar.value = min(done, total)

    def run(self) -> None:
        """Run the work here (the worker thread); never raises."""
        try:
            if not self._cancelled.is_set():
                self.result = self._work(self._progress)
                if not self._cancelled.is_set():
                    self._on_done(self.result)
        except Cancelled:
            pass
        except BaseException as exc:  # shown in the widget, raised by wait()
            self.error = exc
            if self._on_error is not None and not self._cancelled.is_set():
                try:
                    self._on_error(exc)
                except Exception:  # a closed widget cannot show it; wait() still raises
                    pass
        finally:
            self._finished.set()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def join(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    @property
    def running(self) -> bool:
        return not self._finished.is_set()


class JobWorker:
    """Runs a widget's newest submitted job on a thread of its own.

    ``submit`` cancels the running job and replaces the waiting one, so at
    most one job runs and one waits, whatever the rate of requests. The
    thread ends when nothing is left to do and starts again on the next
    submit, so an idle widget holds no thread."""

    def __init__(self):
        self._lock = threading.Condition()
        self._pending: BackgroundJob | None = None
        self._current: BackgroundJob | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.idle = threading.Event()
        self.idle.set()
        _WORKERS.add(self)

    def submit(self, job: BackgroundJob) -> None:
        with self._lock:
            if self._stopped:
                raise RuntimeError("the widget is closed")
            if self._pending is not None:
                self._pending.cancel()
                self._pending._finished.set()
            if self._current is not None:
                self._current.cancel()
            self._pending = job
            self.idle.clear()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, daemon=True, name="cnnwidgets-job"
                )
                self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._pending is None or self._stopped:
                    self._thread = None  # the next submit starts a new thread
                    self.idle.set()
                    return
                job, self._pending = self._pending, None
                self._current = job
            job.run()
            with self._lock:
                self._current = None

    def stop(self, timeout: float | None = None) -> None:
        """Cancel everything; with a timeout, wait that long for the thread to end."""
        with self._lock:
            self._stopped = True
            for job in (self._pending, self._current):
                if job is not None:
                    job.cancel()
            self._pending = None
            thread = self._thread
        _WORKERS.discard(self)
        if timeout is not None and thread is not None:
            thread.join(timeout)

    @property
    def alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()


_WORKERS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _stop_workers_at_exit() -> None:
    # A daemon thread still inside TensorFlow when the interpreter tears down
    # aborts the process ("terminate called without an active exception"):
    # cancel every job and give it time to leave at its next batch.
    workers = list(_WORKERS)
    for worker in workers:
        worker.stop()
    for worker in workers:
        worker.stop(timeout=30.0)


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
        # Two image widgets, shown in turn: bqplot's front end redraws an Image
        # mark when the mark points at a different image widget, not when the
        # shown widget's value changes. The new PNG goes into the hidden one,
        # then the mark switches to it, so an update is one PNG and a
        # reference, with no widget opened or closed per move. A valid 1x1 PNG
        # until the first show(): an empty image would break saved widget state.
        self._buffers = (
            widgets.Image(value=BLANK_PNG, format="png"),
            widgets.Image(value=BLANK_PNG, format="png"),
        )
        self.mark = bq.Image(image=self._buffers[0], scales={"x": self._xs, "y": self._ys})
        self.mark.on_element_click(self._clicked)
        # A selection outline drawn by the browser over the picture, so moving
        # the selection sends four corners, not the picture again.
        self.box = bq.Lines(
            x=[0.0],
            y=[0.0],
            scales={"x": self._xs, "y": self._ys},
            colors=[SELECTION_COLOUR],
            stroke_width=2,
            visible=False,
        )
        self.figure = bq.Figure(
            marks=[self.mark, self.box],
            padding_x=0,
            padding_y=0,
            fig_margin={"top": 0, "bottom": 0, "left": 0, "right": 0},
        )

    @property
    def png(self) -> bytes:
        """The PNG bytes shown now."""
        return self.mark.image.value

    def show(self, png: bytes, height: int, width: int) -> None:
        """Show PNG bytes of a (height, width) picture; clicks map to its pixels."""
        hidden = self._buffers[1] if self.mark.image is self._buffers[0] else self._buffers[0]
        hidden.value = png
        h, w = float(height), float(width)
        self._height = h
        if self._size:
            scale = self._size / max(height, width)
            height, width = round(height * scale), round(width * scale)
        with self.figure.hold_sync(), self.mark.hold_sync():
            self.mark.image = hidden
            self._xs.min, self._xs.max = 0.0, w
            self._ys.min, self._ys.max = 0.0, h
            self.mark.x, self.mark.y = [0.0, w], [0.0, h]
        self.figure.layout.width, self.figure.layout.height = f"{width}px", f"{height}px"

    def outline(self, box: tuple[int, int, int, int] | None, gap: float = 1.0) -> None:
        """Outline ``box`` = (top, left, bottom, right) in picture pixels (y
        down), ``gap`` pixels outside it; None hides the outline."""
        if box is None:
            self.box.visible = False
            return
        t, l_, b, r = (float(v) for v in box)
        t, l_, b, r = t - gap / 2, l_ - gap / 2, b + gap / 2, r + gap / 2
        ys = [self._height - v for v in (t, t, b, b, t)]
        with self.box.hold_sync():
            self.box.x, self.box.y = [l_, r, r, l_, l_], ys
            self.box.visible = True

    def _clicked(self, mark: Any, content: dict) -> None:
        """bqplot sends data coordinates, which here are pixels with y pointing up."""
        data = content.get("data", {})
        if "click_x" in data and self._height:
            self._on_click(self._height - float(data["click_y"]), float(data["click_x"]))
