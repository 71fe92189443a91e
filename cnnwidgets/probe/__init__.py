"""The one place that understands Keras graphs.

- :mod:`~cnnwidgets.probe.trace`: re-trace a model into one flat graph (layers,
  keras.ops nodes, nested models) and its layer catalog;
- :mod:`~cnnwidgets.probe.head`: the class scores on logits, binary heads;
- :mod:`~cnnwidgets.probe.images`: checks on images and preprocessing;
- :mod:`~cnnwidgets.probe.version`: the weights version every cache key holds;
- :mod:`~cnnwidgets.probe.kinds`: what is known about each layer kind;
- :mod:`~cnnwidgets.probe.core`: the :class:`Probe` in front of them.
"""

from cnnwidgets.probe.core import (
    DEFAULT_MEMORY_BUDGET,
    Probe,
    as_probe,
    check_batch_size,
    quiet_retracing,
)
from cnnwidgets.probe.head import Head
from cnnwidgets.probe.trace import LayerInfo
from cnnwidgets.probe.version import weights_digest, weights_held, weights_version

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "Head",
    "LayerInfo",
    "Probe",
    "as_probe",
    "check_batch_size",
    "quiet_retracing",
    "weights_digest",
    "weights_held",
    "weights_version",
]
