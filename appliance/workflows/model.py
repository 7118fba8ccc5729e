"""Typed, immutable description of a workflow, as produced by :mod:`appliance.workflows.loader`.

Units: lengths in millimetres, intensities in Hounsfield units (HU), times in seconds.
Image axes are given in (x, y, z) order, i.e. (column, row, slice), the order SimpleITK uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Protocol = Literal["http", "grpc"]
SharedMemoryMode = Literal["auto", "system", "off"]
GeometryPolicy = Literal["warn", "error"]
VolumeFormat = Literal["mhd", "nifti"]
SeriesChoice = Literal["largest", "first"]
DestinationKind = Literal["dicom", "folder"]


@dataclass(frozen=True)
class CodedConcept:
    """A coded concept (code value, coding scheme designator, code meaning), e.g. SCT 10200004 "Liver"."""

    value: str
    scheme: str
    meaning: str


@dataclass(frozen=True)
class LabelSpec:
    """One output label: the model class index and how it appears as a DICOM SEG segment."""

    class_index: int
    """Channel of the model's probability output (0 is always background)."""
    name: str
    """Segment label shown in viewers."""
    category: CodedConcept
    """Segmented property category, e.g. SCT 123037004 "Anatomical Structure"."""
    type: CodedConcept
    """Segmented property type, e.g. SCT 10200004 "Liver"."""
    color: tuple[int, int, int] | None = None
    """Recommended display colour as RGB 0-255; None leaves it to the viewer."""


@dataclass(frozen=True)
class TensorSpec:
    """Name and Triton datatype of one model input or output tensor."""

    name: str
    datatype: str = "FP32"


@dataclass(frozen=True)
class ModelSpec:
    """The Triton model a workflow runs.

    The input is a single-channel volume laid out (z, y, x) in HU; the output is
    per-class probabilities laid out (class, z, y, x) on the same grid.
    """

    name: str
    input: TensorSpec
    output: TensorSpec
    classes: int
    """Number of output channels including background."""
    version: str = ""
    """Model version; empty selects the newest version the server has loaded."""


@dataclass(frozen=True)
class SeriesRules:
    """Which series of a study to process; every rule that is set must hold."""

    modality: str | None = "CT"
    image_type: tuple[str, ...] = ()
    """Values that must all appear in ImageType, e.g. ("ORIGINAL", "PRIMARY")."""
    min_slices: int = 1
    description: str | None = None
    """Regular expression searched (case-insensitive) in SeriesDescription."""
    choose: SeriesChoice = "largest"
    """Among matching series: the one with most instances, or the first by SeriesNumber."""


@dataclass(frozen=True)
class ReaderSettings:
    """Settings of the reader stage."""

    series: SeriesRules = field(default_factory=SeriesRules)
    geometry: GeometryPolicy = "warn"
    """What to do with slice gaps, uneven spacing or gantry tilt: record a warning or fail."""
    formats: tuple[VolumeFormat, ...] = ("mhd", "nifti")


@dataclass(frozen=True)
class TritonSettings:
    """How to reach the Triton server."""

    url: str = "127.0.0.1:8000"
    """host:port of the HTTP (default port 8000) or gRPC (default port 8001) endpoint."""
    protocol: Protocol = "http"
    shared_memory: SharedMemoryMode = "auto"
    """"auto" uses system shared memory when the server is on this host (loopback URL)."""
    timeout_s: float = 120.0


@dataclass(frozen=True)
class InferenceSettings:
    """Settings of the inference stage: the server and the preprocessing the model expects."""

    triton: TritonSettings = field(default_factory=TritonSettings)
    spacing_mm: tuple[float, float, float] | None = None
    """Resample to this (x, y, z) voxel spacing before inference; exclusive with ``size``."""
    size: tuple[int, int, int] | None = None
    """Resample to this (x, y, z) grid size before inference; exclusive with ``spacing_mm``."""
    clip_hu: tuple[float, float] = (-1024.0, 3071.0)
    """Intensities are clipped to this HU range before they reach the model."""


@dataclass(frozen=True)
class WriterSettings:
    """Settings of the writer stage."""

    series_description: str = "AI segmentation"
    series_number: int = 901
    masks: tuple[VolumeFormat, ...] = ()
    """Also write the label mask in these formats next to the SEG."""
    manufacturer: str = "appliance"
    algorithm_version: str = "1"


@dataclass(frozen=True)
class Destination:
    """Where results go after the pipeline, resolved by the exporter by ``name``."""

    name: str
    kind: DestinationKind = "dicom"


@dataclass(frozen=True)
class Workflow:
    """A validated workflow: name, ordered stages and their settings, model, labels, destinations."""

    name: str
    description: str
    model: ModelSpec
    labels: tuple[LabelSpec, ...]
    reader: ReaderSettings
    inference: InferenceSettings
    writer: WriterSettings
    stages: tuple[str, ...] = ("reader", "inference", "writer")
    """Stage names in the order they run."""
    destinations: tuple[Destination, ...] = ()
    source: str | None = None
    """File the workflow was loaded from, for messages."""
