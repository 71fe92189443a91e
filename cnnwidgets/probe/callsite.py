"""Warnings that point at the user's line, however deep the library called.

A fixed ``stacklevel`` is right for one caller only: a Probe built by
``cw.Probe(model)``, by ``cw.gradcam(model, ...)`` or inside a widget sits at
different depths. The warning is attributed to the first frame outside
cnnwidgets (and outside the Keras and TensorFlow code it calls back into).
"""

from __future__ import annotations

import pathlib
import sys
import warnings

import keras

_PACKAGE = str(pathlib.Path(__file__).resolve().parents[1])
_INTERNAL = (_PACKAGE, str(pathlib.Path(keras.__file__).resolve().parent))


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes :func:`warnings.warn`, called by the
    caller of this function, name the first frame outside cnnwidgets."""
    level, frame = 1, sys._getframe(1)  # the frame that will call warnings.warn
    while frame is not None:
        filename = str(pathlib.Path(frame.f_code.co_filename).resolve())
        if not filename.startswith(_INTERNAL) and "importlib" not in filename:
            return level
        frame = frame.f_back
        level += 1
    return 1


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """:func:`warnings.warn` attributed to the user's own line."""
    warnings.warn(message, category, stacklevel=user_stacklevel())
