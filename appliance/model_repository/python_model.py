"""Triton Python-backend model: runs ``model.onnx`` from its version folder with onnxruntime.

This file is copied to ``<repository>/<model>/<version>/model.py`` by
:func:`appliance.model_repository.build_repository`; Triton imports it inside the backend
stub process, so it may only import the standard library, numpy, onnxruntime and
``triton_python_backend_utils`` (provided by the stub).

Input ``image``: float32 (z, y, x) HU. Output ``probabilities``: float32 (class, z, y, x).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """One onnxruntime session per model instance, CPU execution."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = config.get("parameters", {})
        threads = int(params.get("intra_op_threads", {}).get("string_value", "0"))
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        # 0 lets onnxruntime use every core; hosts that share cores with the DICOM adapter set it.
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            image = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            if image.ndim != 3 or min(image.shape) < 3:
                message = f"expected a (z, y, x) volume of at least 3 voxels per axis, got {image.shape}"
                error = pb_utils.TritonError(message)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            image = np.ascontiguousarray(image, dtype=np.float32)
            (probs,) = self.session.run([self.output_name], {self.input_name: image})
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, probs)]))
        return responses

    def finalize(self) -> None:
        self.session = None
