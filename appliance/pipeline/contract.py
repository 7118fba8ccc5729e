"""The model contract: what the inference stage does to a volume before a model sees it, and after.

Generic parts, declared per workflow (``inference:`` keys) and so open to a site's own model:

* ``orientation``: the model grid's axis directions ("RAS", "LPS", ...); the series is reoriented
  before resampling, and the labels go back to the series' own grid in physical space;
* ``spacing_mm`` or ``size``: the model grid;
* ``clip_hu`` and ``scale``: the intensity window and its linear map to model units;
* ``block``, ``margin`` and ``pad_value``: a fixed input size, the context the model consumes per
  side (its output is the input's centre), and the value outside the volume;
* ``model.activation``: whether the output still needs a softmax.

Parts one network needs and a contract cannot express are named steps
(``preprocessing``, ``postprocessing``), implemented in this package for that network alone:
``pyliverlesionseg-ct`` and ``pyliverlesionseg-liver`` (:mod:`appliance.pipeline.pyliverlesionseg`).
"""

# SimpleITK ships py.typed but its SWIG bindings have no annotations: allow calling them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from appliance.pipeline import pyliverlesionseg
from appliance.pipeline.geometry import reorient
from appliance.pipeline.resample import model_grid, to_model_grid
from appliance.settings.workflow import InferenceSettings

Probabilities = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ModelInput:
    """The volume on the model grid: ``reference`` holds the geometry, ``hu`` the (z, y, x) HU values."""

    reference: sitk.Image
    hu: npt.NDArray[np.float32]
    notes: tuple[str, ...] = ()
    """What a named step wants recorded (e.g. a fallback it took)."""


def _liver_ct(image: sitk.Image) -> ModelInput:
    lps = sitk.DICOMOrient(image, "LPS")
    ct = sitk.GetArrayFromImage(lps).astype(np.float64).transpose(2, 1, 0)
    prepared = pyliverlesionseg.prepare(ct, lps.GetSpacing())
    grid = sitk.GetImageFromArray(prepared.hu.transpose(2, 1, 0).astype(np.float32))
    spacing = pyliverlesionseg.MODEL_VOXEL_MM
    grid.SetSpacing((spacing,) * 3)
    grid.SetDirection(lps.GetDirection())
    # zoom3d keeps the box's centre: place the 3 mm grid's centre there.
    centre_index = [(b.start + b.stop - 1) / 2.0 for b in prepared.box]
    centre = np.array(lps.TransformContinuousIndexToPhysicalPoint(centre_index))
    direction = np.array(lps.GetDirection()).reshape(3, 3)
    half = (np.array(prepared.hu.shape, np.float64) - 1.0) / 2.0 * spacing
    grid.SetOrigin(tuple(float(v) for v in centre - direction @ half))
    notes: list[str] = []
    if not prepared.box_from_crop:
        notes.append("pyliverlesionseg crop heuristics found no hip or body: used the body's bounding box")
    if prepared.mirrored:
        notes.append(f"series thinner than {pyliverlesionseg.MIN_MODEL_SLICES} model slices: mirrored "
                     f"{prepared.mirrored} slices onto each end for context")
    return ModelInput(grid, np.asarray(sitk.GetArrayFromImage(grid), np.float32), tuple(notes))


PREPROCESSING: dict[str, Callable[[sitk.Image], ModelInput]] = {"pyliverlesionseg-ct": _liver_ct}


def _liver_mask(probabilities: Probabilities) -> Probabilities:
    mask = pyliverlesionseg.postprocess(probabilities[1].astype(np.float64))
    return np.asarray(np.stack([~mask, mask]), np.float32)


POSTPROCESSING: dict[str, Callable[[Probabilities], Probabilities]] = {"pyliverlesionseg-liver": _liver_mask}


