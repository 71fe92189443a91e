"""The Colab set-up cell: every notebook starts with it, it does nothing where
cnnwidgets is installed, and it would install the package and turn on Colab's
widget manager where they are needed. Run in a fresh IPython in a subprocess."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def colab_cell():
    spec = importlib.util.spec_from_file_location("colab_cell", ROOT / "scripts" / "colab_cell.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Runs a cell in a real IPython shell. Every process the cell would start and
# every magic it calls is recorded by an audit hook / a wrapper; with FAKE_PIP
# the magic is recorded instead of run, so a missing package is never installed.
RUNNER = r"""
import json, sys, types
events = []
sys.addaudithook(
    lambda event, args: events.append(event)
    if event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn") else None
)
from IPython.core.interactiveshell import InteractiveShell

cfg = json.loads(sys.argv[1])
shell = InteractiveShell.instance()
magics = []
real_magic = shell.run_line_magic

def run_line_magic(name, line, *args, **kwargs):
    magics.append([name, line])
    if not cfg["fake_pip"]:
        return real_magic(name, line, *args, **kwargs)

shell.run_line_magic = run_line_magic
widget_manager = []
if cfg["colab"]:  # what Colab's kernel has imported before any cell runs
    colab = types.ModuleType("google.colab")
    enable = lambda: widget_manager.append(1)
    colab.output = types.SimpleNamespace(enable_custom_widget_manager=enable)
    sys.modules["google"] = types.ModuleType("google")
    sys.modules["google.colab"] = colab
result = shell.run_cell(cfg["source"])
print(json.dumps({
    "ok": result.success, "magics": magics, "processes": events,
    "widget_manager": len(widget_manager),
}))
"""


def run_cell(source: str, fake_pip: bool = False, colab: bool = False) -> dict:
    cfg = json.dumps({"source": source, "fake_pip": fake_pip, "colab": colab})
    out = subprocess.run(
        [sys.executable, "-c", RUNNER, cfg],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_notebook_starts_with_the_cell(colab_cell):
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code")
        assert first.source == colab_cell.cell_source(), f"{path.name}: run scripts/colab_cell.py"
        assert colab_cell.TAG in first.metadata.get("tags", [])
        assert first.outputs == [], f"{path.name}: the set-up cell printed something"
        assert sum(colab_cell.is_setup_cell(c) for c in nb.cells) == 1


def test_cell_is_a_no_op_where_cnnwidgets_is_installed(colab_cell):
    """The real cell, real magics: no pip, no process started, nothing printed."""
    report = run_cell(colab_cell.cell_source())
    assert report == {"ok": True, "magics": [], "processes": [], "widget_manager": 0}


def test_cell_installs_a_missing_package_from_the_project(colab_cell):
    report = run_cell(colab_cell.cell_source(package="cnnwidgets_not_here"), fake_pip=True)
    assert report["ok"] and report["processes"] == []
    [[magic, line]] = report["magics"]
    assert magic == "pip"
    assert line.startswith("install ") and "cnnwidgets_not_here @ git+https://github.com/" in line


def test_cell_turns_on_colabs_widget_manager(colab_cell):
    report = run_cell(colab_cell.cell_source(), colab=True)
    assert report["ok"] and report["magics"] == [] and report["widget_manager"] == 1


def test_apply_is_idempotent_and_inserts_before_the_first_code_cell(colab_cell):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("import cnnwidgets as cw"),
    ]
    assert colab_cell.apply(nb)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code"]
    assert colab_cell.has_cell(nb) and nb.cells[2].source == "import cnnwidgets as cw"
    before = nbformat.writes(nb)
    assert not colab_cell.apply(nb)
    assert nbformat.writes(nb) == before
    # an older version of the cell is replaced in place, not duplicated
    nb.cells[1].source = colab_cell.FIRST_LINE + "\nprint('old')"
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="old\n")]
    assert colab_cell.apply(nb)
    assert len(nb.cells) == 3 and nb.cells[1].source == colab_cell.cell_source()
    assert nb.cells[1].outputs == []
    nbformat.validate(nb)


def test_check_mode_reports_a_notebook_without_the_cell(colab_cell, tmp_path):
    path = tmp_path / "bare.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nbformat.write(nb, path)
    assert colab_cell.main(["--check", str(path)]) == 1
    assert colab_cell.main([str(path)]) == 0
    assert colab_cell.main(["--check", str(path)]) == 0
