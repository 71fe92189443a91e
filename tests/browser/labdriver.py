"""Drive JupyterLab 4 (or Notebook 7, from the same server) in a Playwright
page: open a notebook, run all cells, wait for the kernel, and inspect and move
the widgets it shows.

Lab is started with ``--LabApp.expose_app_in_browser=True`` (and Notebook 7,
the ``notebook`` server extension that serves ``/notebooks/<path>`` beside
``/lab``, with ``--JupyterNotebookApp.expose_app_in_browser=True``), so the
page has ``window.jupyterapp`` (the JupyterFrontEnd): commands run exactly as
from the menu (``notebook:run-all-cells`` is Run > Run All Cells), and the
notebook model tells which cells ran and which outputs are errors. Both front
ends build the notebook from the same JupyterLab widgets, so the cell and
output selectors (``.jp-Notebook .jp-Cell``, ...) hold in both.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARTIFACTS = pathlib.Path(__file__).resolve().parent / "artifacts"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# How the test's Lab differs from a user's: nothing fetched, every cell kept in
# the DOM (no virtual scrolling), no autosave racing the run.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/sessionDialogs": {},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_status(base: str, token: str, proc: subprocess.Popen, log: pathlib.Path, timeout=180):
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(
        f"{base}/api/status", headers={"Authorization": f"token {token}"}
    )
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"jupyter lab exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(
        f"jupyter lab did not answer /api/status in {timeout} s:\n{log.read_text()[-3000:]}"
    )


@contextlib.contextmanager
def running_lab(work: pathlib.Path, log: pathlib.Path) -> Iterator[dict]:
    """A JupyterLab 4 server on ``work / 'notebooks'`` (which must exist), on
    127.0.0.1 with a random port and token, fetching nothing, its output in
    ``log``; the settings, runtime and workspace folders go under ``work``.
    Yields {'base': url, 'token': token, 'dir': notebook folder}; the server
    is stopped on exit. The browser test and benchmarks/browser_latency.py
    both start Lab here. Where ``notebook`` (7) is installed, the same server
    serves Notebook 7 at ``/notebooks/<path>`` (see :class:`Notebook7Page`)."""
    nb_dir = work / "notebooks"
    settings = work / "user-settings"
    for plugin, values in LAB_SETTINGS.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.update(
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONHASHSEED="0",
        JUPYTER_RUNTIME_DIR=str(work / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"),
        # notebooks import the package from the repo even when run elsewhere
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    cmd = [
        sys.executable, "-m", "jupyter", "lab",
        "--no-browser",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",  # ServerApp.token's current name
        "--ServerApp.ip=127.0.0.1",
        f"--notebook-dir={nb_dir}",
        "--ServerApp.terminals_enabled=False",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.expose_app_in_browser=True",
        "--JupyterNotebookApp.expose_app_in_browser=True",  # Notebook 7's pages
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={work / 'workspaces'}",
        "--LabApp.extension_manager=readonly",  # no PyPI queries from the server
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers and this dev box run as root
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=work)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_status(base, token, proc, log)
        yield {"base": base, "token": token, "dir": nb_dir}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# the notebook's run state, read from Lab's models (kernel, cells, outputs)
STATE_JS = """
() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  if (!panel || !panel.content || !panel.content.model || !panel.sessionContext) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.model.cells;
  const state = {status: kernel ? kernel.status : 'no-kernel', code: 0, pending: 0,
                 errors: [], starred: 0};
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') continue;
    state.code += 1;
    const source = cell.sharedModel.getSource().trim();
    if (source && cell.executionCount === null) state.pending += 1;
    const tags = cell.getMetadata('tags') || [];
    for (let j = 0; j < cell.outputs.length; j++) {
      const out = cell.outputs.get(j).toJSON();
      if (out.output_type === 'error' && !tags.includes('raises-exception')) {
        state.errors.push(`cell ${i}: ${out.ename}: ${out.evalue}`);
      }
    }
  }
  for (const prompt of document.querySelectorAll('.jp-Notebook .jp-InputPrompt')) {
    if (prompt.textContent.includes('*')) state.starred += 1;
  }
  return state;
}
"""

# which outputs of which cells are widget views, from the notebook model
WIDGET_OUTPUTS_JS = """
(mime) => {
  const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
  const found = [];
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') continue;
    for (let j = 0; j < cell.outputs.length; j++) {
      const data = cell.outputs.get(j).data || {};
      if (mime in data) found.push({cell: i, output: j, static: 'image/png' in data});
    }
  }
  return found;
}
"""

# the pictures of one widget: <img> sources and bqplot <image> hrefs
PICTURES_JS = """
(root) => {
  const pics = [];
  for (const img of root.querySelectorAll('img')) {
    pics.push({kind: 'img', src: img.currentSrc || img.src, complete: img.complete,
               width: img.naturalWidth, widget: img.classList.contains('widget-image')});
  }
  for (const img of root.querySelectorAll('svg image')) {
    pics.push({kind: 'svg', src: img.getAttribute('href') || img.getAttribute('xlink:href'),
               complete: true, width: 1, widget: true});
  }
  // cnnwidgets canvases: a picture composed in the page; each paint is a new one.
  root.querySelectorAll('.cnnwidgets-canvas').forEach((el, k) => {
    const n = Number(el.dataset.painted || 0);
    pics.push({kind: 'canvas', src: `canvas:${k}:${n}`, complete: n > 0,
               width: el.cwPicture ? el.cwPicture.width : 0, widget: true});
  });
  return pics;
}
"""


# Run code in the page's kernel; returns (error or None, the text it printed).
KERNEL_JS = """
async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({code, silent: false, store_history: false});
  let error = null, text = '';
  future.onIOPub = (msg) => {
    if (msg.header.msg_type === 'error') error = msg.content.evalue;
    if (msg.header.msg_type === 'stream') text += msg.content.text;
  };
  await future.done;
  return [error, text];
}
"""

# The picture a cnnwidgets canvas composed (unzoomed), and what its screen canvas
# shows, as base64 RGBA with their sizes.
CANVAS_PIXELS_JS = """
(el) => {
  const b64 = (data) => {
    let s = '';
    for (let i = 0; i < data.length; i += 0x8000) {
      s += String.fromCharCode.apply(null, data.subarray(i, i + 0x8000));
    }
    return btoa(s);
  };
  const read = (c) => ({w: c.width, h: c.height,
    rgba: b64(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)});
  return {picture: read(el.cwPicture), screen: read(el.querySelector('canvas')),
          painted: Number(el.dataset.painted || 0), zoom: Number(el.dataset.zoom || 1)};
}
"""


class LabPage:
    """One notebook open in one Lab page."""

    def __init__(self, page, base: str, token: str, name: str):
        self.page = page
        self.base = base
        self.token = token
        self.name = name
        self.stem = re.sub(r"[^A-Za-z0-9_.-]", "_", pathlib.Path(name).stem)
        self.console: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.console.append(m.text))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    # ------------------------------------------------------------ lab

    def open(self, timeout: float = 180) -> None:
        """Load Lab on a fresh workspace with only this notebook open; wait for its kernel."""
        workspace = f"test-{self.stem}"
        url = f"{self.base}/lab/workspaces/{workspace}/tree/{self.name}?reset&token={self.token}"
        self.page.goto(url, timeout=timeout * 1000)
        self.wait_for_kernel(timeout)

    def wait_for_kernel(self, timeout: float = 180) -> None:
        """Wait until the page's notebook is loaded and its kernel is idle."""
        self.page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
            " && window.jupyterapp.shell.currentWidget.sessionContext",
            timeout=timeout * 1000,
        )
        self.page.evaluate(
            """async () => {
                const panel = window.jupyterapp.shell.currentWidget;
                await panel.context.ready;
                await panel.sessionContext.ready;
            }"""
        )
        self.page.wait_for_function(
            """() => {
                const sc = window.jupyterapp.shell.currentWidget.sessionContext;
                return sc.session && sc.session.kernel && sc.session.kernel.status === 'idle';
            }""",
            timeout=timeout * 1000,
        )

    def command(self, command_id: str, args: dict | None = None):
        """Run a Lab command as its menu entry would."""
        return self.page.evaluate(
            "([id, args]) => window.jupyterapp.commands.execute(id, args)",
            [command_id, args or {}],
        )

    def kernel(self, code: str) -> str:
        """Run ``code`` in this notebook's kernel; returns what it printed."""
        error, text = self.page.evaluate(KERNEL_JS, textwrap.dedent(code))
        if error:
            raise RuntimeError(f"kernel: {error}")
        return text

    def canvas_pixels(self, canvas) -> dict:
        """A cnnwidgets canvas's pixels: {'picture': (H, W, 3) uint8 composed,
        'screen': (h, w, 3) uint8 on screen, 'painted': paints so far, 'zoom'}."""
        import base64

        import numpy as np

        got = canvas.evaluate(CANVAS_PIXELS_JS)
        for key in ("picture", "screen"):
            raw = np.frombuffer(base64.b64decode(got[key]["rgba"]), np.uint8)
            got[key] = raw.reshape(got[key]["h"], got[key]["w"], 4)[..., :3]
        return got

    def state(self) -> dict | None:
        return self.page.evaluate(STATE_JS)

    def run_all(self, timeout: float = 300) -> dict:
        """Clear outputs, Run > Run All Cells, and wait for the kernel to go idle
        with every cell run (or stopped at an error). Returns the final state."""
        self.command("notebook:clear-all-cell-outputs")
        self.command("notebook:run-all-cells")
        return self.wait_until_ran(timeout)

    def wait_until_ran(self, timeout: float = 300) -> dict:
        """Wait for the kernel to go idle with every cell run (or stopped at an
        error); returns the final state."""
        deadline = time.monotonic() + timeout
        stable, state = 0, None
        while time.monotonic() < deadline:
            state = self.state()
            done = (
                state is not None
                and state["status"] == "idle"
                and state["starred"] == 0
                and (state["pending"] == 0 or state["errors"])
            )
            stable = stable + 1 if done else 0
            if stable >= 3:  # idle over three polls: no cell is about to start
                return state
            time.sleep(0.5)
        self.screenshot("timeout")
        raise TimeoutError(f"{self.name}: cells still running after {timeout} s: {state}")

    # ---------------------------------------------------------- widgets

    def widget_outputs(self) -> list[dict]:
        """The widget views among the cells' outputs (top level only), as dicts:
        cell, output (indices), static (the bundle carries an 'image/png' beside
        the view, as every cnnwidgets ViewWidget does) and locator."""
        found = self.page.evaluate(WIDGET_OUTPUTS_JS, WIDGET_MIME)
        cells = self.page.locator(".jp-Notebook .jp-Cell")
        for item in found:
            item["locator"] = (
                cells.nth(item["cell"])
                .locator(".jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output")
                .nth(item["output"])
            )
        return found

    def pictures(self, output) -> list[dict]:
        return output.evaluate(PICTURES_JS)

    def wait_pictures_loaded(self, output, timeout: float = 60) -> list[dict]:
        """Wait until the widget shows at least one picture and all have loaded."""
        output.evaluate(
            """async (root) => {
                for (const img of root.querySelectorAll('img')) {
                    if (!img.complete) { try { await img.decode(); } catch (e) {} }
                }
            }"""
        )
        deadline = time.monotonic() + timeout
        pics = []
        while time.monotonic() < deadline:
            pics = self.pictures(output)
            if pics and all(p["complete"] and p["width"] > 0 and p["src"] for p in pics):
                return pics
            time.sleep(0.5)
        return pics

    def error_texts(self) -> list[str]:
        text = self.page.locator(".jp-Notebook").inner_text()
        return [line for line in text.splitlines() if "Error displaying widget" in line]

    def controls(self, output):
        """The widget's visible sliders, dropdowns and toggle buttons, in page order."""
        return output.locator(
            ".widget-slider:not(.mod-disabled), .widget-dropdown select:not(:disabled),"
            " .widget-toggle-buttons"
        ).filter(visible=True)

    def move(self, control) -> str:
        """Change one control as a user would; returns what was done."""
        classes = control.get_attribute("class") or ""
        tag = control.evaluate("(el) => el.tagName.toLowerCase()")
        if tag == "select":
            options = control.evaluate(
                "(el) => ({n: el.options.length, i: el.selectedIndex,"
                " disabled: Array.from(el.options).map(o => o.disabled)})"
            )
            choices = [k for k in range(options["n"]) if k != options["i"]]
            choices = [k for k in choices if not options["disabled"][k]]
            if not choices:
                return ""
            control.select_option(index=choices[0])
            return f"dropdown -> option {choices[0]}"
        if "widget-toggle-buttons" in classes:
            buttons = control.locator("button:not(.mod-active):not(:disabled)")
            if buttons.count() == 0:
                return ""
            buttons.first.click()
            return "toggle button"
        # a slider (noUiSlider): focus the handle, one keyboard step
        handle = control.locator(".noUi-handle").first
        before = handle.get_attribute("aria-valuenow")
        handle.focus()
        handle.press("ArrowRight")
        if handle.get_attribute("aria-valuenow") == before:
            handle.press("ArrowLeft")  # already at the top end
        after = handle.get_attribute("aria-valuenow")
        return f"slider {before} -> {after}" if after != before else ""

    def screenshot(self, label: str, target=None) -> pathlib.Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.stem}--{label}.png"
        try:
            (target or self.page).screenshot(path=str(path), timeout=30_000)
        except Exception:  # noqa: BLE001 - artifacts never fail a test
            pass
        return path

    def shutdown_kernels(self) -> None:
        """Free the CPU for the next notebook: shut this page's kernel down."""
        try:
            self.page.evaluate(
                """async () => {
                    const sc = window.jupyterapp.shell.currentWidget.sessionContext;
                    if (sc.session) { await sc.session.shutdown(); }
                }"""
            )
        except Exception:  # noqa: BLE001
            pass


