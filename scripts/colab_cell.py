"""The set-up cell every notebook starts with, and the tool that puts it there.

    python scripts/colab_cell.py                      # all of notebooks/*.ipynb
    python scripts/colab_cell.py notebooks/08_*.ipynb # one (or a few) notebooks
    python scripts/colab_cell.py --check              # exit 1 if a notebook lacks it

The cell installs cnnwidgets when it is missing (Google Colab, a fresh kernel)
and turns on Colab's custom widget manager, without which bqplot and other
third-party widgets do not render there. Where cnnwidgets is installed it
does nothing. Applying it is idempotent: the cell is recognized by its tag
and first line, replaced if it changed, inserted before the first code cell
otherwise. Other cells are left alone; re-execute the notebook afterwards
(scripts/refresh_notebooks.py) so its committed outputs stay valid.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]
TAG = "colab-setup"
FIRST_LINE = "# Set-up for Colab and fresh kernels: a no-op where cnnwidgets is installed"
SOURCE_URL = "git+https://github.com/cnnwidgets/cnnwidgets"


def cell_source(package: str = "cnnwidgets", url: str = SOURCE_URL) -> str:
    """The cell's code. ``package``/``url`` are parameters so tests can ask for
    a missing package and see the install it would run (without running it)."""
    return (
        f"{FIRST_LINE}\n"
        "import importlib.util\n"
        "import sys\n"
        "\n"
        f'if importlib.util.find_spec("{package}") is None:\n'
        f'    %pip install --quiet "{package} @ {url}"\n'
        'if "google.colab" in sys.modules:\n'
        "    from google.colab import output\n"
        "\n"
        "    output.enable_custom_widget_manager()  # bqplot and ipywidgets in Colab"
    )


def is_setup_cell(cell) -> bool:
    return cell.cell_type == "code" and (
        TAG in cell.metadata.get("tags", []) or cell.source.startswith(FIRST_LINE)
    )


def apply(nb: nbformat.NotebookNode) -> bool:
    """Make the notebook's first code cell the set-up cell; True if it changed."""
    codes = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    source = cell_source()
    if codes and is_setup_cell(nb.cells[codes[0]]):
        cell = nb.cells[codes[0]]
        tags = cell.metadata.get("tags", [])
        if cell.source == source and TAG in tags:
            return False
        cell.source = source
        cell.outputs, cell.execution_count = [], None
        cell.metadata["tags"] = sorted(set(tags) | {TAG})
        return True
    # a stale copy further down (say, after cells were moved) goes; one cell leads
    nb.cells = [c for c in nb.cells if not is_setup_cell(c)]
    codes = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": [TAG]})
    cell.pop("id", None)
    if nb.nbformat_minor >= 5:
        cell.id = "colab-setup"
    nb.cells.insert(codes[0] if codes else len(nb.cells), cell)
    return True


def has_cell(nb: nbformat.NotebookNode) -> bool:
    """True when the first code cell is the current set-up cell."""
    codes = [c for c in nb.cells if c.cell_type == "code"]
    return bool(codes) and codes[0].source == cell_source()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=pathlib.Path)
    parser.add_argument("--check", action="store_true", help="change nothing, exit 1 if stale")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    stale = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if args.check:
            if not has_cell(nb):
                stale.append(path)
            continue
        if apply(nb):
            nbformat.write(nb, path)
            print(f"{path}: set-up cell written; re-execute with scripts/refresh_notebooks.py")
        else:
            print(f"{path}: up to date")
    for path in stale:
        print(f"{path}: first code cell is not the set-up cell (run scripts/colab_cell.py)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
