"""The nbgrader course really grades: the student version has no solutions left
and imports no function that answers a task, and autograding three submissions
gives full marks to the solutions, partial credit step by step (each wrong step
loses exactly its points) and zero for untouched stubs.

Everything runs with nbgrader's own command line in a copy of course/ under
tmp_path; the graded notebook executes three times (about 15 s each)."""

from __future__ import annotations

import importlib.util
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
TOTAL = 17
# nbgrader's region markers (solutions, hidden tests)
MARKERS = tuple(
    f"### {edge} {region}" for region in ("SOLUTION", "HIDDEN TESTS") for edge in ("BEGIN", "END")
)

# Plausible mistakes, each wrong in one step only.
# Task 2: the padding of 'same' layers forgotten, so the field centres ('start')
# drift; sizes and jumps stay right.
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
# Task 3, step 3: the right weighted sum, but no ReLU.
WRONG_TASK3C = '''def cam_by_hand(acts, weights):
    maps = np.einsum("nhwc,nc->nhw", acts, weights)
    return (maps / maps.max(axis=(1, 2), keepdims=True)).astype(np.float32)'''
# Task 4: row and column of the maximum swapped.
WRONG_TASK4 = '''def pointing_hits(maps, boxes, tolerance=0):
    n, k, h, w = maps.shape
    hits = np.zeros((n, k), bool)
    for i in range(n):
        for j in range(k):
            x, y = divmod(int(maps[i, j].argmax()), w)
            top, left, bottom, right = boxes[i, j]
            hits[i, j] = top - tolerance <= y < bottom + tolerance and (
                left - tolerance <= x < right + tolerance
            )
    return hits'''
MISTAKES = {
    "task2_solution": WRONG_TASK2,
    "task3c_solution": WRONG_TASK3C,
    "task4_solution": WRONG_TASK4,
}
# What the mistakes cost: exactly these checks, and nothing else.
LOST = {"task2_start": 1, "task3c_check": 2, "task4_check": 2}


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
        "release", "submitted", "autograded", "feedback", "gradebook.db", "instructor"
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
        "some_steps_wrong": submission(release, {**solutions, **MISTAKES}),
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


