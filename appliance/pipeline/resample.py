"""Move volumes between the image grid and the model grid.

Into the model: the HU volume is resampled with linear interpolation onto a grid with the
model's spacing (or size) that covers the same physical box: same origin corner, same
direction. Back out: each class-probability channel is resampled with *linear*
interpolation onto the image grid and only then reduced with argmax. Upsampling labels
with nearest neighbour instead would copy the coarse model voxels as blocks and leave a
staircase of up to half a model voxel along every boundary.

The argmax of linearly interpolated probabilities is computed without resampling every channel
onto the whole image grid (:func:`probabilities_to_labels`). Where every model voxel a target
voxel interpolates between has the same argmax class, with a clear margin over the runner-up,
the interpolated probability of that class is a convex combination of values that are each the
largest, so it stays the largest: the label is known from the model grid alone. Only target
voxels next to a label boundary on the model grid get their probabilities interpolated, in the
same arithmetic as ITK's linear interpolator. :func:`probabilities_to_labels_full` is the plain
method (every channel resampled, then argmax) that tests compare against, voxel for voxel.
"""

# SimpleITK ships py.typed but its SWIG bindings have no annotations: allow calling them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk


def model_grid(image: sitk.Image, spacing_mm: tuple[float, float, float] | None = None,
               size: tuple[int, int, int] | None = None) -> sitk.Image:
    """An empty float32 reference image on the model's grid for ``image``.

    Give exactly one of ``spacing_mm`` (x, y, z in mm; the size follows from the extent,
    rounded) or ``size`` (x, y, z voxels; the spacing follows). The outer corners of the
    first voxels coincide, so both grids span the same box.
    """
    if (spacing_mm is None) == (size is None):
        raise ValueError("give exactly one of spacing_mm or size")
    src_size = np.array(image.GetSize(), np.float64)
    src_spacing = np.array(image.GetSpacing(), np.float64)
    extent = src_size * src_spacing
    if spacing_mm is not None:
        new_spacing = np.array(spacing_mm, np.float64)
        new_size = np.maximum(1, np.rint(extent / new_spacing)).astype(int)
    else:
        assert size is not None
        new_size = np.array(size, int)
        new_spacing = extent / new_size
    direction = np.array(image.GetDirection(), np.float64).reshape(3, 3)
    # Keep the box's corner fixed: voxel centres sit half a voxel inside it on both grids.
    corner = np.array(image.GetOrigin()) - direction @ (src_spacing / 2.0)
    origin = corner + direction @ (new_spacing / 2.0)
    ref = sitk.Image([int(v) for v in new_size], sitk.sitkFloat32)
    ref.SetSpacing([float(v) for v in new_spacing])
    ref.SetOrigin([float(v) for v in origin])
    ref.SetDirection(image.GetDirection())
    return ref


def to_model_grid(image: sitk.Image, reference: sitk.Image, clip_hu: tuple[float, float]) -> npt.NDArray[np.float32]:
    """HU volume on ``reference``'s grid as a C-contiguous float32 (z, y, x) array, clipped to ``clip_hu``.

    Voxels outside the source volume get ``clip_hu[0]`` (air).
    """
    # Interpolation runs in double whatever the input type: no float copy of the whole volume first.
    resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, float(clip_hu[0]),
                              sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(resampled)
    np.clip(array, clip_hu[0], clip_hu[1], out=array)
    return np.ascontiguousarray(array, dtype=np.float32)


