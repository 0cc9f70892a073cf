"""airt's MLServer image: MLServer from PyPI plus a small runtime for the example MLP.

MLServer (`mlserver start`) imports `airt_mlserver.runtime.NpzMlp` when a model's settings name
it (MLSERVER_MODEL_IMPLEMENTATION, or `implementation` in a model-settings.json). This package
imports nothing of MLServer itself, so `airt_mlserver.mlp` runs (and is tested) without it.
"""
