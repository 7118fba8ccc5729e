"""The trained whole-liver CNN of pyliverlesionseg 0.3, rebuilt as an ONNX graph from its Keras weights.

Origin: the ``pyliverlesionseg`` 0.3 wheel on PyPI (Apache-2.0, Georg Schramm and colleagues,
KU Leuven), file ``pyliverlesionseg/trained_models/model_unet_ct_mr_liv_seg_resize_1.5mm_med_3_
resize_3mm_20201011_dice_loss_val_binary_dice_mean.hdf5``: Keras 2.2.2 (TensorFlow 1.x)
``save_weights`` output, 3,874,961 parameters. TensorFlow 1.x cannot be installed, so the file is
read with h5py and the network is written out again, layer for layer, as ONNX.

The architecture is what the package's ``unet_liver_predict`` builds with
``create_unet_like_model`` (``architectures/unet_generalized.py``): a 4-level U-Net with
subsampling 1, 3, 9, 27, "same" convolutions, max pooling, "linear" upsampling (nearest
copy then a 3x3x3 average), per-channel normalisation over the whole block
(``(x - mean) / (std + 1e-7)``, a Lambda), LeakyReLU(0.01), a 1x1x1 sigmoid head. Its input
block is 189 x 162 x 162 voxels (x, y, z) and its output the central 163 x 136 x 136: 13 voxels
per side are context only.

Tensors here are laid out (z, y, x) like every volume in the appliance; Keras worked on
(x, y, z, channel), so each kernel ``(kx, ky, kz, in, out)`` becomes ONNX's ``(out, in, kz, ky, kx)``.

Input ``image``: float32 (z, y, x) = (162, 162, 189), intensities already windowed and scaled by the
workflow (HU clipped to [-200, 200], divided by 400). Output ``probabilities``: float32
(2, 136, 136, 163), background = 1 - p and liver = p, where p is the network's sigmoid.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17

#: The weights file inside the wheel.
WEIGHTS_MEMBER = ("pyliverlesionseg/trained_models/model_unet_ct_mr_liv_seg_resize_1.5mm_med_3_resize_3mm_"
                  "20201011_dice_loss_val_binary_dice_mean.hdf5")
LICENCE_MEMBER = "pyliverlesionseg-0.3.dist-info/LICENSE"

#: Input block (x, y, z) voxels and the output it yields: 13 voxels of context per side.
INPUT_BLOCK = (189, 162, 162)
OUTPUT_BLOCK = (163, 136, 136)
MARGIN = 13
#: Normalisation epsilon: Keras's K.epsilon(), added to the standard deviation.
EPSILON = 1e-7
LEAKY_ALPHA = 0.01

Kernel = tuple[int, int, int]


@dataclass(frozen=True)
class Level:
    """One level of the U: its subsampling, and the (kernel (x, y, z), filters) of its convolutions."""

    subsample: int
    down: tuple[tuple[Kernel, int], ...]
    up: tuple[tuple[Kernel, int], ...]


#: ``unet_liver_predict``'s arguments to ``create_unet_like_model``.
LEVELS: tuple[Level, ...] = (
    Level(1, (((3, 3, 1), 20), ((3, 3, 3), 40)), (((3, 3, 3), 40), ((3, 3, 1), 20))),
    Level(3, (((3, 3, 1), 40), ((3, 3, 3), 80)), (((3, 3, 3), 80), ((3, 3, 1), 40))),
    Level(9, (((3, 3, 1), 80), ((3, 3, 3), 160)), (((3, 3, 3), 160), ((3, 3, 1), 80))),
    Level(27, (((3, 3, 3), 160), ((3, 3, 3), 160)), ()),
)


@dataclass(frozen=True)
class Weights:
    """Kernels and biases by Keras layer name (``conv3d_1`` ...), as stored: kernels (kx, ky, kz, in, out)."""

    kernels: dict[str, npt.NDArray[np.float32]]
    biases: dict[str, npt.NDArray[np.float32]]
    voxel_size_mm: tuple[float, float, float]


def conv_names() -> list[str]:
    """Keras's names of the convolutions in creation order: down path, up path, head."""
    count = sum(len(level.down) + len(level.up) for level in LEVELS) + 1
    return [f"conv3d_{i}" for i in range(1, count + 1)]


