"""The course assignment's worked copy, for instructors.

    python scripts/course.py worked   # writes course/instructor/cnn_inside_worked.ipynb

The one source is the nbgrader notebook course/source/cnn_inside/cnn_inside.ipynb
(edit it in Jupyter; nbgrader's "Create Assignment" tool shows its cell roles).
Students get the version `nbgrader generate_assignment` makes from it (stubs in
place of the solutions, hidden tests removed). The worked copy is the same cells
with the solutions and the hidden tests in and nbgrader's markers and metadata out,
beside the files the assignment releases (by_hand.py), so it runs as it is.

The worked copy holds the answers: it is instructor material, made on demand into
course/instructor/ (ignored by git), never published with the tutorial notebooks.
`make test` grades the solutions with nbgrader itself (tests/test_nbgrader_course.py).
"""

from __future__ import annotations

import copy
import pathlib
import shutil
import sys

import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]
ASSIGNMENT = "cnn_inside"
SOURCE_DIR = ROOT / "course" / "source" / ASSIGNMENT
SOURCE = SOURCE_DIR / f"{ASSIGNMENT}.ipynb"
INSTRUCTOR = ROOT / "course" / "instructor"
WORKED = INSTRUCTOR / f"{ASSIGNMENT}_worked.ipynb"
# nbgrader's region markers (solutions, hidden tests)
MARKERS = tuple(
    f"### {edge} {region}" for region in ("SOLUTION", "HIDDEN TESTS") for edge in ("BEGIN", "END")
)
NOTE = (
    "*Instructor copy, not for students: the course assignment in "
    "`course/source/cnn_inside/` with its solutions and hidden tests in, made by "
    "`python scripts/course.py worked`. Students get the version "
    "`nbgrader generate_assignment cnn_inside` makes, with stubs in place of the "
    "solutions, and `nbgrader autograde` grades it.*"
)


def strip_markers(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if line.strip() not in MARKERS)


def worked(source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The worked copy of an nbgrader source notebook (a new notebook; outputs cleared)."""
    nb = copy.deepcopy(source)
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
        cell.source = strip_markers(cell.source)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    first = nb.cells[0]
    title, _, rest = first.source.partition("\n")
    first.source = f"{title} (worked)\n\n{NOTE}\n{rest}"
    return nb


def write_worked(folder: pathlib.Path = INSTRUCTOR) -> pathlib.Path:
    """Write the worked copy and the assignment's other files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in SOURCE_DIR.iterdir():
        if path.is_file() and path.suffix != ".ipynb":
            shutil.copy(path, folder / path.name)
    target = folder / WORKED.name
    nbformat.write(worked(nbformat.read(SOURCE, as_version=4)), target)
    return target


def main(argv: list[str]) -> int:
    if argv != ["worked"]:
        print(__doc__)
        return 2
    target = write_worked()
    print(f"wrote {target.relative_to(ROOT)} (instructor material: not committed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