class Notebook7Page(LabPage):
    """One notebook open in Notebook 7's own page (``/notebooks/<path>``), served
    by the same server as Lab. Its shell holds the one notebook as its current
    widget, so everything :class:`LabPage` reads from ``window.jupyterapp``
    holds; only the URL and the menus differ."""

    def open(self, timeout: float = 180) -> None:
        """Load Notebook 7's page of this notebook; wait for its kernel."""
        url = f"{self.base}/notebooks/{self.name}?token={self.token}"
        self.page.goto(url, timeout=timeout * 1000)
        self.wait_for_kernel(timeout)

    def menu(self, menu: str, entry: str) -> None:
        """Click menu ``menu`` of Notebook 7's menu bar, then its entry ``entry``
        (labels as shown, mnemonics aside)."""
        bar = self.page.locator("#menu-panel .lm-MenuBar-item")
        bar.filter(has=self.page.locator(".lm-MenuBar-itemLabel", has_text=menu)).first.click()
        exact = re.compile(f"^{re.escape(entry)}$")
        label = self.page.locator(".lm-Menu-itemLabel", has_text=exact)
        self.page.locator(".lm-Menu-item:not(.lm-mod-disabled)").filter(has=label).first.click()

    def run_all(self, timeout: float = 300) -> dict:
        """Run > Run All Cells from Notebook 7's menu bar, and wait as ``LabPage.run_all``."""
        self.menu("Run", "Run All Cells")
        return self.wait_until_ran(timeout)


