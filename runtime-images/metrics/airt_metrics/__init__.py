"""The airt metrics sidecar: the one port Prometheus scrapes, never in the inference path."""
