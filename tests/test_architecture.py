"""The layering rule's second half: no module imports another module's
private name (`from cnnwidgets.x import _y`). The layers themselves are an
import-linter contract in pyproject.toml, checked by `lint-imports` in `make lint`."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "cnnwidgets"


def test_no_private_names_imported_across_modules():
    offences = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cnnwidgets"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private:
                    offences.append(f"{path.relative_to(PACKAGE.parent)}: {node.module} {private}")
    assert not offences, offences


def test_no_module_writes_into_a_probe():
    offences = [
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if "probe.__dict__" in path.read_text()
    ]
    assert not offences