# ------------------------------------------------- canvas vs kernel (both UIs)


def kernel_picture(lab: LabPage, expression: str) -> np.ndarray:
    """An (H, W, 3) uint8 array the kernel computes, through a file (same machine)."""
    import numpy as np

    path = pathlib.Path(tempfile.mkdtemp()) / "picture.npy"
    lab.kernel(f"import numpy as _np; _np.save({str(path)!r}, {expression})")
    return np.load(path)


def wait_painted(canvas, after: int, timeout: float = 60) -> int:
    """Wait until the canvas has painted more than ``after`` times; the count."""
    canvas.page.wait_for_function(
        "([el, n]) => Number(el.dataset.painted || 0) > n",
        arg=[canvas.element_handle(), after],
        timeout=timeout * 1000,
    )
    return int(canvas.get_attribute("data-painted"))


def assert_same_picture(page_pixels: np.ndarray, kernel: np.ndarray, what: str) -> None:
    """The page's pixels are the kernel's picture to within one level per channel."""
    import numpy as np

    assert page_pixels.shape == kernel.shape, f"{what}: {page_pixels.shape} vs {kernel.shape}"
    diff = np.abs(page_pixels.astype(int) - kernel.astype(int)).max()
    assert diff <= 1, f"{what}: the page differs from view by up to {diff} levels"


