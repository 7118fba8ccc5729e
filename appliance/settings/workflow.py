"""Workflow files: the Triton model a workflow runs, its labels and the settings of its stages.

Units: lengths in millimetres, intensities in Hounsfield units (HU), times in seconds.
Image axes are given in (x, y, z) order, i.e. (column, row, slice), the order SimpleITK uses.
Keys are snake_case, as in the shipped files (``appliance/workflows/definitions/``).

A file lists its three stages under ``stages:`` in the only order that works, ``reader``,
``inference``, ``writer``: each hands its files to the next, so a subset or another order could
only fail or, worse, end without a result. The list is where each stage's settings live; which
stages run is not a setting (:data:`STAGES`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter, ValidationInfo, with_config

from appliance.settings.source import SettingsError, compose, read, validate
from appliance.settings.types import STRICT_KEYS, THREE, FilePath, Int, Number, Regex, Text, conflict

Protocol = Literal["http", "grpc"]
SharedMemoryMode = Literal["auto", "system", "off"]
GeometryPolicy = Literal["warn", "error"]
VolumeFormat = Literal["mhd", "nifti"]
SeriesChoice = Literal["largest", "first"]
DestinationKind = Literal["dicom", "folder"]
OutputActivation = Literal["none", "softmax"]
#: Named preprocessing/postprocessing that one network needs and a contract cannot express.
Preprocessing = Literal["pyliverlesionseg-ct"]
Postprocessing = Literal["pyliverlesionseg-liver"]

#: The stages every workflow runs, in this order.
STAGES = ("reader", "inference", "writer")

Positive = Annotated[Number, Field(gt=0)]
PositiveInt = Annotated[Int, Field(gt=0)]
Channel = Annotated[Int, Field(ge=0, le=255)]


@with_config(STRICT_KEYS)
@dataclass(frozen=True)
class CodedConcept:
    """A coded concept (code value, coding scheme designator, code meaning), e.g. SCT 10200004 "Liver"."""

    value: Annotated[Text, Field(alias="code", description="code value, e.g. 10200004")]
    scheme: Annotated[Text, Field(description="coding scheme designator, e.g. SCT")]
    meaning: Annotated[Text, Field(description="code meaning, e.g. Liver")]


@with_config(STRICT_KEYS)
@dataclass(frozen=True)
class LabelSpec:
    """One output label: the model class index and how it appears as a DICOM SEG segment."""

    class_index: Annotated[Int, Field(alias="class", description="channel of the model's probability output "
                                                                 "(0 is always background)")]
    name: Annotated[Text, Field(description="segment label shown in viewers")]
    category: Annotated[CodedConcept, Field(description="segmented property category, e.g. SCT 123037004 "
                                                        "Anatomical Structure")]
    type: Annotated[CodedConcept, Field(description="segmented property type, e.g. SCT 10200004 Liver")]
    color: Annotated[tuple[Channel, Channel, Channel] | None, THREE, Field(
        description="recommended display colour as R, G, B 0-255; none leaves it to the viewer")] = None


@with_config(STRICT_KEYS)
@dataclass(frozen=True)
class TensorSpec:
    """Name and Triton datatype of one model input or output tensor."""

    name: Annotated[Text, Field(description="tensor name in the model's config.pbtxt")]
    datatype: Annotated[Literal["FP32", "FP16"], Field(description="Triton datatype")] = "FP32"


@with_config(STRICT_KEYS)
@dataclass(frozen=True)
class ModelSpec:
    """The Triton model a workflow runs.

    The input is a single-channel volume laid out (z, y, x) in HU; the output is
    per-class probabilities laid out (class, z, y, x) on the same grid.
    """

    name: Annotated[Text, Field(description="model name in Triton's repository")]
    input: Annotated[TensorSpec, Field(description="the (z, y, x) HU input tensor")]
    output: Annotated[TensorSpec, Field(description="the (class, z, y, x) probabilities tensor")]
    classes: Annotated[Int, Field(ge=2, description="number of output channels including background")]
    version: Annotated[str, Field(description="model version; empty selects the newest the server has")] = ""
    activation: Annotated[OutputActivation, Field(
        description="none: the output holds probabilities; softmax: it holds logits, and the inference stage "
                    "applies a softmax over the class axis")] = "none"


@with_config(STRICT_KEYS)
@dataclass(frozen=True)
class SeriesRules:
    """Which series of a study to process; every rule that is set must hold."""

    modality: Annotated[Text | None, Field(description="required Modality, e.g. CT")] = "CT"
    image_type: Annotated[tuple[Text, ...], Field(
        description="values that must all appear in ImageType, e.g. ORIGINAL, PRIMARY")] = ()
    min_slices: Annotated[PositiveInt, Field(
        description="fewest slices a series may have (the frames of a multi-frame instance count)")] = 1
    description: Annotated[Regex | None, Field(
        description="regular expression searched (case-insensitive) in SeriesDescription")] = None
    choose: Annotated[SeriesChoice, Field(
        description="among matching series: the one with most slices, or the first by SeriesNumber")] = "largest"
    prefer: Annotated[tuple[Regex, ...], Field(
        description="regular expressions searched (case-insensitive) in SeriesDescription, most preferred "
                    "first: which of equally good series to take (e.g. portal venous over arterial); "
                    "further ties go to the series acquired last, then the higher SeriesNumber")] = ()


@with_config(STRICT_KEYS)
@dataclass(frozen=True)
class ReaderSettings:
    """Settings of the reader stage."""

    series: Annotated[SeriesRules, Field(description="which series to read")] = field(default_factory=SeriesRules)
    geometry: Annotated[GeometryPolicy, Field(
        description="slice gaps, uneven spacing or gantry tilt: record a warning or fail")] = "warn"
    formats: Annotated[tuple[VolumeFormat, ...], Field(
        min_length=1,
        description="files the volume is written as; the inference stage reads one; nifti is gzipped, slow")] = (
            "mhd",)
    stage: Annotated[Literal["reader"], Field(description="names the stage")] = "reader"


@with_config(STRICT_KEYS)
@dataclass(frozen=True)
class TritonSettings:
    """How to reach the Triton server."""

    url: Annotated[Text, Field(description="host:port of the HTTP (port 8000) or gRPC (port 8001) endpoint")] = (
        "127.0.0.1:8000")
    protocol: Annotated[Protocol, Field(description="http or grpc")] = "http"
    shared_memory: Annotated[SharedMemoryMode, Field(
        description="auto: system shared memory when the server is on this host (loopback URL)")] = "auto"
    timeout_s: Annotated[Positive, Field(description="timeout of one request, in seconds")] = 120.0
    key_file: Annotated[FilePath | None, Field(
        description="file holding the key of the server's restricted APIs (shared memory, model control); "
                    "the worker's worker.triton.key-file replaces it")] = None


def _one_grid(size: tuple[int, int, int] | None, info: ValidationInfo) -> tuple[int, int, int] | None:
    if "spacing_mm" in info.data and (info.data["spacing_mm"] is None) == (size is None):
        raise conflict("set exactly one of spacing_mm or size (the model's input grid)")
    return size


def _low_high(pair: tuple[float, float]) -> tuple[float, float]:
    if pair[0] >= pair[1]:
        raise conflict("low must be below high")
    return pair


def _orientation(value: str | None) -> str | None:
    letters = set(value or "LPS")
    if value is not None and (len(value) != 3 or not all(
            len(letters & pair) == 1 for pair in ({"L", "R"}, {"A", "P"}, {"S", "I"}))):
        raise conflict("three letters, one of L/R, A/P and S/I each, e.g. RAS or LPS")
    return value


def _margin_needs_block(margin: tuple[int, int, int], info: ValidationInfo) -> tuple[int, int, int]:
    if any(margin) and info.data.get("block") is None:
        raise conflict("a margin needs a block (the fixed input it is cut from)")
    return margin


NonNegativeInt = Annotated[Int, Field(ge=0)]


@with_config(STRICT_KEYS)
@dataclass(frozen=True)
class InferenceSettings:
    """Settings of the inference stage: the server and the preprocessing the model expects."""

    triton: Annotated[TritonSettings, Field(description="the Triton server")] = field(default_factory=TritonSettings)
    spacing_mm: Annotated[tuple[Positive, Positive, Positive] | None, THREE, Field(
        description="resample to this (x, y, z) voxel spacing in mm before inference; exclusive with size")] = None
    size: Annotated[tuple[PositiveInt, PositiveInt, PositiveInt] | None, THREE, AfterValidator(_one_grid), Field(
        validate_default=True, description="resample to this (x, y, z) grid size before inference; "
                                           "exclusive with spacing_mm")] = None
    clip_hu: Annotated[tuple[Number, Number], AfterValidator(_low_high), Field(
        description="intensities are clipped to this [low, high] HU range before they reach the model")] = (
        -1024.0, 3071.0)
    scale: Annotated[tuple[Number, Number] | None, AfterValidator(_low_high), Field(
        description="map the clipped range clip_hu linearly onto this [low, high] range (model units); "
                    "none sends HU as clipped")] = None
    orientation: Annotated[Text | None, AfterValidator(_orientation), Field(
        description="patient directions the model grid's x, y, z indices grow towards, e.g. RAS or LPS; "
                    "none keeps the series' own orientation")] = None
    block: Annotated[tuple[PositiveInt, PositiveInt, PositiveInt] | None, THREE, Field(
        description="fixed (x, y, z) input size of the model: the volume is centred in it (voxel n // 2 on "
                    "block // 2), cut where larger, padded where smaller")] = None
    margin: Annotated[tuple[NonNegativeInt, NonNegativeInt, NonNegativeInt], THREE,
                      AfterValidator(_margin_needs_block), Field(
        description="voxels per side (x, y, z) the model consumes as context: its output is the input's "
                    "centre, block - 2 x margin")] = (0, 0, 0)
    pad_value: Annotated[Number | None, Field(
        description="value of block voxels outside the volume, in model units; none is the window's low end")] = None
    preprocessing: Annotated[Preprocessing | None, Field(
        description="a named preprocessing one network needs (docs/pipeline.md); replaces the resampling")] = None
    postprocessing: Annotated[Postprocessing | None, Field(
        description="a named postprocessing on the model grid, before the labels go back to the image grid")] = None
    stage: Annotated[Literal["inference"], Field(description="names the stage")] = "inference"


@with_config(STRICT_KEYS)
@dataclass(frozen=True)
class WriterSettings:
    """Settings of the writer stage."""

    series_description: Annotated[Text, Field(description="SeriesDescription of the SEG")] = "AI segmentation"
    series_number: Annotated[Int, Field(ge=0, description="SeriesNumber of the SEG")] = 901
    masks: Annotated[tuple[VolumeFormat, ...], Field(
        description="also write the label mask in these formats next to the SEG")] = ()
    manufacturer: Annotated[Text, Field(description="Manufacturer of the SEG")] = "appliance"
    algorithm_version: Annotated[Text, Field(description="algorithm version recorded in the SEG")] = "1"
    algorithm_name: Annotated[Text | None, Field(max_length=64, description=(
        "AlgorithmName of the SEG's segments; none: the workflow's name"))] = None
    algorithm_source: Annotated[Text | None, Field(max_length=64, description=(
        "AlgorithmSource: who made the model, under which licence; none: the model's name"))] = None
    stage: Annotated[Literal["writer"], Field(description="names the stage")] = "writer"


@with_config(STRICT_KEYS)
@dataclass(frozen=True)
class Destination:
    """Where results go after the pipeline, resolved by the exporter by ``name``."""

    name: Annotated[Text, Field(description="destination name")]
    kind: Annotated[DestinationKind, Field(description="dicom or folder")] = "dicom"


@dataclass(frozen=True)
class Workflow:
    """A validated workflow: name, model, labels, the settings of its stages (:data:`STAGES`)."""

    name: str
    description: str
    model: ModelSpec
    labels: tuple[LabelSpec, ...]
    reader: ReaderSettings
    inference: InferenceSettings
    writer: WriterSettings
    destinations: tuple[Destination, ...] = ()
    source: str | None = None
    """File the workflow was loaded from, for messages."""


def _stage_order(stages: Any) -> Any:
    names = [s.get("stage") if isinstance(s, dict) else s for s in stages] if isinstance(stages, list) else None
    if names != list(STAGES):
        got = ", ".join(map(str, names)) if names is not None else repr(stages)
        raise conflict(f"the stages must run in the order {' -> '.join(STAGES)}, each once (got: {got or 'none'})")
    return stages


def _labels_fit(labels: tuple[LabelSpec, ...], info: ValidationInfo) -> tuple[LabelSpec, ...]:
    # An invalid model was already reported; checking against it would only add noise.
    classes = info.data["model"].classes if "model" in info.data else None
    seen: set[int] = set()
    for i, label in enumerate(labels):
        if classes is not None and not 1 <= label.class_index < classes:
            raise conflict(f"must be between 1 and model.classes - 1 ({classes - 1})", i, "class")
        if label.class_index in seen:
            raise conflict(f"class {label.class_index} is listed twice", i, "class")
        seen.add(label.class_index)
    return labels


@with_config(STRICT_KEYS)
@dataclass(frozen=True)
class WorkflowFile:
    """A workflow file as written: the schema that :func:`parse_workflow` validates."""

    name: Annotated[Text, Field(description="the name AE titles bind to")]
    model: Annotated[ModelSpec, Field(description="the Triton model")]
    labels: Annotated[tuple[LabelSpec, ...], AfterValidator(_labels_fit), Field(
        min_length=1, description="the model's classes that become SEG segments")]
    stages: Annotated[tuple[ReaderSettings, InferenceSettings, WriterSettings], BeforeValidator(_stage_order),
                      Field(description="settings of the reader, inference and writer stages, in this order")]
    description: Annotated[str, Field(description="one line for people")] = ""
    destinations: Annotated[tuple[Destination, ...], Field(description="where results go")] = ()

    def workflow(self, source: str | None) -> Workflow:
        """The validated :class:`Workflow`."""
        reader, inference, writer = self.stages
        return Workflow(self.name, self.description, self.model, self.labels, reader, inference, writer,
                        self.destinations, source)


SCHEMA = TypeAdapter(WorkflowFile)


def parse_workflow(text: str, source: str = "<string>") -> Workflow:
    """Parse and validate workflow YAML ``text``; ``source`` names it in messages.

    Raises:
        SettingsError: listing every problem as ``"SOURCE:LINE: KEY: message"``.
    """
    raw, node = compose(text, source)
    return validate(SCHEMA, raw, node, source).workflow(source)


def load_workflow(path: str | Path) -> Workflow:
    """Load and validate the workflow file at ``path`` (see :func:`parse_workflow`)."""
    raw, node = read(path)
    return validate(SCHEMA, raw, node, str(path)).workflow(str(path))


__all__ = [
    "STAGES",
    "CodedConcept",
    "Destination",
    "InferenceSettings",
    "LabelSpec",
    "ModelSpec",
    "ReaderSettings",
    "SeriesRules",
    "SettingsError",
    "TensorSpec",
    "TritonSettings",
    "Workflow",
    "WorkflowFile",
    "WriterSettings",
    "load_workflow",
    "parse_workflow",
]
