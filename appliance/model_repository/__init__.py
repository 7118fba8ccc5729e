"""The appliance's Triton model repository, built into a folder Triton can serve.

Nothing binary is checked in: :func:`build_repository` writes, per model::

    DEST/<model>/config.pbtxt
    DEST/<model>/1/model.onnx     # generated, or ported from trained weights
    DEST/<model>/1/model.py       # only for the Python backend (tritonserver from nvidia-pytriton)
    DEST/README.md                # what each model is, where it comes from, its licence

The models:

* ``liver_seg_ct`` (workflow LiverSeg): the trained whole-liver 3-D CNN of **pyliverlesionseg 0.3**
  (Apache-2.0), ported to ONNX from the Keras weights in its wheel (:mod:`.liver_unet`). The wheel
  is fetched with ``pip download`` when the repository is built, or given as a file.
* ``organ_seg_ct`` (workflow OrganSeg): a **demo model for the synthetic phantom only**, a
  hand-set intensity classifier (:mod:`.onnx_graph`), no training, no clinical meaning.

``backend="python"`` serves the ONNX file through onnxruntime inside a Python-backend model
(the only backend the ``nvidia-pytriton`` wheel ships); ``backend="onnxruntime"`` writes a
config for Triton's native ONNX Runtime backend, as in the official Triton containers on GPU
hosts. Both have the same tensor names and shapes, so workflows do not change.

Command line: ``python -m appliance.model_repository DEST [--backend onnxruntime --kind gpu]
[--liver-wheel FILE]``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import onnx

from appliance.model_repository import liver_unet, sources
from appliance.model_repository.onnx_graph import NetworkSpec, OrganClass, build_network

Backend = Literal["python", "onnxruntime"]
Kind = Literal["cpu", "gpu"]

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"


@dataclass(frozen=True)
class Inputs:
    """What building a model may need from outside: the liver wheel (None: fetch it with pip)."""

    liver_wheel: Path | None = None
    cache: Path | None = None

    def wheel(self) -> Path:
        return self.liver_wheel if self.liver_wheel is not None else sources.liver_wheel(self.cache)


@dataclass(frozen=True)
class ModelDefinition:
    """A model of the repository: Triton name, tensor dims, how to build it, and where it comes from."""

    name: str
    classes: int
    input_dims: tuple[int, int, int]
    """(z, y, x); -1 is any size."""
    output_dims: tuple[int, int, int]
    build: Callable[[Inputs], onnx.ModelProto]
    origin: str
    """One paragraph for the repository's README: what it is, where from, licence."""


def _demo_organs(inputs: Inputs) -> onnx.ModelProto:
    organs = (OrganClass("liver", 95.0, 15.0), OrganClass("spleen", 135.0, 15.0), OrganClass("kidneys", 190.0, 30.0))
    # Organ HU centres match appliance.phantom; the widths were tuned on it (Dice in docs/pipeline.md).
    return build_network(NetworkSpec(organs, gradient_hu=60.0), "organ_seg_ct")


def _liver(inputs: Inputs) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory(prefix="liver-weights-") as tmp:
        weights = liver_unet.read_weights(liver_unet.weights_from_wheel(inputs.wheel(), tmp))
    return liver_unet.build_liver_unet(weights, "liver_seg_ct")


def _zyx(xyz: tuple[int, int, int]) -> tuple[int, int, int]:
    return (xyz[2], xyz[1], xyz[0])


LIVER_ORIGIN = (
    "Trained whole-liver 3-D CNN (U-Net, 3.87 M parameters) of pyliverlesionseg 0.3 by Georg Schramm "
    "et al., KU Leuven, https://pypi.org/project/pyliverlesionseg/ (Apache-2.0). Ported to ONNX from "
    f"the Keras 2.2 HDF5 weights `{Path(liver_unet.WEIGHTS_MEMBER).name}` in its wheel, layer for layer; "
    "the preprocessing (abdominal crop box, 1.5 mm median filter, 3 mm voxels, HU window [-200, 200] "
    "scaled to [-0.5, 0.5], RAS, a 189 x 162 x 162 block) is reproduced by the LiverSeg workflow.")
DEMO_ORIGIN = (
    "Demo model, synthetic phantom only: a hand-set intensity classifier written by this project "
    "(appliance/model_repository/onnx_graph.py), tuned on the generated phantom. Not trained, not "
    "for clinical use; on real CT its output is meaningless.")

