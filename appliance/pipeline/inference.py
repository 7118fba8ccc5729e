"""Inference stage: preprocess to the model grid, run the model on Triton, labels back on the image grid.

Files written under ``payload/inference/``: ``labels.mha`` (uint8 class indices on the
image grid, uncompressed MetaImage) and ``inference.json`` (timings in seconds, grids).
"""

# SimpleITK ships py.typed but its SWIG bindings have no annotations: allow calling them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from appliance.pipeline import contract
from appliance.pipeline.errors import ShapeMismatchError
from appliance.pipeline.resample import probabilities_to_labels
from appliance.pipeline.stage import Stage, StageContext, StageOutput
from appliance.pipeline.triton_client import ModelClient
from appliance.pipeline.volume_io import read_image
from appliance.settings.workflow import InferenceSettings, ModelSpec, TritonSettings

LABELS_FILE = "labels.mha"


@dataclass(frozen=True)
class Segmentation:
    """Class indices (uint8, z, y, x) on the image grid, with how long each step took (s)."""

    labels: sitk.Image
    timings: dict[str, float]
    model_grid_size: tuple[int, int, int]
    """(x, y, z) voxels sent to the model."""
    shared_memory: bool
    notes: tuple[str, ...] = ()
    """What a named step reported (e.g. a fallback it took), also written to inference.json."""


@dataclass(frozen=True)
class ModelOutput:
    """Class probabilities (class, z, y, x) on the model grid ``reference``, after the contract's
    post-processing, ready to go back onto the image grid; see :class:`Segmentation` for the rest."""

    probabilities: npt.NDArray[np.float32]
    reference: sitk.Image
    timings: dict[str, float]
    shared_memory: bool
    notes: tuple[str, ...] = ()


