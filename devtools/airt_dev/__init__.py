"""Local development: the kwok-backed control plane and its fake GPU node pool."""
