"""The one place that understands Keras graphs. One module, one job:

- :mod:`~cnnwidgets.probe.core`: the :class:`Probe` in front of the others
  (layer catalog, cached submodels, predictions, memory budget, caches);
- :mod:`~cnnwidgets.probe.trace`: re-trace a model into one flat graph (layers,
  keras.ops nodes, nested models) and its layer catalog (:class:`LayerInfo`);
- :mod:`~cnnwidgets.probe.head`: the class scores on logits, binary heads;
- :mod:`~cnnwidgets.probe.targets`: what score an explanation explains (public
  as ``cw.targets``: Class, Labels, Regression, Region, Output, functions, sums);
- :mod:`~cnnwidgets.probe.images`: checks on images and preprocessing;
- :mod:`~cnnwidgets.probe.version`: the weights version every cache key holds;
- :mod:`~cnnwidgets.probe.kinds`: the tables of what is known about each layer kind;
- :mod:`~cnnwidgets.probe.geometry`: layer geometry: a layer's window and border,
  TensorFlow's 'same' padding (receptive fields, incremental occlusion, deconvnet);
- :mod:`~cnnwidgets.probe.randomize`: a twin of a model with re-initialized weights;
- :mod:`~cnnwidgets.probe.incremental`: incremental occlusion, a subpackage:
  ``windows`` (window geometry per node), ``propagation`` (the graph as the
  engine runs it, and the one walk of a changed region through it), ``cost``
  (time and memory model, and the one engine-choice policy) and ``executor``
  (:class:`~cnnwidgets.probe.incremental.IncrementalModel`).
"""

from cnnwidgets.probe import targets
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
    "targets",
    "weights_digest",
    "weights_held",
    "weights_version",
]
