"""Writer stage: a DICOM Segmentation (highdicom) referencing the source series, plus optional masks.

The SEG has one segment per workflow label, numbered 1..N in the workflow's order, with
the label's name and coded category/type. Frames are built from the source images
themselves (in volume order), so each frame carries its source slice's position and
orientation and viewers overlay it on the right slice even when the volume had gaps. A
multi-frame (Enhanced CT) source gets one SEG frame per source frame, in the source's frame order.

Anonymised or incomplete headers do not fail the SEG: type-2 attributes the source lacks are
written empty, a missing FrameOfReferenceUID gets one derived from the series, and a missing
SliceThickness is taken from the measured slice spacing; each is reported in the stage's notes.

Files written under ``payload/writer/``: ``seg.dcm`` and, per ``masks``, ``labels.mhd`` /
``labels.nii.gz`` (segment numbers, uint8).
"""

# SimpleITK ships py.typed but its SWIG bindings have no annotations: allow calling them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from appliance import __version__
from appliance.pipeline.errors import WriterError
from appliance.pipeline.geometry import is_multiframe
from appliance.pipeline.stage import Stage, StageContext, StageOutput
from appliance.pipeline.volume_io import read_image, write_image
from appliance.settings.workflow import LabelSpec, Workflow

SEG_FILE = "seg.dcm"

#: Type-2 attributes (present, possibly empty) of the Patient and General Study modules that the
#: SEG copies from its source; anonymisers often delete them.
TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "ReferringPhysicianName",
                "StudyDate", "StudyTime", "StudyID", "AccessionNumber")


def _concept(code: LabelSpec) -> tuple[hd.sr.CodedConcept, hd.sr.CodedConcept]:
    return (hd.sr.CodedConcept(code.category.value, code.category.scheme, code.category.meaning),
            hd.sr.CodedConcept(code.type.value, code.type.scheme, code.type.meaning))


def segment_descriptions(workflow: Workflow) -> list[hd.seg.SegmentDescription]:
    """One description per label, segment numbers 1..N in workflow order, AI algorithm = the workflow."""
    settings = workflow.writer
    algorithm = hd.AlgorithmIdentificationSequence(
        name=settings.algorithm_name or workflow.name, family=codes.cid7162.ArtificialIntelligence,
        version=settings.algorithm_version, source=settings.algorithm_source or workflow.model.name)
    out = []
    for number, label in enumerate(workflow.labels, start=1):
        category, prop = _concept(label)
        out.append(hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label.name,
            segmented_property_category=category,
            segmented_property_type=prop,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=hd.UID(),
            tracking_id=f"{workflow.name}-{label.name}",
            display_color=hd.color.CIELabColor.from_rgb(*label.color) if label.color else None,
        ))
    return out


def segment_numbers(classes: npt.NDArray[np.uint8], workflow: Workflow) -> npt.NDArray[np.uint8]:
    """Map model class indices to segment numbers; classes without a label become 0."""
    lut = np.zeros(256, np.uint8)
    for number, label in enumerate(workflow.labels, start=1):
        lut[label.class_index] = number
    mapped: npt.NDArray[np.uint8] = lut[classes]
    return mapped


def build_seg(sources: Sequence[Dataset], segments: npt.NDArray[np.uint8], workflow: Workflow) -> hd.seg.Segmentation:
    """The SEG for ``segments`` (segment numbers, one frame per entry of ``sources``, same order)."""
    images = len(sources) if len(sources) > 1 else int(sources[0].get("NumberOfFrames", 1) or 1)
    if segments.shape[0] != images:
        raise WriterError(f"mask has {segments.shape[0]} slices but the series has {images} images")
    rows, cols = int(sources[0].Rows), int(sources[0].Columns)
    if segments.shape[1:] != (rows, cols):
        raise WriterError(f"mask slices are {segments.shape[1:]} but the images are {(rows, cols)}")
    settings = workflow.writer
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=segments,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(workflow),
        series_instance_uid=hd.UID(),
        series_number=settings.series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=settings.manufacturer,
        manufacturer_model_name=f"appliance {workflow.name}",
        software_versions=__version__,
        device_serial_number="0",
        series_description=settings.series_description,
        content_label="SEGMENTATION",
        content_description=f"{workflow.name} ({workflow.model.name})"[:64],
        content_creator_name="appliance^pipeline",
    )


