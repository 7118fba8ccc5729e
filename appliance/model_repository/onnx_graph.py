"""Build the small deterministic CT segmentation network as an ONNX graph (onnx.helper, no torch).

The network is a hand-set "intensity classifier" rather than a trained model, so it ships
without weights and behaves the same on every host:

1. clip the input to [-1024, 3071] HU and smooth it with a 3x3x3 box filter (noise);
2. per organ class ``c``, score ``-((s - mean_c) / width_c)^2`` on the smoothed HU ``s``,
   minus a penalty on the local gradient magnitude, so that partial-volume voxels on a
   steep edge (e.g. kidney next to fat, whose HU sweep through the liver range) are not
   claimed by the organ whose HU they happen to cross;
3. background gets a constant score; softmax over classes gives probabilities;
4. the probabilities are box-smoothed once more and renormalised, which removes
   one-voxel specks the way a trained network's receptive field would.

Input ``image``: float32 (z, y, x) in HU. Output ``probabilities``: float32 (class, z, y, x),
summing to 1 over the class axis. Kernel sizes are in voxels, so the model expects the
voxel spacing its workflow resamples to (about 3 mm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


@dataclass(frozen=True)
class OrganClass:
    """One organ class of the classifier: its HU centre and acceptance width (HU)."""

    name: str
    mean_hu: float
    width_hu: float


@dataclass(frozen=True)
class NetworkSpec:
    """Parameters of one network; class 0 (background) is implicit."""

    organs: tuple[OrganClass, ...]
    background_score: float = -2.0
    """Constant background score; an organ wins while ``((s-mean)/width)^2 < 2``, i.e. within
    ``width * sqrt(2)`` HU of its mean on a flat region."""
    gradient_hu: float = 45.0
    """Gradient magnitude (HU per voxel) that costs an organ one unit of score."""

    @property
    def classes(self) -> int:
        return len(self.organs) + 1


def _const(name: str, array: npt.NDArray[Any]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array), name)


def build_network(spec: NetworkSpec, name: str) -> onnx.ModelProto:
    """Return the ONNX model for ``spec``; identical bytes for identical arguments."""
    n = len(spec.organs)
    classes = spec.classes
    box = np.full((1, 1, 3, 3, 3), 1.0 / 27.0, np.float32)
    # Central differences along z, y, x as three output channels.
    grad = np.zeros((3, 1, 3, 3, 3), np.float32)
    grad[0, 0, 0, 1, 1], grad[0, 0, 2, 1, 1] = -0.5, 0.5
    grad[1, 0, 1, 0, 1], grad[1, 0, 1, 2, 1] = -0.5, 0.5
    grad[2, 0, 1, 1, 0], grad[2, 0, 1, 1, 2] = -0.5, 0.5
    means = np.array([o.mean_hu for o in spec.organs], np.float32).reshape(1, n, 1, 1, 1)
    widths = np.array([o.width_hu for o in spec.organs], np.float32).reshape(1, n, 1, 1, 1)
    inits = [
        _const("clip_lo", np.array(-1024.0, np.float32)),
        _const("clip_hi", np.array(3071.0, np.float32)),
        _const("axes0", np.array([0, 1], np.int64)),
        _const("axis1", np.array([1], np.int64)),
        _const("axis0", np.array([0], np.int64)),
        _const("box", box),
        _const("grad", grad),
        _const("means", means),
        _const("inv_widths", 1.0 / widths),
        _const("inv_g2", np.array(1.0 / spec.gradient_hu**2, np.float32)),
        _const("zero", np.array(0.0, np.float32)),
        _const("split_sizes", np.array([1, n], np.int64)),
        _const("bg", np.array(spec.background_score, np.float32)),
        _const("box_c", np.full((classes, 1, 3, 3, 3), 1.0 / 27.0, np.float32)),
    ]
    pads = [1, 1, 1, 1, 1, 1]
    nodes = [
        helper.make_node("Clip", ["image", "clip_lo", "clip_hi"], ["clipped"]),
        helper.make_node("Unsqueeze", ["clipped", "axes0"], ["x5"]),  # (1, 1, z, y, x)
        helper.make_node("Conv", ["x5", "box"], ["smooth"], pads=pads),
        helper.make_node("Conv", ["smooth", "grad"], ["g"], pads=pads),
        helper.make_node("Mul", ["g", "g"], ["g_sq"]),
        helper.make_node("ReduceSum", ["g_sq", "axis1"], ["g2"], keepdims=1),
        helper.make_node("Mul", ["g2", "inv_g2"], ["edge_cost"]),
        helper.make_node("Sub", ["smooth", "means"], ["dev"]),  # broadcast to (1, n, z, y, x)
        helper.make_node("Mul", ["dev", "inv_widths"], ["z_score"]),
        helper.make_node("Mul", ["z_score", "z_score"], ["z_sq"]),
        helper.make_node("Add", ["z_sq", "edge_cost"], ["cost"]),
        helper.make_node("Sub", ["zero", "cost"], ["organ_scores"]),
        # Background: a constant map shaped like one channel.
        helper.make_node("Mul", ["smooth", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "bg"], ["bg_score"]),
        helper.make_node("Concat", ["bg_score", "organ_scores"], ["scores"], axis=1),
        helper.make_node("Softmax", ["scores"], ["p_raw"], axis=1),
        # Dilate organ probabilities by one voxel: the edge penalty and the smoothing erode
        # organs by about that much, and a max filter gives it back without moving the centre.
        helper.make_node("Split", ["p_raw", "split_sizes"], ["p_bg", "p_organs"], axis=1),
        helper.make_node("MaxPool", ["p_organs"], ["p_dilated"], kernel_shape=[3, 3, 3], pads=pads),
        helper.make_node("Concat", ["p_bg", "p_dilated"], ["p_grown"], axis=1),
        helper.make_node("Conv", ["p_grown", "box_c"], ["p_smooth"], pads=pads, group=classes),
        # Zero padding at the volume border loses mass; renormalise so classes sum to 1.
        helper.make_node("ReduceSum", ["p_smooth", "axis1"], ["p_sum"], keepdims=1),
        helper.make_node("Div", ["p_smooth", "p_sum"], ["p_norm"]),
        helper.make_node("Squeeze", ["p_norm", "axis0"], ["probabilities"]),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["z", "y", "x"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [classes, "z", "y", "x"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="appliance")
    # Pin the IR version so that older onnxruntime builds (Triton containers) accept the file.
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
