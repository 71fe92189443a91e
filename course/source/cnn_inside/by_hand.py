"""Switches off the library functions that would answer a task in one call.

The checks of the cnn_inside assignment run your function inside
``by_hand(...)``: there, calling one of the functions listed in ``ANSWERS``
raises ``ComputeItYourself``, wherever you imported it from. The checks
compute the library's answer outside, before or after, and compare.

    with by_hand("gradcam"):
        mine = gradcam_by_hand(acts, weights)   # cw.gradcam(...) in here raises

This file is released with the assignment; nbgrader copies the course's own
version back before it grades, so changing it does not change your grade.
"""

from __future__ import annotations

import contextlib
import importlib

__all__ = ["ANSWERS", "ComputeItYourself", "by_hand"]

#: For each task, the library functions that answer it (module, function name).
ANSWERS = {
    "receptive fields": [
        ("cnnwidgets.explain.receptive_field", "receptive_field"),
        ("cnnwidgets.explain.receptive_field", "receptive_fields"),
        ("cnnwidgets.explain.receptive_field", "conv_step"),
    ],
    "gradcam": [
        ("cnnwidgets.explain.cam", "gradcam"),
        ("cnnwidgets.explain.cam", "channel_weights"),
        ("cnnwidgets.explain.common", "normalize_maps"),
        ("cnnwidgets.gradients", "layer_gradients"),
    ],
    "pointing game": [
        ("cnnwidgets.explain.metrics", "pointing_game"),
    ],
    "energy": [
        ("cnnwidgets.dataset.scores", "energy_inside"),
        ("cnnwidgets.dataset.scores", "box_masks"),
    ],
}


class ComputeItYourself(RuntimeError):
    """A library function was called where the task asks you to compute it yourself."""


def _refusal(name: str, task: str):
    """The code of a function that refuses to run. It reads no global names (it
    finds this module with the built-in ``__import__``), so it works in place of
    a function of any module."""
    message = f"{name}: this task ({task}) asks you to compute it yourself"
    raiser = f"__import__({__name__!r}).ComputeItYourself({message!r})"
    namespace: dict = {}
    exec(f"def {name}(*args, **kwargs):\n    raise {raiser}\n", {}, namespace)
    return namespace[name].__code__


@contextlib.contextmanager
def by_hand(*tasks: str):
    """Inside the block, the library functions that answer ``tasks`` raise.

    The function objects themselves are switched (their code, for the time of
    the block), so a copy imported under another name refuses as well."""
    switched = []
    try:
        for task in tasks:
            for module, name in ANSWERS[task]:
                function = getattr(importlib.import_module(module), name)
                if function.__closure__:  # not a plain function: cannot be switched
                    raise TypeError(f"{module}.{name} cannot be switched off")
                switched.append((function, function.__code__))
                function.__code__ = _refusal(name, task)
        yield
    finally:
        for function, code in reversed(switched):
            function.__code__ = code