def complete_sources(sources: Sequence[Dataset], series_uid: str, slice_spacing_mm: float) -> list[str]:
    """Fill, in memory, what the SEG needs and anonymised or incomplete sources lack; one note per fix.

    Type-2 attributes in :data:`TYPE2_COPIED` become empty, so the SEG has them empty too; a missing
    FrameOfReferenceUID becomes one derived from ``series_uid`` (the same on a re-run); a missing
    or empty SliceThickness becomes ``slice_spacing_mm``. The files on disk are not changed.
    """
    notes: list[str] = []
    absent = sorted({k for ds in sources for k in TYPE2_COPIED if k not in ds})
    if absent:
        notes.append(f"the source lacks type-2 {', '.join(absent)}: written empty in the SEG")
    frame_of_reference = generate_uid(entropy_srcs=[series_uid, "frame-of-reference"])
    if any(not ds.get("FrameOfReferenceUID") for ds in sources):
        notes.append(f"the source has no FrameOfReferenceUID: the SEG uses {frame_of_reference}, "
                     "derived from the series")
    # Single-frame images carry SliceThickness at the root; multi-frame ones in their functional groups.
    thin = any(not is_multiframe(ds) and ds.get("SliceThickness") in (None, "") for ds in sources)
    if thin:
        notes.append(f"the source has no SliceThickness: the SEG uses the slice spacing, {slice_spacing_mm:g} mm")
    for ds in sources:
        for keyword in absent:
            if keyword not in ds:
                setattr(ds, keyword, "")
        if not ds.get("FrameOfReferenceUID"):
            ds.FrameOfReferenceUID = frame_of_reference
        if thin and ds.get("SliceThickness") in (None, ""):
            ds.SliceThickness = slice_spacing_mm
    return notes


def source_frames(info: dict[str, Any], segments: npt.NDArray[np.uint8]
                  ) -> tuple[list[Dataset], npt.NDArray[np.uint8]]:
    """The source datasets (headers) of the manifest ``info`` and ``segments`` in their frame order.

    Single-frame sources: one dataset per slice, ``segments`` as they are (volume order). One
    multi-frame source: that dataset alone, ``segments`` rearranged into its frame order.
    """
    frames: list[int | None] = list(info.get("frames") or [None] * len(info["files"]))
    if all(f is None for f in frames):
        # Headers are enough for the SEG: it references the images, it does not copy them.
        return [pydicom.dcmread(p, stop_before_pixels=True) for p in info["files"]], segments
    source = pydicom.dcmread(info["files"][0], stop_before_pixels=True)
    count = int(source.get("NumberOfFrames", 1) or 1)
    if len(set(info["files"])) != 1 or sorted(f or 0 for f in frames) != list(range(1, count + 1)):
        raise WriterError(f"the manifest's frames do not cover the {count} frames of {info['files'][0]} once each")
    by_frame = np.zeros_like(segments)
    by_frame[[int(f or 0) - 1 for f in frames]] = segments
    return [source], by_frame


def write_outputs(manifest: Path, labels: Path, workflow: Workflow, out_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """Write the SEG (and masks) for the ``labels`` image of the series described by ``manifest``.

    Returns:
        Artifacts (``seg`` and, per the workflow, ``mask_mhd`` / ``mask_nifti``) and notes on the
        source headers completed in the SEG (see :func:`complete_sources`).

    Raises:
        WriterError: the label image does not fit the series, or the SEG cannot be built.
    """
    info = json.loads(manifest.read_text())
    image = read_image(labels)
    # A view: segment_numbers' lookup makes the one copy of the label volume the SEG needs.
    classes = sitk.GetArrayViewFromImage(image)
    segments = segment_numbers(classes if classes.dtype == np.uint8 else classes.astype(np.uint8), workflow)
    try:
        sources, frames = source_frames(info, segments)
    except (OSError, KeyError, pydicom.errors.InvalidDicomError) as exc:
        raise WriterError(f"cannot re-read the source series listed in {manifest}: {exc}") from exc
    notes = complete_sources(sources, str(info.get("series_instance_uid", "")),
                             float(info.get("geometry", {}).get("spacing_mm", [1.0, 1.0, 1.0])[2]))
    try:
        seg = build_seg(sources, frames, workflow)
    except (ValueError, TypeError, AttributeError) as exc:
        raise WriterError(f"highdicom could not build the SEG: {exc}") from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts = {"seg": out_dir / SEG_FILE}
    seg.save_as(artifacts["seg"])
    if workflow.writer.masks:
        mask = sitk.GetImageFromArray(segments)
        mask.CopyInformation(image)
        for fmt in workflow.writer.masks:
            artifacts[f"mask_{fmt}"] = write_image(mask, out_dir / "labels", fmt)
    return artifacts, notes


class WriterStage(Stage):
    """Runs :func:`write_outputs` on the reader's manifest and the inference labels."""

    name = "writer"

    def run(self, context: StageContext) -> StageOutput:
        manifest = context.artifact("series_manifest", "reader")
        labels = context.artifact("labels", "inference")
        artifacts, notes = write_outputs(manifest, labels, context.workflow, context.stage_dir(self.name))
        return StageOutput(artifacts, tuple(notes))
