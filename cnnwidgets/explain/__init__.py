"""Pure computations: numpy in, numpy out (CAMs, saliency, occlusion,
features, metrics). Nothing here imports ipywidgets."""
