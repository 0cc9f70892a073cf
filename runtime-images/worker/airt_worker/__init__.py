"""The airt inference worker: Open Inference Protocol (v2) over HTTP and gRPC for torch models."""