def read_weights(path: str | Path) -> Weights:
    """Read the Keras 2.2 HDF5 weights file (``save_weights`` layout) with h5py.

    Raises:
        ValueError: a convolution is missing or shaped otherwise than the architecture needs.
    """
    kernels: dict[str, npt.NDArray[np.float32]] = {}
    biases: dict[str, npt.NDArray[np.float32]] = {}
    with h5py.File(path, "r") as f:
        for name in conv_names():
            if name not in f:
                raise ValueError(f"{path}: no layer {name!r}; not the pyliverlesionseg liver model")
            group = f[name][name]
            kernels[name] = np.asarray(group["kernel:0"], np.float32)
            biases[name] = np.asarray(group["bias:0"], np.float32)
        voxel = tuple(float(v) for v in np.asarray(f["header/voxel_size"]))
    _check_shapes(kernels, path)
    return Weights(kernels, biases, (voxel[0], voxel[1], voxel[2]))


def _check_shapes(kernels: dict[str, npt.NDArray[np.float32]], path: str | Path) -> None:
    expected = {name: shape for name, shape in zip(conv_names(), _kernel_shapes(), strict=True)}
    for name, shape in expected.items():
        if kernels[name].shape != shape:
            raise ValueError(f"{path}: {name} kernel is {kernels[name].shape}, the architecture needs {shape}")


def _kernel_shapes() -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    channels = 1
    skips: list[int] = []
    for level in LEVELS:
        for kernel, filters in level.down:
            shapes.append((*kernel, channels, filters))
            channels = filters
        skips.append(channels)
    for index in range(len(LEVELS) - 2, -1, -1):
        channels += skips[index]
        for kernel, filters in LEVELS[index].up:
            shapes.append((*kernel, channels, filters))
            channels = filters
    shapes.append((1, 1, 1, channels, 1))
    return shapes


def weights_from_wheel(wheel: str | Path, dest: str | Path) -> Path:
    """Extract the liver model's HDF5 file from the pyliverlesionseg wheel into folder ``dest``."""
    target = Path(dest) / Path(WEIGHTS_MEMBER).name
    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(WEIGHTS_MEMBER)
        except KeyError:
            raise ValueError(f"{wheel} holds no {WEIGHTS_MEMBER}: not the pyliverlesionseg 0.3 wheel") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as out:
            out.write(src.read())
    return target


def licence_from_wheel(wheel: str | Path) -> str:
    """The LICENSE text the wheel carries (Apache-2.0)."""
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(LICENCE_MEMBER).decode()


