"""airt's operator package: API models, CRD generation, rendering, the kopf operator, the CLI.

Importing this package is cheap and pulls in neither kopf nor torch, so the worker image can
carry the CLI without the operator's dependencies.
"""

__version__ = "0.1.0"