def settle_kernel(lab: LabPage, quiet: float = 1.0, timeout: float = 60) -> None:
    """Wait until the kernel has been idle for ``quiet`` seconds (or ``timeout``)."""
    deadline, calm = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        state = lab.state()
        idle = state is not None and state["status"] == "idle"
        calm = (calm or time.monotonic()) if idle else None
        if calm is not None and time.monotonic() - calm >= quiet:
            return
        time.sleep(0.1)


def write_scratch_notebook(path: pathlib.Path) -> pathlib.Path:
    """A harness check that needs none of the widget notebooks: a minimal
    ViewWidget with a slider and a dropdown that redraw its picture."""
    import nbformat

    source = textwrap.dedent(
        """\
        import ipywidgets as widgets
        import numpy as np
        from IPython.display import display

        from cnnwidgets.widgets.base import ViewWidget


        class Stripes(ViewWidget):
            def __init__(self):
                super().__init__()
                self.period = widgets.IntSlider(value=3, min=1, max=12, description="period")
                self.colour = widgets.Dropdown(options=["red", "green", "blue"], value="red")
                for control in (self.period, self.colour):
                    control.observe(lambda change: self.redraw(), names="value")
                self.children = [widgets.HBox([self.period, self.colour]), self.image]
                self.redraw()

            def redraw(self):
                x = np.arange(160)[None, :].repeat(96, axis=0)
                stripes = (x // self.period.value % 2 * 255).astype(np.uint8)
                picture = np.zeros((96, 160, 3), np.uint8)
                picture[..., ["red", "green", "blue"].index(self.colour.value)] = stripes
                self._show(picture)


        stripes = Stripes()
        display(stripes)
        """
    )
    cells = [
        nbformat.v4.new_markdown_cell("Harness check for the browser test (not a tutorial)."),
        nbformat.v4.new_code_cell(source),
        nbformat.v4.new_code_cell("print(stripes.view.shape)"),
    ]
    return write_notebook(path, cells)


