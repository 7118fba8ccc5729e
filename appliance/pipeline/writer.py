"""Writer stage: a DICOM Segmentation (highdicom) referencing the source series, plus optional masks.

The SEG has one segment per workflow label, numbered 1..N in the workflow's order, with
the label's name and coded category/type. Frames are built from the source images
themselves (in volume order), so each frame carries its source slice's position and
orientation and viewers overlay it on the right slice even when the volume had gaps.

Files written under ``payload/writer/``: ``seg.dcm`` and, per ``masks``, ``labels.mhd`` /
``labels.nii.gz`` (segment numbers, uint8).
"""

# SimpleITK ships py.typed but its SWIG bindings have no annotations: allow calling them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from appliance import __version__
from appliance.pipeline.errors import WriterError
from appliance.pipeline.stage import Stage, StageContext, StageOutput
from appliance.pipeline.volume_io import read_image, write_image
from appliance.settings.workflow import LabelSpec, Workflow

SEG_FILE = "seg.dcm"


def _concept(code: LabelSpec) -> tuple[hd.sr.CodedConcept, hd.sr.CodedConcept]:
    return (hd.sr.CodedConcept(code.category.value, code.category.scheme, code.category.meaning),
            hd.sr.CodedConcept(code.type.value, code.type.scheme, code.type.meaning))


def segment_descriptions(workflow: Workflow) -> list[hd.seg.SegmentDescription]:
    """One description per label, segment numbers 1..N in workflow order, AI algorithm = the workflow."""
    algorithm = hd.AlgorithmIdentificationSequence(
        name=workflow.name, family=codes.cid7162.ArtificialIntelligence, version=workflow.writer.algorithm_version,
        source=workflow.model.name)
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
    if segments.shape[0] != len(sources):
        raise WriterError(f"mask has {segments.shape[0]} slices but the series has {len(sources)} images")
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


def write_outputs(manifest: Path, labels: Path, workflow: Workflow, out_dir: Path) -> dict[str, Path]:
    """Write the SEG (and masks) for the ``labels`` image of the series described by ``manifest``.

    Returns:
        Artifacts: ``seg`` and, per the workflow, ``mask_mhd`` / ``mask_nifti``.

    Raises:
        WriterError: the label image does not fit the series, or the SEG cannot be built.
    """
    info = json.loads(manifest.read_text())
    try:
        # Headers are enough for the SEG: it references the images, it does not copy them.
        sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in info["files"]]
    except (OSError, KeyError, pydicom.errors.InvalidDicomError) as exc:
        raise WriterError(f"cannot re-read the source series listed in {manifest}: {exc}") from exc
    image = read_image(labels)
    segments = segment_numbers(sitk.GetArrayFromImage(image).astype(np.uint8), workflow)
    try:
        seg = build_seg(sources, segments, workflow)
    except (ValueError, TypeError) as exc:
        raise WriterError(f"highdicom could not build the SEG: {exc}") from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts = {"seg": out_dir / SEG_FILE}
    seg.save_as(artifacts["seg"])
    if workflow.writer.masks:
        mask = sitk.GetImageFromArray(segments)
        mask.CopyInformation(image)
        for fmt in workflow.writer.masks:
            artifacts[f"mask_{fmt}"] = write_image(mask, out_dir / "labels", fmt)
    return artifacts


class WriterStage(Stage):
    """Runs :func:`write_outputs` on the reader's manifest and the inference labels."""

    name = "writer"

    def run(self, context: StageContext) -> StageOutput:
        manifest = context.artifact("series_manifest", "reader")
        labels = context.artifact("labels", "inference")
        artifacts = write_outputs(manifest, labels, context.workflow, context.stage_dir(self.name))
        return StageOutput(artifacts)
