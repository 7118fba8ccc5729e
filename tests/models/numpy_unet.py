"""A plain numpy implementation of pyliverlesionseg's liver U-Net, written from the Keras code.

It follows ``create_unet_like_model`` as ``unet_liver_predict`` calls it, in Keras's own layout
(x, y, z, channel) and with Keras's layer semantics, independently of the ONNX builder, so that
the ONNX port can be checked against it layer by layer. Slow (float32 matrix products per
kernel offset): meant for small blocks in tests and one full block in the benchmark.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from appliance.model_repository.liver_unet import Weights

Array = npt.NDArray[np.float32]


def conv3d_same(x: Array, kernel: Array, bias: Array) -> Array:
    """Keras Conv3D, padding "same", stride 1: x (X, Y, Z, in), kernel (kx, ky, kz, in, out)."""
    kx, ky, kz = kernel.shape[:3]
    px, py, pz = kx // 2, ky // 2, kz // 2
    padded = np.pad(x, ((px, px), (py, py), (pz, pz), (0, 0)))
    X, Y, Z = x.shape[:3]
    out = np.zeros((X, Y, Z, kernel.shape[4]), np.float32)
    for i in range(kx):
        for j in range(ky):
            for k in range(kz):
                out += padded[i:i + X, j:j + Y, k:k + Z] @ kernel[i, j, k]
    return out + bias


def normalise(x: Array) -> Array:
    """The package's Lambda: (x - mean) / (std + K.epsilon()) over axes 1-3 of (batch, x, y, z, c)."""
    mean = x.mean(axis=(0, 1, 2), keepdims=True, dtype=np.float64)
    std = x.std(axis=(0, 1, 2), keepdims=True, dtype=np.float64)
    return ((x - mean) / (std + 1e-7)).astype(np.float32)


def leaky_relu(x: Array) -> Array:
    return np.where(x > 0, x, np.float32(0.01) * x).astype(np.float32)


def max_pool(x: Array, f: int) -> Array:
    """MaxPooling3D(f, f), padding "valid": trailing voxels that do not fill a window are dropped."""
    X, Y, Z, C = (x.shape[0] // f, x.shape[1] // f, x.shape[2] // f, x.shape[3])
    v = x[:X * f, :Y * f, :Z * f].reshape(X, f, Y, f, Z, f, C)
    return v.max(axis=(1, 3, 5))


def avg_pool_valid(x: Array, f: int) -> Array:
    """AveragePooling3D(f, strides=1, padding "valid")."""
    X, Y, Z = (s - f + 1 for s in x.shape[:3])
    out = np.zeros((X, Y, Z, x.shape[3]), np.float32)
    for i in range(f):
        for j in range(f):
            for k in range(f):
                out += x[i:i + X, j:j + Y, k:k + Z]
    return out / np.float32(f ** 3)


def upsample_linear(x: Array, f: int) -> Array:
    """The package's "linear" upsampling: UpSampling3D(f) then AveragePooling3D(f, strides 1)."""
    copied = x.repeat(f, axis=0).repeat(f, axis=1).repeat(f, axis=2)
    return avg_pool_valid(copied, f)


def crop(x: Array, target: tuple[int, ...]) -> Array:
    """Cropping3D by int((l - r) / 2) on both sides of each axis."""
    c = [int((s - t) / 2) for s, t in zip(x.shape[:3], target, strict=True)]
    return x[c[0]:x.shape[0] - c[0], c[1]:x.shape[1] - c[1], c[2]:x.shape[2] - c[2]]


def forward(image_xyz: Array, w: Weights) -> dict[str, Array]:
    """Run the network on a (X, Y, Z) block; returns every layer's output by Keras-style name.

    ``"main"`` is the sigmoid output (X - 26, Y - 26, Z - 26, 1).
    """
    out: dict[str, Array] = {}
    n = {"conv": 0, "lambda": 0, "relu": 0}

    def conv(path: Array, first: bool = False) -> Array:
        if not first:
            n["lambda"] += 1
            path = out[f"lambda_{n['lambda']}"] = normalise(path)
            n["relu"] += 1
            path = out[f"leaky_re_lu_{n['relu']}"] = leaky_relu(path)
        n["conv"] += 1
        name = f"conv3d_{n['conv']}"
        path = out[name] = conv3d_same(path, w.kernels[name], w.biases[name])
        return path

    x = image_xyz[..., None].astype(np.float32)
    # Down: level 1 (no pooling), then pooling by 3 before levels 2-4; two convolutions each.
    x = conv(x, first=True)
    x = conv(x)
    left = [x]
    for _ in range(3):
        x = max_pool(x, 3)
        x = conv(x)
        x = conv(x)
        left.append(x)
    # Up: from level 4 to level 1, each time upsample, crop the skip, concatenate [skip, up], two convolutions.
    for level in (2, 1, 0):
        x = upsample_linear(x, 3)
        x = np.concatenate([crop(left[level], x.shape[:3]), x], axis=-1)
        x = conv(x)
        x = conv(x)
    x = conv(x)  # the 1x1x1 head
    out["main"] = (1.0 / (1.0 + np.exp(-x))).astype(np.float32)
    return out
