"""The nbgrader course really grades: the student version has no solutions left,
and autograding three submissions gives full marks to the solutions, loses
exactly one task's points for one wrong task and zero for untouched stubs.

Everything runs with nbgrader's own command line in a copy of course/ under
tmp_path; the graded notebook executes three times (about 10 s each)."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

pytest.importorskip("nbgrader")
from nbgrader.api import Gradebook  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
COURSE = ROOT / "course"
ASSIGNMENT = "cnn_inside"
SOURCE = COURSE / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
# nbgrader's region markers (solutions, hidden tests)
MARKERS = tuple(
    f"### {edge} {region}" for region in ("SOLUTION", "HIDDEN TESTS") for edge in ("BEGIN", "END")
)

# A plausible mistake for task 2: the padding of 'same' layers forgotten, so the
# field centres ('start') drift; sizes and jumps stay right.
WRONG_TASK2 = '''def fields_by_hand(layers):
    size, jump, start = 1, 1, 0.0
    out = {}
    for name, kind, cfg in layers:
        if kind in ("Conv2D", "MaxPooling2D"):
            k = (cfg.get("kernel_size") or cfg["pool_size"])[0]
            size += (k - 1) * jump
            start += (k - 1) / 2 * jump
            jump *= cfg["strides"][0]
        out[name] = (size, jump, start)
    return out'''


def nbgrader_meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def strip_markers(source: str) -> str:
    """The solution as written in the source, without nbgrader's region markers."""
    return "\n".join(
        line for line in source.splitlines() if line.strip() not in MARKERS
    )


def nbgrader(course: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    # nbgrader runs its database migrations with the `alembic` script of this
    # environment, and the grading kernel must import this checkout
    env["PATH"] = os.pathsep.join([str(pathlib.Path(sys.executable).parent), env["PATH"]])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    out = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "[ERROR]" not in out.stderr, out.stderr[-3000:]
    return out


def submission(release: nbformat.NotebookNode, solutions: dict[str, str]) -> nbformat.NotebookNode:
    """The released notebook with some solution cells filled in (by grade id)."""
    nb = nbformat.from_dict(release)
    for cell in nb.cells:
        gid = nbgrader_meta(cell).get("grade_id")
        if nbgrader_meta(cell).get("solution") and gid in solutions:
            cell.source = solutions[gid]
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Generate the student version, submit three notebooks, autograde them."""
    course = tmp_path_factory.mktemp("course")
    shutil.copytree(COURSE, course, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
        "release", "submitted", "autograded", "feedback", "gradebook.db"
    ))
    nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    release = nbformat.read(course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)

    source = nbformat.read(SOURCE, as_version=4)
    solutions = {
        nbgrader_meta(c)["grade_id"]: strip_markers(c.source)
        for c in source.cells
        if nbgrader_meta(c).get("solution")
    }
    submissions = {
        "all_right": submission(release, solutions),
        "task2_wrong": submission(release, {**solutions, "task2_solution": WRONG_TASK2}),
        "stubs_left": submission(release, {}),
    }
    for student, nb in submissions.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{ASSIGNMENT}.ipynb")
    nbgrader(course, "autograde", ASSIGNMENT, "--create", "--force")

    scores = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student in submissions:
            sub = gb.find_submission(ASSIGNMENT, student)
            nb = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
            scores[student] = {
                "total": sub.score,
                "max": sub.max_score,
                "cells": {g.name: g.score for g in nb.grades},
            }
    return {"course": course, "release": release, "source": source, "scores": scores}


def task_points(source) -> dict[str, float]:
    return {
        nbgrader_meta(c)["grade_id"]: float(nbgrader_meta(c)["points"])
        for c in source.cells
        if nbgrader_meta(c).get("grade")
    }


@pytest.mark.slow
def test_student_version_has_no_solutions_left(graded):
    release, source = graded["release"], graded["source"]
    text = nbformat.writes(release)
    for marker in MARKERS:
        assert marker not in text
    # no line of any solution region, and no hidden test, survives
    for cell in source.cells:
        inside = False
        for line in cell.source.splitlines():
            if line.strip().startswith("### BEGIN"):
                inside = True
            elif line.strip().startswith("### END"):
                inside = False
            elif inside and line.strip() and not line.strip().startswith("#"):
                assert line not in text, line
    stubs = [c for c in release.cells if nbgrader_meta(c).get("solution")]
    assert len(stubs) == 4
    assert all("raise NotImplementedError()" in c.source for c in stubs)
    # instructions, set-up and checks are read-only; only the four stubs are editable
    for cell in release.cells:
        if not nbgrader_meta(cell).get("solution"):
            assert cell.metadata.get("editable") is False, cell.source[:60]
            assert cell.metadata.get("deletable") is False


@pytest.mark.slow
def test_solutions_score_full_marks(graded):
    points = task_points(graded["source"])
    right = graded["scores"]["all_right"]
    assert right["max"] == sum(points.values()) == 10
    assert right["total"] == right["max"]
    assert right["cells"] == {**right["cells"], **points}


@pytest.mark.slow
def test_one_wrong_task_loses_exactly_its_points(graded):
    points = task_points(graded["source"])
    wrong = graded["scores"]["task2_wrong"]
    assert wrong["total"] == 10 - points["task2_check"] == 7
    assert wrong["cells"]["task2_check"] == 0
    for gid, p in points.items():
        if gid != "task2_check":
            assert wrong["cells"][gid] == p, gid


@pytest.mark.slow
def test_stubs_score_zero_without_crashing_the_grader(graded):
    stubs = graded["scores"]["stubs_left"]
    assert stubs["total"] == 0
    assert set(stubs["cells"].values()) == {0}
    # the grader ran every cell: the autograded notebook shows each check's error
    path = graded["course"] / "autograded" / "stubs_left" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    nb = nbformat.read(path, as_version=4)
    checks = [c for c in nb.cells if nbgrader_meta(c).get("grade")]
    assert len(checks) == 4
    for cell in checks:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert errors and errors[0].ename == "NotImplementedError", cell.source[:60]


# ------------------------------------------------------ the tutorial copy stays in step


def test_tutorial_06_is_the_source_with_its_solutions():
    """notebooks/06_assignment.ipynb is generated from the course source by
    scripts/course.py tutorial (solutions in, markers out) and committed executed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("course_script", ROOT / "scripts" / "course.py")
    course = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(course)
    expected = course.tutorial(nbformat.read(SOURCE, as_version=4))
    actual = nbformat.read(ROOT / "notebooks" / "06_assignment.ipynb", as_version=4)
    assert [(c.cell_type, c.source) for c in actual.cells] == [
        (c.cell_type, c.source) for c in expected.cells
    ], "run: python scripts/course.py tutorial, then scripts/refresh_notebooks.py on 06"
    assert not any("nbgrader" in c.metadata for c in actual.cells)
    assert not re.search(r"### (BEGIN|END) ", nbformat.writes(actual))