def probabilities_to_labels(probabilities: npt.NDArray[np.float32], model_ref: sitk.Image,
                            target: sitk.Image, *, slab: int | None = None) -> npt.NDArray[np.uint8]:
    """Class indices on ``target``'s grid from (class, z, y, x) ``probabilities`` on ``model_ref``'s grid.

    The same labels as :func:`probabilities_to_labels_full` (each channel resampled linearly, then
    argmax, ties to the lower class, background outside the model grid), computed from the model
    grid where the label is certain and by interpolation only next to label boundaries (see the
    module's docstring). Works through ``target`` in slabs of ``slab`` z slices (default: about
    :data:`SLAB_VOXELS` voxels), so beyond the returned uint8 volume, memory stays at a few float64
    slabs whatever the number of classes or slices. Grids whose axes are not parallel (an oblique
    model grid), 255 classes or more, and probabilities that are not all finite take the full method.
    """
    if probabilities.shape[0] < 2:
        return np.zeros(target.GetSize()[::-1], np.uint8)
    axes = _axis_maps(model_ref, target)
    if axes is None or probabilities.shape[0] >= _UNCERTAIN or not np.isfinite(probabilities).all():
        return probabilities_to_labels_full(probabilities, model_ref, target)
    certain = _certain_labels(probabilities, axes)
    # Per target (z, y, x) axis: which entry of ``certain`` each index falls in.
    order = [next(a for a in axes if a.target_axis == t) for t in (2, 1, 0)]
    certain = certain.transpose([2 - a.model_axis for a in order])
    labels = np.empty(target.GetSize()[::-1], np.uint8)
    if slab is None:
        slab = max(1, SLAB_VOXELS // (labels.shape[1] * labels.shape[2]))
    # The probabilities with model axes in target (z, y, x) order: a view, no copy.
    aligned = probabilities.transpose(0, *(1 + 2 - a.model_axis for a in order))
    for z0 in range(0, labels.shape[0], slab):
        part = labels[z0:z0 + slab]
        rows = np.take(np.take(certain, order[0].cell[z0:z0 + slab], axis=0), order[1].cell, axis=1)
        np.take(rows, order[2].cell, axis=2, out=part)
        open_voxels = np.nonzero(part == _UNCERTAIN)
        if open_voxels[0].size:
            part[open_voxels] = _interpolated_argmax(aligned, order, z0, open_voxels)
    return labels


def probabilities_to_labels_full(probabilities: npt.NDArray[np.float32], model_ref: sitk.Image,
                                 target: sitk.Image) -> npt.NDArray[np.uint8]:
    """Class indices on ``target``'s grid: every channel resampled linearly onto it, then argmax.

    The reference method :func:`probabilities_to_labels` must match voxel for voxel; memory is
    about three float32 target volumes. Outside the model grid background (0) wins.
    """
    best: npt.NDArray[np.float32] | None = None
    labels = np.zeros(target.GetSize()[::-1], np.uint8)
    for c in range(probabilities.shape[0]):
        channel = sitk.GetImageFromArray(probabilities[c])
        channel.CopyInformation(model_ref)
        # Background defaults to 1 outside the model grid, every organ to 0.
        default = 1.0 if c == 0 else 0.0
        up = sitk.GetArrayFromImage(sitk.Resample(channel, target, sitk.Transform(), sitk.sitkLinear,
                                                  default, sitk.sitkFloat32))
        if best is None:
            best = up
            continue
        wins = up > best
        labels[wins] = c
        np.maximum(best, up, out=best)
    return labels


SLAB_VOXELS = 1 << 21
"""Target voxels per slab: a float64 slab is 16 MB (8 slices of 512 x 512)."""
_UNCERTAIN = 255
"""Marks target voxels whose label needs interpolated probabilities (at most 254 classes)."""
_NEAR = 1e-6
"""Continuous indices this close to an integer or to the grid's edge are treated as either side."""
_MARGIN = 1e-5
"""Relative lead of the winning class at a model voxel that float32 rounding cannot overturn."""


@dataclass(frozen=True)
class _Axis:
    """How one model axis (sitk order, x = 0) maps onto the target axis parallel to it.

    ``index`` is the model continuous index of every target index along ``target_axis``;
    ``cell`` the entry of the certain-label table each target index falls in; ``lower``,
    ``upper`` and ``distance`` ITK's interpolation corners and weight, clamped at the edges.
    """

    model_axis: int
    target_axis: int
    cell: npt.NDArray[np.intp]
    lower: npt.NDArray[np.intp]
    upper: npt.NDArray[np.intp]
    distance: npt.NDArray[np.float64]
    inside: npt.NDArray[np.bool_]
    corners: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]
    """(first, last) model index of each table entry's corners, inclusive."""


