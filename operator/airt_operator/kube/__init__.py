"""The operator's edge to the API server: server-side apply, status patches, Events."""
