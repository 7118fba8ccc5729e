"""The appliance's Triton model repository, built from source into a folder Triton can serve.

Nothing binary is checked in: :func:`build_repository` writes, per model::

    DEST/<model>/config.pbtxt
    DEST/<model>/1/model.onnx     # deterministic graph from onnx_graph.py
    DEST/<model>/1/model.py       # only for the Python backend (tritonserver from nvidia-pytriton)

``backend="python"`` serves the ONNX file through onnxruntime inside a Python-backend model
(the only backend the ``nvidia-pytriton`` wheel ships); ``backend="onnxruntime"`` writes a
config for Triton's native ONNX Runtime backend, as in the official Triton containers on GPU
hosts. Both have the same tensor names and shapes, so workflows do not change.

Command line: ``python -m appliance.model_repository DEST [--backend onnxruntime --kind gpu]``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import onnx

from appliance.model_repository.onnx_graph import NetworkSpec, OrganClass, build_network

Backend = Literal["python", "onnxruntime"]
Kind = Literal["cpu", "gpu"]

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"


@dataclass(frozen=True)
class ModelDefinition:
    """A model of the repository: its Triton name and the network it serves."""

    name: str
    network: NetworkSpec


# Organ HU centres match appliance.phantom; the widths were tuned on it (Dice in docs/pipeline.md).
_LIVER = OrganClass("liver", 95.0, 15.0)
MODELS: tuple[ModelDefinition, ...] = (
    ModelDefinition(
        "organ_seg_ct",
        NetworkSpec((_LIVER, OrganClass("spleen", 135.0, 15.0), OrganClass("kidneys", 190.0, 30.0)),
                    gradient_hu=60.0),
    ),
    ModelDefinition("liver_seg_ct", NetworkSpec((_LIVER,), gradient_hu=60.0)),
)


def config_pbtxt(model: ModelDefinition, backend: Backend = "python", kind: Kind = "cpu",
                 intra_op_threads: int = 0) -> str:
    """Triton ``config.pbtxt`` text for ``model``.

    Args:
        backend: ``"python"`` (ONNX run by onnxruntime in model.py) or ``"onnxruntime"`` (native).
        kind: instance kind, ``"cpu"`` or ``"gpu"`` (``KIND_GPU`` needs a CUDA-enabled Triton).
        intra_op_threads: onnxruntime threads for the Python backend; 0 means all cores.
    """
    classes = model.network.classes
    backend_line = 'backend: "python"' if backend == "python" else (
        'backend: "onnxruntime"\ndefault_model_filename: "model.onnx"')
    params = ""
    if backend == "python":
        params = f'parameters: {{ key: "intra_op_threads" value: {{ string_value: "{intra_op_threads}" }} }}\n'
    return (
        f'name: "{model.name}"\n'
        f"{backend_line}\n"
        # Whole volumes, one per request: batching volumes of different sizes is not possible.
        "max_batch_size: 0\n"
        f'input [ {{ name: "{INPUT_NAME}" data_type: TYPE_FP32 dims: [ -1, -1, -1 ] }} ]\n'
        f'output [ {{ name: "{OUTPUT_NAME}" data_type: TYPE_FP32 dims: [ {classes}, -1, -1, -1 ] }} ]\n'
        f"instance_group [ {{ kind: KIND_{kind.upper()} count: 1 }} ]\n"
        f"{params}"
    )


def build_repository(dest: str | Path, backend: Backend = "python", kind: Kind = "cpu",
                     models: tuple[ModelDefinition, ...] = MODELS, intra_op_threads: int = 0) -> Path:
    """Write a servable model repository to ``dest`` (created; existing model folders replaced)."""
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    template = Path(__file__).with_name("python_model.py")
    for model in models:
        folder = root / model.name
        if folder.exists():
            shutil.rmtree(folder)
        version = folder / "1"
        version.mkdir(parents=True)
        (folder / "config.pbtxt").write_text(config_pbtxt(model, backend, kind, intra_op_threads))
        onnx.save_model(build_network(model.network, model.name), str(version / "model.onnx"))
        if backend == "python":
            shutil.copyfile(template, version / "model.py")
    return root