def model_input(image: sitk.Image, settings: InferenceSettings) -> ModelInput:
    """HU on the model grid, oriented as the contract says (window not yet applied)."""
    if settings.preprocessing is not None:
        prepared = PREPROCESSING[settings.preprocessing](image)
        if settings.orientation is None:
            return prepared
        # The grid carries the values: reorienting it permutes and flips them with the geometry.
        values = sitk.GetImageFromArray(prepared.hu)
        values.CopyInformation(prepared.reference)
        turned = reorient(values, settings.orientation)
        return ModelInput(turned, np.asarray(sitk.GetArrayFromImage(turned), np.float32), prepared.notes)
    oriented = reorient(image, settings.orientation)
    reference = model_grid(oriented, settings.spacing_mm, settings.size)
    # Clipping happens in window(); resampling with the window's low end outside keeps air air.
    hu = to_model_grid(oriented, reference, (settings.clip_hu[0], float(np.finfo(np.float32).max)))
    return ModelInput(reference, hu)


def window(hu: npt.NDArray[np.float32], settings: InferenceSettings) -> npt.NDArray[np.float32]:
    """Clip to ``clip_hu`` and, with ``scale``, map that range linearly onto the scale's range."""
    low, high = settings.clip_hu
    out = np.clip(hu, low, high).astype(np.float32)
    if settings.scale is not None:
        a, b = settings.scale
        out = (a + (out - np.float32(low)) * np.float32((b - a) / (high - low))).astype(np.float32)
    return np.ascontiguousarray(out)


def pad_value(settings: InferenceSettings) -> float:
    """Value of block voxels outside the volume: ``pad_value``, else the window's low end in model units."""
    if settings.pad_value is not None:
        return settings.pad_value
    return settings.scale[0] if settings.scale is not None else settings.clip_hu[0]


def _offsets(shape: tuple[int, ...], block: tuple[int, ...]) -> tuple[int, ...]:
    # Block index = volume index + offset: volume voxel n // 2 lands on block voxel b // 2.
    return tuple(b // 2 - n // 2 for n, b in zip(shape, block, strict=True))


def _overlap(n: int, size: int, offset: int) -> tuple[slice, slice]:
    """(volume slice, block slice) where volume index i and block index i + offset both exist."""
    lo, hi = max(0, -offset), min(n, size - offset)
    if hi <= lo:
        return slice(0, 0), slice(0, 0)
    return slice(lo, hi), slice(lo + offset, hi + offset)


def to_block(volume: npt.NDArray[np.float32], block_zyx: tuple[int, int, int], fill: float) -> npt.NDArray[np.float32]:
    """``volume`` (z, y, x) centred in a ``block_zyx`` array filled with ``fill``."""
    out = np.full(block_zyx, np.float32(fill), np.float32)
    pairs = [_overlap(n, b, o) for n, b, o in zip(volume.shape, block_zyx, _offsets(volume.shape, block_zyx),
                                                 strict=True)]
    out[tuple(p[1] for p in pairs)] = volume[tuple(p[0] for p in pairs)]
    return out


def from_block(output: Probabilities, shape_zyx: tuple[int, ...], block_zyx: tuple[int, ...],
               margin_zyx: tuple[int, int, int]) -> Probabilities:
    """The model's (classes, z, y, x) output for a block, placed back on the volume's grid.

    The output is the block's centre (``margin`` voxels cut per side); volume voxels it does not
    cover get background (class 0 probability 1).
    """
    classes = output.shape[0]
    out = np.zeros((classes, *shape_zyx), np.float32)
    out[0] = 1.0
    offsets = [o - m for o, m in zip(_offsets(shape_zyx, block_zyx), margin_zyx, strict=True)]
    pairs = [_overlap(n, s, o) for n, s, o in zip(shape_zyx, output.shape[1:], offsets, strict=True)]
    out[(slice(None), *(p[0] for p in pairs))] = output[(slice(None), *(p[1] for p in pairs))]
    return out


def softmax(logits: Probabilities) -> Probabilities:
    """Softmax over the class axis (axis 0), numerically stable."""
    shifted = logits - logits.max(axis=0, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=0, keepdims=True)
    return np.asarray(shifted, np.float32)


def zyx(xyz: tuple[int, int, int]) -> tuple[int, int, int]:
    """(x, y, z) -> (z, y, x)."""
    return (xyz[2], xyz[1], xyz[0])
