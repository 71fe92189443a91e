"""Re-execute the tutorial notebooks in place and tidy their outputs.

    python scripts/refresh_notebooks.py [notebooks/03_*.ipynb ...]   # default: all

Needed after anything that changes printed numbers (a retrained demo model, a
new default). Keeps what nbval compares: stdout and results. Drops stderr
streams (TensorFlow's start-up chatter differs between machines) and the saved
widget state (Lab rebuilds live widgets from the kernel; the static PNG beside
each widget view stays in the outputs).
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

import nbformat
from nbconvert.preprocessors import ExecutePreprocessor

ROOT = pathlib.Path(__file__).resolve().parents[1]


def refresh(path: pathlib.Path, timeout: int = 900) -> float:
    """Execute one notebook in its own folder; returns the seconds it took."""
    start = time.perf_counter()
    nb = nbformat.read(path, as_version=4)
    ExecutePreprocessor(timeout=timeout, kernel_name="python3").preprocess(
        nb, {"metadata": {"path": str(path.parent)}}
    )
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [
                o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")
            ]
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    return time.perf_counter() - start


def main(paths: list[str]) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    targets = [pathlib.Path(p) for p in paths] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in targets:
        print(f"{path.name}: {refresh(path.resolve()):.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
