"""The contract between airt's products: typed models that the operator writes and the worker
reads, with no dependency beyond pydantic (no torch, no kopf, no Kubernetes client).

Imported by the operator (which builds a worker's configuration from a ModelDeployment and its
InferenceRuntime) and by the worker (which parses it). Neither product imports the other.
"""