def _axis_maps(model_ref: sitk.Image, target: sitk.Image) -> list[_Axis] | None:
    """Per model axis, the separable map from target indices; None when the grids are not parallel."""
    def index_to_point(image: sitk.Image) -> npt.NDArray[np.float64]:
        direction = np.array(image.GetDirection(), np.float64).reshape(3, 3)
        return np.asarray(direction * np.array(image.GetSpacing(), np.float64), np.float64)

    to_model = np.linalg.inv(index_to_point(model_ref))
    step = to_model @ index_to_point(target)
    offset = to_model @ (np.array(target.GetOrigin(), np.float64) - np.array(model_ref.GetOrigin(), np.float64))
    big = np.abs(step) > 1e-9 * np.abs(step).max()
    if not (big.sum(axis=0) == 1).all() or not (big.sum(axis=1) == 1).all():
        return None
    axes = []
    for a in range(3):
        t = int(np.argmax(np.abs(step[a])))
        n = int(model_ref.GetSize()[a])
        index = offset[a] + step[a, t] * np.arange(target.GetSize()[t], dtype=np.float64)
        axes.append(_axis(a, t, n, index))
    return axes


def _axis(model_axis: int, target_axis: int, n: int, index: npt.NDArray[np.float64]) -> _Axis:
    # ITK: inside the grid from -0.5 (included) to n - 0.5 (excluded); the index clamped to
    # [0, n - 1] between its floor and the next voxel (the edge voxel's value out to the edge).
    clamped = np.clip(index, 0.0, n - 1.0)
    lower = np.floor(clamped).astype(np.intp)
    upper = np.minimum(lower + 1, n - 1)
    distance = clamped - lower
    first, last = lower.copy(), upper.copy()
    # Where rounding could put the index on either side of an integer, take both cells' corners.
    near = np.abs(clamped - np.rint(clamped)) < _NEAR
    first[near] = np.maximum(np.rint(clamped[near]).astype(np.intp) - 1, 0)
    last[near] = np.minimum(np.rint(clamped[near]).astype(np.intp) + 1, n - 1)
    pairs, cell = np.unique(np.stack([first, last], axis=1), axis=0, return_inverse=True)
    cell = cell.reshape(-1)
    outside, edge = len(pairs), len(pairs) + 1
    inside = (index >= -0.5) & (index < n - 0.5)
    cell[~inside] = outside
    cell[(np.abs(index + 0.5) < _NEAR) | (np.abs(index - (n - 0.5)) < _NEAR)] = edge
    return _Axis(model_axis, target_axis, cell, lower, upper, distance, inside,
                 (pairs[:, 0].astype(np.intp), pairs[:, 1].astype(np.intp)))


def _certain_labels(probabilities: npt.NDArray[np.float32], axes: list[_Axis]) -> npt.NDArray[np.uint8]:
    """Table over (x cell, y cell, z cell) in model numpy order (z, y, x): the label every target voxel
    in that cell gets, or :data:`_UNCERTAIN`. The last two entries per axis are "outside" (background)
    and "on the edge" (uncertain)."""
    ranked = np.sort(probabilities, axis=0)
    tolerance = _MARGIN * max(1.0, float(np.abs(probabilities).max()))
    clear = (ranked[-1] - ranked[-2]) > tolerance
    winner = np.argmax(probabilities, axis=0).astype(np.uint8)
    low, high, sure = winner, winner, clear
    for a in axes:
        axis = 2 - a.model_axis
        first, last = a.corners
        low = _reduce(np.minimum, low, axis, first, last)
        high = _reduce(np.maximum, high, axis, first, last)
        sure = _reduce(np.logical_and, sure, axis, first, last)
    table = np.full(tuple(s + 2 for s in low.shape), _UNCERTAIN, np.uint8)
    table[: low.shape[0], : low.shape[1], : low.shape[2]] = np.where((low == high) & sure, low, _UNCERTAIN)
    outside = [s for s in low.shape]
    table[outside[0]] = 0
    table[:, outside[1]] = 0
    table[:, :, outside[2]] = 0
    return table


