"""ipywidgets + bqplot views over cnnwidgets.explain. Widgets never import
TensorFlow or compute gradients themselves."""