class _Graph:
    """Accumulates ONNX nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def const(self, name: str, array: npt.NDArray[Any]) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs: Any) -> str:
        self.count += 1
        out = name or f"{op_type.lower()}_{self.count}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _conv(g: _Graph, x: str, name: str, weights: Weights) -> str:
    kernel = weights.kernels[name]  # (kx, ky, kz, in, out)
    w = np.transpose(kernel, (4, 3, 2, 1, 0))  # (out, in, kz, ky, kx)
    kz, ky, kx = w.shape[2:]
    # Keras "same" with stride 1 and odd kernels: (k - 1) / 2 on both sides.
    pads = [kz // 2, ky // 2, kx // 2] * 2
    return g.op("Conv", [x, g.const(f"{name}/kernel", w), g.const(f"{name}/bias", weights.biases[name])],
                name, kernel_shape=[kz, ky, kx], pads=pads)


def _normalise(g: _Graph, x: str, name: str) -> str:
    # (x - mean) / (std + eps) over the spatial axes, per channel: the package's Lambda, not
    # ONNX InstanceNormalization (that puts eps under the square root).
    mean = g.op("ReduceMean", [x], f"{name}/mean", axes=[2, 3, 4], keepdims=1)
    centred = g.op("Sub", [x, mean], f"{name}/centred")
    square = g.op("Mul", [centred, centred], f"{name}/square")
    var = g.op("ReduceMean", [square], f"{name}/var", axes=[2, 3, 4], keepdims=1)
    std = g.op("Sqrt", [var], f"{name}/std")
    denom = g.op("Add", [std, g.const(f"{name}/eps", np.array(EPSILON, np.float32))], f"{name}/denom")
    return g.op("Div", [centred, denom], name)


def _upsample(g: _Graph, x: str, name: str, factor: int) -> str:
    # UpSampling3D (copy each voxel factor times) then AveragePooling3D(factor, strides 1, valid).
    scales = g.const(f"{name}/scales", np.array([1, 1, factor, factor, factor], np.float32))
    copied = g.op("Resize", [x, "", scales], f"{name}/copy", mode="nearest",
                  coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    return g.op("AveragePool", [copied], name, kernel_shape=[factor] * 3, strides=[1, 1, 1])


def _crop(g: _Graph, x: str, name: str, by: int) -> str:
    # Cropping3D: the same amount on both sides of each spatial axis.
    starts = g.const(f"{name}/starts", np.array([by] * 3, np.int64))
    ends = g.const(f"{name}/ends", np.array([-by] * 3, np.int64))
    axes = g.const(f"{name}/axes", np.array([2, 3, 4], np.int64))
    return g.op("Slice", [x, starts, ends, axes], name)


def block_sizes(input_zyx: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """Spatial size (z, y, x) of each level's down-path output for an input block."""
    sizes = [input_zyx]
    for level, prev in zip(LEVELS[1:], LEVELS, strict=False):
        factor = level.subsample // prev.subsample
        sizes.append((sizes[-1][0] // factor, sizes[-1][1] // factor, sizes[-1][2] // factor))
    return sizes


def build_liver_unet(weights: Weights, name: str = "liver_seg_ct",
                     input_xyz: tuple[int, int, int] = INPUT_BLOCK) -> onnx.ModelProto:
    """The ONNX model of the network for one fixed input block (x, y, z); see the module docstring.

    Every Keras layer's output keeps the Keras layer's name (``conv3d_4``, ``lambda_2``, ...
    in the order this builder creates them), so that tests can compare it layer by layer.
    """
    g = _Graph()
    in_zyx = (input_xyz[2], input_xyz[1], input_xyz[0])
    x = g.op("Unsqueeze", ["image", g.const("batch_channel", np.array([0, 1], np.int64))], "input_1")
    convs = iter(conv_names())
    lambdas = (f"lambda_{i}" for i in range(1, 100))
    relus = (f"leaky_re_lu_{i}" for i in range(1, 100))

    def unit(path: str, first: bool) -> str:
        # Every convolution but the network's first is preceded by normalisation and LeakyReLU.
        if not first:
            path = _normalise(g, path, next(lambdas))
            path = g.op("LeakyRelu", [path], next(relus), alpha=LEAKY_ALPHA)
        return _conv(g, path, next(convs), weights)

    skips: list[str] = []
    prev = 1
    for i, level in enumerate(LEVELS):
        factor = level.subsample // prev
        prev = level.subsample
        if factor > 1:
            x = g.op("MaxPool", [x], f"max_pooling_{i}", kernel_shape=[factor] * 3, strides=[factor] * 3)
        for j, _ in enumerate(level.down):
            x = unit(x, first=(i == 0 and j == 0))
        skips.append(x)
    sizes = block_sizes(in_zyx)
    size = sizes[-1]
    for i in range(len(LEVELS) - 2, -1, -1):
        factor = LEVELS[i + 1].subsample // LEVELS[i].subsample
        x = _upsample(g, x, f"up_{i}", factor)
        size = (size[0] * factor - factor + 1, size[1] * factor - factor + 1, size[2] * factor - factor + 1)
        by = (sizes[i][0] - size[0]) // 2
        if any((s - t) != 2 * by for s, t in zip(sizes[i], size, strict=True)):
            raise ValueError(f"input block {input_xyz} is not one the network can take (x, y, z: 27 k each)")
        left = _crop(g, skips[i], f"crop_{i}", by) if by else skips[i]
        x = g.op("Concat", [left, x], f"concatenate_{i}", axis=1)
        for _ in LEVELS[i].up:
            x = unit(x, first=False)
    x = unit(x, first=False)
    p = g.op("Sigmoid", [x], "main")
    one = g.const("one", np.array(1.0, np.float32))
    background = g.op("Sub", [one, p], "background")
    both = g.op("Concat", [background, p], "classes", axis=1)
    g.op("Squeeze", [both, g.const("batch", np.array([0], np.int64))], "probabilities")
    out_zyx = [s - 2 * MARGIN for s in in_zyx]
    graph = helper.make_graph(
        g.nodes, name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(in_zyx))],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [2, *out_zyx])],
        initializer=g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="appliance")
    model.ir_version = 8  # older onnxruntime builds (Triton containers) accept it
    model.doc_string = ("Whole-liver 3-D CNN from pyliverlesionseg 0.3 (Apache-2.0), "
                        "ported from its Keras 2.2 HDF5 weights")
    onnx.checker.check_model(model)
    return model
