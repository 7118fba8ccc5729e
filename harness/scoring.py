"""Score a DICOM SEG against a reference label volume, in physical space.

The SEG's frames are matched to their source instances (by SOP Instance UID), stacked on the
source series' own grid, and resampled with nearest neighbour onto the reference's grid, so
the reference decides the region scored (e.g. TotalSegmentator's 30-slice slab).
"""

# SimpleITK ships py.typed but its SWIG bindings have no annotations: allow calling them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import SimpleITK as sitk


def seg_labels(seg_path: Path, sources: Sequence[Path]) -> sitk.Image:
    """The SEG's segment numbers on the source series' grid (slices sorted along their normal)."""
    reader = sitk.ImageSeriesReader()
    ordered = reader.GetGDCMSeriesFileNames(str(Path(sources[0]).parent))
    ordered = [f for f in ordered if Path(f) in {Path(s) for s in sources}] or [str(s) for s in sources]
    reader.SetFileNames(list(ordered))
    grid = reader.Execute()
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in ordered]
    seg = hd.seg.segread(seg_path)
    frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True,
                                               ignore_spatial_locations=False)
    labels = sitk.GetImageFromArray(np.asarray(frames, np.uint8))
    labels.CopyInformation(grid)
    return labels


def dice_scores(labels: sitk.Image, reference: sitk.Image,
                organs: Mapping[str, tuple[Sequence[int], Sequence[int]]]) -> dict[str, float]:
    """Dice per organ: ``organs[name] = (label values in labels, label values in reference)``.

    ``labels`` is resampled onto ``reference``'s grid (nearest neighbour, background outside);
    an organ absent from both gets NaN.
    """
    on_ref = sitk.GetArrayFromImage(sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    truth = sitk.GetArrayFromImage(reference)
    out: dict[str, float] = {}
    for name, (ours, theirs) in organs.items():
        a, b = np.isin(on_ref, list(ours)), np.isin(truth, list(theirs))
        total = int(a.sum() + b.sum())
        out[name] = float(2.0 * np.logical_and(a, b).sum() / total) if total else float("nan")
    return out