def model_output(image: sitk.Image, model: ModelSpec, settings: InferenceSettings,
                 gate: AbstractContextManager[object] | None = None) -> ModelOutput:
    """Every step of :func:`segment` but the last: the probabilities on the model grid."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with ModelClient(settings.triton, model) as client:
        info = client.check()
        timings["check_s"] = time.perf_counter() - t0
        t = time.perf_counter()
        prepared = contract.model_input(image, settings)
        array = contract.window(prepared.hu, settings)
        block = contract.zyx(settings.block) if settings.block is not None else None
        if block is not None:
            array = contract.to_block(array, block, contract.pad_value(settings))
        timings["preprocess_s"] = time.perf_counter() - t
        _check_fixed_dims(info.input_shape, array, model, settings)
        margin = contract.zyx(settings.margin)
        out_shape = tuple(n - 2 * m for n, m in zip(array.shape, margin, strict=True))
        t = time.perf_counter()
        with gate if gate is not None else contextlib.nullcontext():
            timings["gate_wait_s"] = time.perf_counter() - t
            t = time.perf_counter()
            probabilities = client.infer(array, out_shape)
        shared = client.use_shared_memory(array.nbytes + probabilities.nbytes)
        timings["infer_s"] = time.perf_counter() - t
    t = time.perf_counter()
    if block is not None or any(margin):
        probabilities = contract.from_block(probabilities, prepared.hu.shape, block or prepared.hu.shape, margin)
    if model.activation == "softmax":
        probabilities = contract.softmax(probabilities)
    if settings.postprocessing is not None:
        probabilities = contract.POSTPROCESSING[settings.postprocessing](probabilities)
    timings["postprocess_s"] = time.perf_counter() - t
    return ModelOutput(probabilities, prepared.reference, timings, shared, prepared.notes)


def segment(image: sitk.Image, model: ModelSpec, settings: InferenceSettings,
            gate: AbstractContextManager[object] | None = None) -> Segmentation:
    """Segment a HU ``image`` with ``model`` on the server in ``settings.triton``.

    The steps follow the workflow's model contract (:mod:`appliance.pipeline.contract`): onto
    the model grid (named preprocessing, or reorient and resample), window, into the model's
    block, the model, out of the block, softmax, named postprocessing (:func:`model_output`),
    and back onto the image grid (the argmax of the probabilities resampled linearly in
    physical space, :func:`~appliance.pipeline.resample.probabilities_to_labels`).

    ``gate`` is held around the request to the server only (not pre/post-processing), so a
    job runner can bound concurrent inference calls with e.g. a :class:`threading.Semaphore`;
    the time spent waiting for it is reported as ``timings["gate_wait_s"]``.

    Raises:
        ServerUnavailableError, ModelNotFoundError, ModelNotReadyError, ShapeMismatchError,
        InferenceError: see :class:`~appliance.pipeline.triton_client.ModelClient`.
    """
    output = model_output(image, model, settings, gate)
    t = time.perf_counter()
    labels = probabilities_to_labels(output.probabilities, output.reference, image)
    output.timings["postprocess_s"] += time.perf_counter() - t
    out = sitk.GetImageFromArray(labels)
    out.CopyInformation(image)
    size = output.reference.GetSize()
    return Segmentation(out, output.timings, (int(size[0]), int(size[1]), int(size[2])), output.shared_memory,
                        output.notes)


def _check_fixed_dims(shape: tuple[int, ...], array: npt.NDArray[np.float32], model: ModelSpec,
                      settings: InferenceSettings) -> None:
    # A model with fixed input dims needs the workflow's "block" (or "size") to produce exactly those.
    if any(d not in (-1, a) for d, a in zip(shape, array.shape, strict=True)):
        raise ShapeMismatchError(f"model {model.name!r} takes input {list(shape)} (z, y, x) but the workflow "
                                 f"produced {list(array.shape)}; set the workflow's inference.block to "
                                 f"[{shape[2]}, {shape[1]}, {shape[0]}] (x, y, z)"
                                 + ("" if settings.block is None else " and its margin to match the output"))


def run_inference(volume: Path, model: ModelSpec, settings: InferenceSettings, out_dir: Path,
                  gate: AbstractContextManager[object] | None = None) -> Path:
    """Segment the volume file ``volume`` and write ``out_dir/labels.mha``; returns its path.
    ``gate``: see :func:`segment`."""
    seg = segment(read_image(volume), model, settings, gate)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LABELS_FILE
    t = time.perf_counter()
    # Uncompressed: the writer reads it back on the same host, and zlib cost more than the disk it saved.
    sitk.WriteImage(seg.labels, str(path), useCompression=False)
    seg.timings["write_s"] = time.perf_counter() - t
    (out_dir / "inference.json").write_text(json.dumps({
        "model": model.name,
        "triton_url": settings.triton.url,
        "protocol": settings.triton.protocol,
        "shared_memory": seg.shared_memory,
        "model_grid_size_xyz": list(seg.model_grid_size),
        "notes": list(seg.notes),
        "timings_s": {k: round(v, 4) for k, v in seg.timings.items()},
    }, indent=2) + "\n")
    return path


class InferenceStage(Stage):
    """Runs :func:`run_inference` on the reader's volume.

    Args:
        triton: server settings overriding the workflow's (e.g. from the appliance config).
        gate: held around each request to the server (see :func:`segment`); None: no limit.

    Artifacts: ``labels``.
    """

    name = "inference"

    def __init__(self, triton: TritonSettings | None = None,
                 gate: AbstractContextManager[object] | None = None) -> None:
        self.triton = triton
        self.gate = gate

    def run(self, context: StageContext) -> StageOutput:
        settings = context.workflow.inference
        if self.triton is not None:
            settings = dataclasses.replace(settings, triton=self.triton)
        volume = context.artifact("volume", "reader")
        labels = run_inference(volume, context.workflow.model, settings, context.stage_dir(self.name), self.gate)
        return StageOutput({"labels": labels})