MODELS: tuple[ModelDefinition, ...] = (
    ModelDefinition("organ_seg_ct", 4, (-1, -1, -1), (-1, -1, -1), _demo_organs, DEMO_ORIGIN),
    ModelDefinition("liver_seg_ct", 2, _zyx(liver_unet.INPUT_BLOCK), _zyx(liver_unet.OUTPUT_BLOCK), _liver,
                    LIVER_ORIGIN),
)


def config_pbtxt(model: ModelDefinition, backend: Backend = "python", kind: Kind = "cpu",
                 intra_op_threads: int = 0) -> str:
    """Triton ``config.pbtxt`` text for ``model``.

    Args:
        backend: ``"python"`` (ONNX run by onnxruntime in model.py) or ``"onnxruntime"`` (native).
        kind: instance kind, ``"cpu"`` or ``"gpu"`` (``KIND_GPU`` needs a CUDA-enabled Triton).
        intra_op_threads: onnxruntime threads for the Python backend; 0 means all cores.
    """
    return tensor_config(model.name, model.input_dims, model.classes, model.output_dims, backend, kind,
                         intra_op_threads)


def tensor_config(name: str, input_dims: tuple[int, ...], classes: int, output_dims: tuple[int, ...],
                  backend: Backend = "python", kind: Kind = "cpu", intra_op_threads: int = 0,
                  input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME) -> str:
    """``config.pbtxt`` for a one-volume-in, class-probabilities-out model (see :func:`config_pbtxt`)."""
    backend_line = 'backend: "python"' if backend == "python" else (
        'backend: "onnxruntime"\ndefault_model_filename: "model.onnx"')
    params = ""
    if backend == "python":
        params = f'parameters: {{ key: "intra_op_threads" value: {{ string_value: "{intra_op_threads}" }} }}\n'
    dims_in = ", ".join(str(d) for d in input_dims)
    dims_out = ", ".join(str(d) for d in output_dims)
    return (
        f'name: "{name}"\n'
        f"{backend_line}\n"
        # Whole volumes, one per request: batching volumes of different sizes is not possible.
        "max_batch_size: 0\n"
        f'input [ {{ name: "{input_name}" data_type: TYPE_FP32 dims: [ {dims_in} ] }} ]\n'
        f'output [ {{ name: "{output_name}" data_type: TYPE_FP32 dims: [ {classes}, {dims_out} ] }} ]\n'
        f"instance_group [ {{ kind: KIND_{kind.upper()} count: 1 }} ]\n"
        f"{params}"
    )


def write_model(root: Path, name: str, model: onnx.ModelProto, config: str, backend: Backend) -> Path:
    """Write one model's folder (``config.pbtxt``, ``1/model.onnx``, ``1/model.py``); replaces an old one."""
    folder = root / name
    if folder.exists():
        shutil.rmtree(folder)
    version = folder / "1"
    version.mkdir(parents=True)
    (folder / "config.pbtxt").write_text(config)
    onnx.save_model(model, str(version / "model.onnx"))
    if backend == "python":
        shutil.copyfile(Path(__file__).with_name("python_model.py"), version / "model.py")
    return folder


def readme(models: tuple[ModelDefinition, ...]) -> str:
    """The repository's README.md: one section per model with its origin and licence."""
    parts = ["# Model repository\n\nGenerated by `python -m appliance.model_repository`; do not edit.\n"]
    parts += [f"\n## {m.name}\n\n{m.origin}\n" for m in models]
    return "".join(parts)


def build_repository(dest: str | Path, backend: Backend = "python", kind: Kind = "cpu",
                     models: tuple[ModelDefinition, ...] = MODELS, intra_op_threads: int = 0,
                     inputs: Inputs | None = None) -> Path:
    """Write a servable model repository to ``dest`` (created; existing model folders replaced).

    ``inputs`` names the liver wheel; without it the wheel is fetched with pip (cached).

    Raises:
        SourceError: the wheel is needed and cannot be fetched.
    """
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    inputs = inputs or Inputs()
    for model in models:
        write_model(root, model.name, model.build(inputs), config_pbtxt(model, backend, kind, intra_op_threads),
                    backend)
    (root / "README.md").write_text(readme(models))
    return root
