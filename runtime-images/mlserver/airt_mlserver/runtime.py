"""`NpzMlp`: an MLServer runtime that serves the example MLP from its .npz weights.

Imported by MLServer (`mlserver start`) when a model's settings name
`airt_mlserver.runtime.NpzMlp`: the example InferenceRuntime (examples/runtimes/byo/mlserver.yaml)
sets MLSERVER_MODEL_IMPLEMENTATION and MLSERVER_MODEL_URI, so a model fetched as one .npz file
needs no model-settings.json. The arithmetic is airt_mlserver.mlp's; this module only translates
between MLServer's v2 types and arrays, and turns bad requests into MLServer's InferenceError
(HTTP 400, gRPC INVALID_ARGUMENT) instead of a 500.

Weights it cannot load end the process with exit code 1 and a `ModelLoadFailed` termination
message (airt_mlserver.termination), so the ModelDeployment says why. Left to MLServer, a load
failure stops the server cleanly and exits 0, which Kubernetes takes for a clean exit: the pod
would restart for ever with nothing in its status but the restarts. This holds with
MLSERVER_PARALLEL_WORKERS=0 (the shipped runtime), where models load in the server's process.
"""

from __future__ import annotations

import logging
import os
import sys

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse, MetadataTensor
from mlserver.utils import get_model_uri

from airt_mlserver.mlp import INPUT, OUTPUTS, Mlp
from airt_mlserver.termination import load_failure_message, write_termination_message

log = logging.getLogger(__name__)


class NpzMlp(MLModel):  # type: ignore[misc]  # MLServer ships no type information
    """The MLP of examples/build_models.py, answering like the airt worker does for it."""

    async def load(self) -> bool:
        try:
            self._mlp = Mlp.load(await get_model_uri(self.settings))
        except Exception as exc:
            message = load_failure_message(self.name, exc)
            write_termination_message(message)
            log.error("%s", message)
            sys.stderr.flush()
            os._exit(1)  # not MLServer's clean shutdown: that exits 0 (see the module docstring)
        # Metadata for clients that ask (tritonclient, kubectl airt infer) when the settings
        # declare none: what the weights say, with a variable batch dimension.
        if not self.settings.inputs:
            self.inputs = [
                MetadataTensor(name=INPUT, datatype="FP32", shape=[-1, self._mlp.in_features])
            ]
        if not self.settings.outputs:
            self.outputs = [
                MetadataTensor(name=name, datatype="FP32", shape=[-1, self._mlp.out_features])
                for name in OUTPUTS
            ]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        if [i.name for i in payload.inputs] != [INPUT]:
            raise InferenceError(f"expected one input named {INPUT}")
        tensor = payload.inputs[0]
        # MLServer's types keep enum values as plain strings; str() of either spelling is "FP32".
        datatype = str(getattr(tensor.datatype, "value", tensor.datatype))
        if datatype != "FP32":
            raise InferenceError(f"{INPUT} must be FP32, got {datatype}")
        try:
            out = self._mlp(NumpyCodec.decode_input(tensor))
        except ValueError as exc:  # InputError, or a shape that does not fit the data
            raise InferenceError(str(exc)) from exc
        wanted = [o.name for o in payload.outputs] if payload.outputs else list(OUTPUTS)
        unknown = sorted(set(wanted) - set(out))
        if unknown:
            raise InferenceError(f"unknown outputs {unknown}; this model has {list(OUTPUTS)}")
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(name, out[name]) for name in wanted],
        )