def write_notebook(path: pathlib.Path, cells: list) -> pathlib.Path:
    """Write ``cells`` as a notebook for the python3 kernel; returns ``path``."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path.write_text(json.dumps(nb, indent=1))
    return path


#: One cell per widget kind, on the shipped demo model and small inputs: what the
#: browser test runs besides the tour (every tutorial notebook is executed by nbval).
WIDGET_CELLS = (
    """\
    import os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tempfile

    import cnnwidgets as cw

    model = cw.assets.demo_model("shapes_cnn")
    names = cw.assets.demo_class_names("shapes_cnn")
    images, labels, boxes = cw.assets.make_pairs(4, seed=7)
    image = images[0]
    probe = cw.Probe(model, class_names=names)
    """,
    """\
    comparator = cw.GradCAMComparator(probe, image, methods=('gradcam', 'guided-gradcam'), top=4)
    comparator.add_class('cwtest-comparator')  # the canvas checks find it by this
    comparator.wait()
    """,
    """\
    browser = cw.ActivationBrowser(probe, images[:2], layer='block1_conv2')
    browser.add_class('cwtest-browser')  # the canvas checks find it by this
    browser.wait()
    """,
    """\
    gallery = cw.FilterGallery(probe, layer='block1_conv1', mode='weights', per_page=8)
    gallery.add_class('cwtest-gallery')  # the canvas checks find it by this
    gallery.wait()
    """,
    "cw.OcclusionScrubber(probe, image, patch=16, stride=8).wait()",
    "cw.ModelOverview(probe, images=image).wait()",
    """\
    shapes, shape_labels, shape_boxes = cw.assets.make_shapes(12, seed=11)
    store = os.path.join(tempfile.mkdtemp(), "maps.zarr")
    cw.explain_dataset(probe, (shapes, shape_labels), out=store, boxes=shape_boxes,
                       progress=False)
    cw.DatasetExplorer(store, model=probe, per_page=6, cols=3).wait()
    """,
)


def write_widgets_notebook(path: pathlib.Path) -> pathlib.Path:
    """Every cnnwidgets widget once, each the last expression of its cell."""
    import nbformat

    cells = [nbformat.v4.new_markdown_cell("Every widget once, for the browser test.")]
    cells += [nbformat.v4.new_code_cell(textwrap.dedent(source)) for source in WIDGET_CELLS]
    return write_notebook(path, cells)