def answering_functions() -> list[str]:
    """The names by_hand.py switches off during the checks."""
    spec = importlib.util.spec_from_file_location("by_hand", SOURCE.parent / "by_hand.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return sorted({name for functions in module.ANSWERS.values() for _, name in functions})


@pytest.mark.slow
def test_student_version_has_no_solutions_left(graded):
    release, source = graded["release"], graded["source"]
    text = nbformat.writes(release)
    for marker in MARKERS:
        assert marker not in text
    # no line of any solution region survives (lines of brackets alone, such as
    # "])", say nothing), and no hidden test (whose lines may repeat the visible checks)
    released = [c.source for c in release.cells]
    lines = {line.strip() for cell in released for line in cell.splitlines()}
    for cell in source.cells:
        region, block = None, []
        for line in cell.source.splitlines():
            if line.strip().startswith("### BEGIN"):
                region, block = line.strip().removeprefix("### BEGIN "), []
            elif line.strip().startswith("### END"):
                if region == "HIDDEN TESTS":
                    assert not any("\n".join(block) in c for c in released), block[0]
                region = None
            elif region:
                block.append(line)
                if region == "SOLUTION" and re.search(r"\w", line) and line.strip()[0] != "#":
                    assert line.strip() not in lines, line
    stubs = [c for c in release.cells if nbgrader_meta(c).get("solution")]
    assert len(stubs) == 9
    assert all("raise NotImplementedError()" in c.source for c in stubs)
    # instructions, set-up and checks are read-only; only the stubs are editable
    for cell in release.cells:
        if not nbgrader_meta(cell).get("solution"):
            assert cell.metadata.get("editable") is False, cell.source[:60]
            assert cell.metadata.get("deletable") is False
    # the helper the checks import is released beside the notebook
    assert (graded["course"] / "release" / ASSIGNMENT / "by_hand.py").exists()


@pytest.mark.slow
def test_student_set_up_imports_no_answering_function(graded):
    (setup,) = [c for c in graded["release"].cells if nbgrader_meta(c).get("grade_id") == "setup"]
    names = answering_functions()
    assert {"gradcam", "receptive_field", "pointing_game", "energy_inside"} <= set(names)
    for name in names:
        assert not re.search(rf"\b{name}\b", setup.source), name


@pytest.mark.slow
def test_solutions_score_full_marks(graded):
    points = task_points(graded["source"])
    right = graded["scores"]["all_right"]
    assert right["max"] == sum(points.values()) == TOTAL
    assert right["total"] == right["max"]
    assert right["cells"] == {**right["cells"], **points}


@pytest.mark.slow
def test_each_wrong_step_loses_exactly_its_points(graded):
    """A wrong task (the pointing game) loses all its points; a partly right one
    (receptive fields without padding, Grad-CAM without the ReLU) keeps the points
    of the steps it got right."""
    points = task_points(graded["source"])
    assert {gid: points[gid] for gid in LOST} == LOST
    wrong = graded["scores"]["some_steps_wrong"]
    for gid, p in points.items():
        assert wrong["cells"][gid] == (0 if gid in LOST else p), gid
    assert wrong["total"] == TOTAL - sum(LOST.values()) == 12
    # partial credit: both partly wrong tasks keep their other steps' points
    task2 = [gid for gid in points if gid.startswith("task2")]
    task3 = [gid for gid in points if gid.startswith("task3")]
    assert sum(wrong["cells"][gid] for gid in task2) == 2 == sum(points[g] for g in task2) - 1
    assert sum(wrong["cells"][gid] for gid in task3) == 2 == sum(points[g] for g in task3) - 2


@pytest.mark.slow
def test_stubs_score_zero_without_crashing_the_grader(graded):
    stubs = graded["scores"]["stubs_left"]
    assert stubs["total"] == 0
    assert set(stubs["cells"].values()) == {0}
    # the grader ran every cell: the autograded notebook shows each check's error
    path = graded["course"] / "autograded" / "stubs_left" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    nb = nbformat.read(path, as_version=4)
    checks = [c for c in nb.cells if nbgrader_meta(c).get("grade")]
    assert len(checks) == len(task_points(graded["source"])) == 12
    for cell in checks:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        # a function's stub raises; a short answer's stub leaves the answer undefined
        short_answer = nbgrader_meta(cell)["grade_id"] in ("task5_model", "task5_class")
        expected = "NameError" if short_answer else "NotImplementedError"
        assert errors and errors[0].ename == expected, cell.source[:60]


# ------------------------------------------- the library's answers are switched off


def test_by_hand_switches_the_answering_functions_off():
    """Inside by_hand, the library's answer raises, under any name it was imported
    as; outside, it works again. Each function it names exists in the library."""
    import numpy as np

    import cnnwidgets as cw
    from cnnwidgets.explain.metrics import pointing_game as renamed

    spec = importlib.util.spec_from_file_location("by_hand", SOURCE.parent / "by_hand.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["by_hand"] = module  # the refusal finds its exception class by name
    try:
        spec.loader.exec_module(module)
        maps = np.zeros((1, 1, 4, 4))
        maps[0, 0, 1, 2] = 1.0
        box = np.array([[[0, 0, 2, 3]]])
        with module.by_hand(*module.ANSWERS):
            with pytest.raises(module.ComputeItYourself, match="compute it yourself"):
                renamed(maps, box)
            with pytest.raises(module.ComputeItYourself):
                cw.receptive_field(None, "layer")
            with pytest.raises(module.ComputeItYourself):
                cw.gradcam(None, None)
        assert renamed(maps, box) == 1.0
    finally:
        sys.modules.pop("by_hand", None)


# ------------------------------------------------ the worked copy, for instructors


def test_worked_copy_is_the_source_with_its_solutions(tmp_path):
    """scripts/course.py worked writes the source with its solutions and hidden tests
    in, nbgrader's markers and metadata out, beside by_hand.py, so it runs as it is.
    (The round trip above executes every solution cell and hidden test.) It is
    instructor material: nothing in notebooks/ holds the solutions."""
    spec = importlib.util.spec_from_file_location("course_script", ROOT / "scripts" / "course.py")
    course = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(course)
    path = course.write_worked(tmp_path)
    assert (tmp_path / "by_hand.py").exists()
    worked = nbformat.read(path, as_version=4)
    source = nbformat.read(SOURCE, as_version=4)
    assert len(worked.cells) == len(source.cells)
    for mine, theirs in zip(worked.cells[1:], source.cells[1:]):
        assert mine.source == strip_markers(theirs.source)
    assert not any("nbgrader" in c.metadata for c in worked.cells)
    text = "\n".join(c.source for c in worked.cells)
    assert not re.search(r"### (BEGIN|END) ", text)
    assert 'tag_class = "cross"' in text  # solutions and hidden tests are in
    assert course.WORKED.parent == COURSE / "instructor"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(course.WORKED)], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, "course/instructor/ must be ignored by git"
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):
        for answer in ("def acts_and_grads", "def cam_by_hand", "relies_on_tag ="):
            assert answer not in notebook.read_text(), notebook.name