def _reduce(op: np.ufunc, values: npt.NDArray[Any], axis: int, first: npt.NDArray[np.intp],
            last: npt.NDArray[np.intp]) -> npt.NDArray[Any]:
    """``op`` over ``values`` along ``axis`` for each inclusive index range [first, last] (at most 3 long)."""
    out: npt.NDArray[Any] = np.take(values, first, axis=axis)
    for k in (1, 2):
        out = np.asarray(op(out, np.take(values, np.minimum(first + k, last), axis=axis)))
    return out


def _interpolated_argmax(aligned: npt.NDArray[np.float32], order: list[_Axis], z0: int,
                         voxels: tuple[npt.NDArray[np.intp], ...]) -> npt.NDArray[np.uint8]:
    """Argmax over classes of the probabilities linearly interpolated at target ``voxels``.

    ``aligned``: (class, ...) probabilities with model axes in target (z, y, x) order; ``order``:
    the model axis parallel to each target axis; ``voxels``: (z - ``z0``, y, x) indices. ITK's
    arithmetic, so the float32 values match its resampling bit for bit: corners clamped to the
    grid, model x first, then y, then z, each as ``a + (b - a) * distance`` in double, the result
    rounded to float32; outside the grid, background wins. Separable: the first two model axes
    are interpolated over the voxels' bounding box, the last one at the voxels alone.
    """
    index = [voxels[0] + z0, voxels[1], voxels[2]]
    box = [slice(int(i.min()), int(i.max()) + 1) for i in index]
    local = [i - b.start for i, b in zip(index, box, strict=True)]
    inside = np.ones(len(index[0]), bool)
    for k, a in enumerate(order):
        inside &= a.inside[index[k]]
    # Target axes in the order ITK interpolates along them (model x, y, z).
    steps = sorted(range(3), key=lambda k: order[k].model_axis)
    lows = [int(order[k].lower[box[k]].min()) for k in range(3)]
    crop = tuple(slice(lo, int(order[k].upper[box[k]].max()) + 1) for k, lo in enumerate(lows))
    # Many open voxels in the box (a busy slab): interpolating the box densely is cheaper than gathers.
    dense = len(index[0]) * _DENSE_SHARE >= np.prod([b.stop - b.start for b in box])
    if dense:
        inside = np.ones([1, 1, 1], bool)
        for k, a in enumerate(order):
            shape = [1, 1, 1]
            shape[k] = -1
            inside = inside & a.inside[box[k]].reshape(shape)
    best: npt.NDArray[np.float32] | None = None
    labels: npt.NDArray[np.uint8] | None = None
    for c in range(aligned.shape[0]):
        values: npt.NDArray[np.float64] = aligned[c][crop].astype(np.float64)
        for k in steps if dense else steps[:2]:
            values = _lerp(values, order[k], box[k], lows[k], k)
        if dense:
            value = values.astype(np.float32)
        else:
            k = steps[2]
            a = order[k]
            at = list(local)
            at[k] = a.lower[index[k]] - lows[k]
            low = values[tuple(at)]
            at[k] = a.upper[index[k]] - lows[k]
            value = (low + (values[tuple(at)] - low) * a.distance[index[k]]).astype(np.float32)
        value = np.where(inside, value, np.float32(1.0 if c == 0 else 0.0))
        if best is None or labels is None:
            best, labels = value, np.zeros(value.shape, np.uint8)
            continue
        labels[value > best] = c
        np.maximum(best, value, out=best)
    assert labels is not None
    return labels[tuple(local)] if dense else labels


_DENSE_SHARE = 8
"""Interpolate a slab's box densely once open voxels fill more than 1/8 of it."""


def _lerp(values: npt.NDArray[np.float64], axis: _Axis, box: slice, low_index: int, k: int
          ) -> npt.NDArray[np.float64]:
    """``values`` interpolated along numpy axis ``k`` onto the target indices ``box`` (ITK's a + (b - a) * d)."""
    shape = [1, 1, 1]
    shape[k] = -1
    low = np.take(values, axis.lower[box] - low_index, axis=k)
    high = np.take(values, axis.upper[box] - low_index, axis=k)
    high -= low
    high *= axis.distance[box].reshape(shape)
    high += low
    return high
