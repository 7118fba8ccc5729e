"""Server-side previews of a result: a maximum-intensity projection and three key slices of the
CT, each PNG with the segments' outlines in their colours.

* ``mip``: the coronal MIP (front view, brightest voxel along anterior-posterior), outlines of
  each segment's projection;
* ``axial``, ``coronal``, ``sagittal``: the slices through the centre of the segmented voxels
  (the volume's centre when nothing was segmented).

Images are shown as a radiologist expects (patient's right on the image's left, head up), with
square pixels in millimetres, :data:`SIZE` pixels on the longer side. Slices use a soft-tissue
window, the MIP a wider one.
"""

# SimpleITK's SWIG bindings have no annotations: allow calling them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from PIL import Image

from appliance.dashboard.results import Result, Segment
from appliance.storage import write_durably

NAMES = ("mip", "axial", "coronal", "sagittal")
SIZE = 512
#: (level, width) in HU.
SOFT_TISSUE = (40.0, 400.0)
MIP_WINDOW = (300.0, 1500.0)


def _window(plane: npt.NDArray[np.generic], level: float, width: float) -> npt.NDArray[np.uint8]:
    low = level - width / 2
    scaled = (plane.astype(np.float32) - low) * (255.0 / width)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _outline(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The mask's border (pixels with a 4-neighbour outside), thickened by one pixel."""
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    edge = mask & ~inner
    thick = edge.copy()
    thick[1:, :] |= edge[:-1, :]
    thick[:, 1:] |= edge[:, :-1]
    return thick


def _resize(plane: npt.NDArray[np.generic], spacing: tuple[float, float], nearest: bool) -> npt.NDArray[np.generic]:
    rows, cols = plane.shape
    height, width = rows * spacing[0], cols * spacing[1]
    scale = SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = Image.fromarray(plane)
    return np.asarray(image.resize(size, Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR))


def render(grey: npt.NDArray[np.uint8], labels: npt.NDArray[np.uint8], segments: tuple[Segment, ...],
           spacing: tuple[float, float]) -> bytes:
    """A PNG of ``grey`` with the outline of each segment of ``labels`` (same shape), ``spacing``
    (row, column) in mm."""
    base = _resize(grey, spacing, nearest=False)
    marks = _resize(labels, spacing, nearest=True)
    rgb = np.repeat(base[:, :, None], 3, axis=2)
    for segment in segments:
        mask = marks == segment.number
        if mask.any():
            rgb[_outline(mask)] = segment.rgb
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG", optimize=False, compress_level=3)
    return out.getvalue()


def lps_arrays(result: Result) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.uint8], tuple[float, float, float]]:
    """CT and labels as arrays indexed [S, P, L] (axes towards superior, posterior, left) and the
    spacing (x, y, z) in mm, whatever the acquisition's orientation.

    Like ``DICOMOrient``, each image axis goes to the patient axis its direction is closest to; done
    with numpy views (transpose and flips), so nothing is copied: the volume may be 150 MB.
    """
    direction = np.asarray(result.ct.GetDirection(), np.float64).reshape(3, 3)  # column i: image axis i
    axes = [int(np.argmax(np.abs(direction[:, i]))) for i in range(3)]
    if sorted(axes) != [0, 1, 2]:  # two image axes nearest the same patient axis (very oblique)
        axes = [0, 1, 2]
    spacing = result.ct.GetSpacing()
    arrays = []
    for image in (result.ct, result.labels):
        array = sitk.GetArrayViewFromImage(image)  # [z, y, x]; valid while result holds the image
        # numpy dim (2 - i) holds image axis i; it goes to output dim (2 - patient axis).
        order = [0, 0, 0]
        for i, a in enumerate(axes):
            order[2 - a] = 2 - i
        view = array.transpose(order)
        for i, a in enumerate(axes):
            if direction[a, i] < 0:
                view = np.flip(view, axis=2 - a)
        arrays.append(view)
    by_patient = [0.0, 0.0, 0.0]
    for i, a in enumerate(axes):
        by_patient[a] = spacing[i]
    return arrays[0], arrays[1], (by_patient[0], by_patient[1], by_patient[2])


def _centre(labels: npt.NDArray[np.uint8]) -> tuple[int, int, int]:
    """The centre of the segmented voxels (every 4th voxel in-plane is enough), or of the volume."""
    coarse = labels[:, ::4, ::4] > 0
    if not coarse.any():
        return labels.shape[0] // 2, labels.shape[1] // 2, labels.shape[2] // 2
    centre = []
    for axis, step in ((0, 1), (1, 4), (2, 4)):
        profile = coarse.sum(axis=tuple(a for a in range(3) if a != axis), dtype=np.int64)
        centre.append(int(round(float((profile * np.arange(profile.size)).sum() / profile.sum()) * step)))
    return centre[0], centre[1], centre[2]


def build(result: Result) -> dict[str, bytes]:
    """The PNGs of :data:`NAMES` for ``result``."""
    ct, labels, (sx, sy, sz) = lps_arrays(result)
    k, j, i = _centre(labels)
    up = slice(None, None, -1)  # head up: superior rows first
    seg = result.segments
    return {
        # Per pixel of the MIP, the highest segment number along anterior-posterior (segments of
        # the appliance's SEGs do not overlap, so that is the one segment there).
        "mip": render(_window(ct.max(axis=1)[up], *MIP_WINDOW), np.ascontiguousarray(labels.max(axis=1)[up]), seg,
                      (sz, sx)),
        "axial": render(_window(ct[k], *SOFT_TISSUE), np.ascontiguousarray(labels[k]), seg, (sy, sx)),
        "coronal": render(_window(ct[:, j, :][up], *SOFT_TISSUE), np.ascontiguousarray(labels[:, j, :][up]),
                          seg, (sz, sx)),
        "sagittal": render(_window(ct[:, :, i][up], *SOFT_TISSUE), np.ascontiguousarray(labels[:, :, i][up]),
                           seg, (sz, sy)),
    }


def cached(result: Result, folder: Path) -> dict[str, Path]:
    """The previews of ``result`` in ``folder`` (made now when missing)."""
    paths = {name: folder / f"{name}.png" for name in NAMES}
    if not all(p.is_file() for p in paths.values()):
        folder.mkdir(parents=True, exist_ok=True)
        for name, png in build(result).items():
            write_durably(folder, paths[name].name, [png])
    return paths
