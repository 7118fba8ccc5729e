"""The ONNX port of pyliverlesionseg's liver CNN against a plain numpy implementation, layer by layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from appliance.model_repository import liver_unet

from .numpy_unet import forward


@pytest.fixture(scope="module")
def weights(liver_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> liver_unet.Weights:
    return liver_unet.read_weights(liver_unet.weights_from_wheel(liver_wheel, tmp_path_factory.mktemp("w")))


def test_weights_are_the_published_network(weights: liver_unet.Weights, liver_wheel: Path) -> None:
    assert weights.voxel_size_mm == (3.0, 3.0, 3.0)
    count = sum(k.size for k in weights.kernels.values()) + sum(b.size for b in weights.biases.values())
    assert count == 3_874_961
    assert "Apache License" in liver_unet.licence_from_wheel(liver_wheel)


def test_every_layer_matches_numpy(weights: liver_unet.Weights) -> None:
    # A small block the network accepts (27 k per axis), with different sizes per axis so that
    # a transposed axis cannot go unnoticed; random intensities in the model's range.
    block = (54, 81, 54)
    model = liver_unet.build_liver_unet(weights, input_xyz=block)
    image = np.random.default_rng(13).uniform(-0.5, 0.5, block).astype(np.float32)
    reference = forward(image, weights)
    for name in reference:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = dict(zip([o.name for o in session.get_outputs()],
                       session.run(None, {"image": np.ascontiguousarray(image.transpose(2, 1, 0))}), strict=True))
    assert len(reference) == 15 + 14 + 14 + 1  # convolutions, normalisations, activations, sigmoid
    for name, expected in reference.items():
        got = outputs[name][0].transpose(3, 2, 1, 0)  # (c, z, y, x) -> Keras's (x, y, z, c)
        assert got.shape == expected.shape, name
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5 * scale, err_msg=name)
    probabilities = outputs["probabilities"]
    assert probabilities.shape == (2, 54 - 26, 81 - 26, 54 - 26)
    np.testing.assert_allclose(probabilities[1], reference["main"][..., 0].transpose(2, 1, 0), atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-6)


def test_full_block_shapes(weights: liver_unet.Weights) -> None:
    model = liver_unet.build_liver_unet(weights)
    dims = [[d.dim_value for d in t.type.tensor_type.shape.dim] for t in (model.graph.input[0], model.graph.output[0])]
    assert dims == [[162, 162, 189], [2, 136, 136, 163]]


def test_rejects_a_block_the_network_cannot_take(weights: liver_unet.Weights) -> None:
    with pytest.raises(ValueError, match="not one the network can take"):
        liver_unet.build_liver_unet(weights, input_xyz=(60, 54, 54))
