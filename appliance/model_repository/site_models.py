"""Bring your own model: a site's ONNX segmentation model checked against the model contract and installed.

A site model is an ONNX file plus a manifest (YAML, or the same keys on the command line)::

    name: spleen_site            # Triton model name, and the workflow's name unless `workflow` is set
    onnx: spleen.onnx            # relative to the manifest
    labels:                      # class index -> segment (class 0 is background)
      - {class: 1, name: Spleen, code: "78961009", meaning: Spleen}
    spacing_mm: [1.5, 1.5, 2.0]  # (x, y, z) model grid
    orientation: RAS             # optional; default: as acquired
    clip_hu: [-160, 240]         # HU window
    scale: [0.0, 1.0]            # optional: the window mapped linearly onto this range
    block: [96, 96, 96]          # optional: fixed (x, y, z) input size
    margin: [0, 0, 0]            # optional: context voxels per side the model drops
    activation: softmax          # none (outputs probabilities) or softmax (outputs logits)

The ONNX graph must take one float32 volume (z, y, x) and return one float32 tensor
(classes, z, y, x), classes = the largest label class + 1; fixed dims must agree with
``block`` and ``margin``. :func:`check_onnx` says which of these a graph breaks.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import yaml

from appliance.model_repository import Backend, Kind, tensor_config, write_model

#: Marks a model folder as a site model (``appliance models list|remove`` touch only these).
MARKER = "site-model.yaml"
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
ORIENTATION_RE = re.compile(r"^(?=.*[LR])(?=.*[AP])(?=.*[SI])[LRAPSI]{3}$")


class SiteModelError(ValueError):
    """The manifest or the ONNX graph breaks the contract; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class SiteLabel:
    """One output class: its index and the segment it becomes (SNOMED CT code and meaning)."""

    class_index: int
    name: str
    code: str = "85756007"
    meaning: str = "Tissue"


@dataclass(frozen=True)
class Manifest:
    """A site model's contract (see the module docstring); lengths in mm, axis triples (x, y, z)."""

    name: str
    onnx: Path
    labels: tuple[SiteLabel, ...]
    spacing_mm: tuple[float, float, float]
    clip_hu: tuple[float, float] = (-1024.0, 3071.0)
    scale: tuple[float, float] | None = None
    orientation: str | None = None
    block: tuple[int, int, int] | None = None
    margin: tuple[int, int, int] = (0, 0, 0)
    pad_value: float | None = None
    activation: str = "none"
    input_name: str = "image"
    output_name: str = "probabilities"
    workflow: str | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> int:
        return max(label.class_index for label in self.labels) + 1


def _triple(value: Any, kind: type, key: str, problems: list[str]) -> Any:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        problems.append(f"{key}: three values (x, y, z) expected, got {value!r}")
        return None
    try:
        out = tuple(kind(v) for v in value)
    except (TypeError, ValueError):
        problems.append(f"{key}: numbers expected, got {value!r}")
        return None
    if any(v <= 0 for v in out) and key != "margin":
        problems.append(f"{key}: values must be positive, got {value!r}")
    return out


def _pair(value: Any, key: str, problems: list[str]) -> tuple[float, float] | None:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        problems.append(f"{key}: two values [low, high] expected, got {value!r}")
        return None
    low, high = float(value[0]), float(value[1])
    if low >= high:
        problems.append(f"{key}: low must be below high, got {value!r}")
    return (low, high)


def parse_manifest(data: dict[str, Any], base: Path) -> Manifest:
    """A :class:`Manifest` from a mapping (a YAML file's content or CLI options); ``onnx`` relative to ``base``.

    Raises:
        SiteModelError: listing every problem found.
    """
    problems: list[str] = []
    known = {"name", "onnx", "labels", "spacing_mm", "clip_hu", "scale", "orientation", "block", "margin",
             "pad_value", "activation", "input", "output", "workflow", "description"}
    problems += [f"{k}: unknown key" for k in sorted(set(data) - known)]
    name = str(data.get("name", ""))
    if not NAME_RE.match(name):
        problems.append(f"name: {name!r} is not a model name (a letter, then letters, digits, _ or -)")
    onnx_path = data.get("onnx")
    path = (base / str(onnx_path)) if onnx_path else Path()
    if not onnx_path or not path.is_file():
        problems.append(f"onnx: no file {path}")
    labels: list[SiteLabel] = []
    for i, raw in enumerate(data.get("labels") or []):
        if isinstance(raw, str) and "=" in raw:  # the command line's "1=Spleen"
            index, _, label_name = raw.partition("=")
            raw = {"class": index, "name": label_name}
        if not isinstance(raw, dict) or "class" not in raw or "name" not in raw:
            problems.append(f"labels[{i}]: needs class and name, got {raw!r}")
            continue
        try:
            index_value = int(raw["class"])
        except (TypeError, ValueError):
            problems.append(f"labels[{i}].class: an integer expected, got {raw['class']!r}")
            continue
        if index_value < 1:
            problems.append(f"labels[{i}].class: 1 or more (0 is background), got {index_value}")
        labels.append(SiteLabel(index_value, str(raw["name"]), str(raw.get("code", SiteLabel.code)),
                                str(raw.get("meaning", raw["name"]))))
    if not labels:
        problems.append("labels: at least one label is required")
    if len({label.class_index for label in labels}) != len(labels):
        problems.append("labels: a class is listed twice")
    spacing = _triple(data.get("spacing_mm"), float, "spacing_mm", problems)
    clip = _pair(data.get("clip_hu", [-1024, 3071]), "clip_hu", problems)
    scale = _pair(data["scale"], "scale", problems) if data.get("scale") is not None else None
    orientation = data.get("orientation")
    if orientation is not None and not ORIENTATION_RE.match(str(orientation)):
        problems.append(f"orientation: three letters, one of L/R, A/P and S/I each (e.g. RAS), got {orientation!r}")
    block = _triple(data["block"], int, "block", problems) if data.get("block") is not None else None
    margin = _triple(data.get("margin", [0, 0, 0]), int, "margin", problems)
    activation = str(data.get("activation", "none"))
    if activation not in ("none", "softmax"):
        problems.append(f"activation: none or softmax, got {activation!r}")
    if margin and any(margin) and block is None:
        problems.append("margin: needs block (the fixed input the margin is cut from)")
    if problems:
        raise SiteModelError(problems)
    return Manifest(name, path, tuple(labels), spacing, clip or (-1024.0, 3071.0), scale,
                    str(orientation) if orientation else None, block, margin or (0, 0, 0),
                    float(data["pad_value"]) if data.get("pad_value") is not None else None, activation,
                    str(data.get("input", "image")), str(data.get("output", "probabilities")),
                    str(data["workflow"]) if data.get("workflow") else None, str(data.get("description", "")))


def load_manifest(path: Path) -> Manifest:
    """Read a manifest YAML file (see :func:`parse_manifest`)."""
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise SiteModelError([f"{path}: a mapping of keys expected"])
    return parse_manifest(data, path.parent)


def _dims(value_info: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else -1 for d in value_info.type.tensor_type.shape.dim]


def check_onnx(model: onnx.ModelProto, manifest: Manifest) -> tuple[list[int], list[int]]:
    """The graph's (input dims, output dims) if it fits the contract; -1 marks a free dim.

    Raises:
        SiteModelError: listing every mismatch (names, types, ranks, class count, fixed dims).
    """
    problems: list[str] = []
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise SiteModelError([f"not a valid ONNX model: {exc}"]) from exc
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    outputs = list(model.graph.output)
    by_in, by_out = {i.name: i for i in inputs}, {o.name: o for o in outputs}
    if manifest.input_name not in by_in:
        problems.append(f"input {manifest.input_name!r} not in the graph (it has {', '.join(by_in) or 'none'}); "
                        "set input: NAME")
    if len(inputs) != 1:
        problems.append(f"the graph takes {len(inputs)} inputs; the contract sends exactly one volume")
    if manifest.output_name not in by_out:
        problems.append(f"output {manifest.output_name!r} not in the graph (it has {', '.join(by_out) or 'none'}); "
                        "set output: NAME")
    if problems:
        raise SiteModelError(problems)
    inp, out = by_in[manifest.input_name], by_out[manifest.output_name]
    for what, info in (("input", inp), ("output", out)):
        if info.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            problems.append(f"{what} {info.name!r} is {onnx.TensorProto.DataType.Name(info.type.tensor_type.elem_type)}"
                            ", the contract needs FLOAT (float32)")
    in_dims, out_dims = _dims(inp), _dims(out)
    if len(in_dims) != 3:
        problems.append(f"input {inp.name!r} has shape {in_dims}; the contract sends one (z, y, x) volume, "
                        "no batch or channel axis")
    if len(out_dims) != 4:
        problems.append(f"output {out.name!r} has shape {out_dims}; the contract needs (classes, z, y, x)")
    elif out_dims[0] not in (-1, manifest.classes):
        problems.append(f"output {out.name!r} has {out_dims[0]} classes; the labels need {manifest.classes} "
                        "(background + the largest class)")
    if len(in_dims) == 3:
        fixed = [d for d in in_dims if d != -1]
        if fixed and manifest.block is None:
            problems.append(f"input {inp.name!r} has fixed dims {in_dims} (z, y, x): set block: "
                            f"[{in_dims[2]}, {in_dims[1]}, {in_dims[0]}] (x, y, z)")
        if manifest.block is not None:
            want = [manifest.block[2], manifest.block[1], manifest.block[0]]
            if any(d not in (-1, w) for d, w in zip(in_dims, want, strict=True)):
                problems.append(f"input dims {in_dims} (z, y, x) differ from block {list(manifest.block)} (x, y, z)")
            if len(out_dims) == 4:
                out_want = [w - 2 * m for w, m in zip(want, manifest.margin[::-1], strict=True)]
                if any(d not in (-1, w) for d, w in zip(out_dims[1:], out_want, strict=True)):
                    problems.append(f"output dims {out_dims[1:]} (z, y, x) differ from block - 2 x margin = "
                                    f"{out_want}")
    if problems:
        raise SiteModelError(problems)
    return in_dims, out_dims


def install(manifest: Manifest, repository: Path, backend: Backend = "python", kind: Kind = "cpu",
            intra_op_threads: int = 0) -> Path:
    """Check the graph and write it into ``repository`` with its ``config.pbtxt``; returns the model folder.

    Raises:
        SiteModelError: the graph breaks the contract, or a shipped model has that name.
    """
    folder = repository / manifest.name
    if folder.exists() and not (folder / MARKER).exists():
        raise SiteModelError([f"{folder} exists and is not a site model (a shipped model has that name)"])
    model = onnx.load(str(manifest.onnx))
    in_dims, out_dims = check_onnx(model, manifest)
    config = tensor_config(manifest.name, tuple(in_dims), manifest.classes, tuple(out_dims[1:]), backend, kind,
                           intra_op_threads, manifest.input_name, manifest.output_name)
    write_model(repository, manifest.name, model, config, backend)
    (folder / MARKER).write_text(yaml.safe_dump(manifest_dict(manifest), sort_keys=False))
    return folder


def manifest_dict(manifest: Manifest) -> dict[str, Any]:
    """The manifest as YAML-ready data (the ONNX file named as installed)."""
    data: dict[str, Any] = {
        "name": manifest.name, "onnx": "1/model.onnx",
        "labels": [{"class": label.class_index, "name": label.name, "code": label.code, "meaning": label.meaning}
                   for label in manifest.labels],
        "spacing_mm": list(manifest.spacing_mm), "clip_hu": list(manifest.clip_hu),
        "margin": list(manifest.margin), "activation": manifest.activation,
        "input": manifest.input_name, "output": manifest.output_name,
    }
    for key in ("scale", "orientation", "block", "pad_value", "workflow", "description"):
        value = getattr(manifest, key)
        if value:
            data[key] = list(value) if isinstance(value, tuple) else value
    return data


def installed(repository: Path) -> dict[str, Manifest]:
    """The site models in ``repository``, by name."""
    out: dict[str, Manifest] = {}
    if not repository.is_dir():
        return out
    for marker in sorted(repository.glob(f"*/{MARKER}")):
        out[marker.parent.name] = load_manifest(marker)
    return out


def remove(repository: Path, name: str) -> Path:
    """Delete site model ``name`` from ``repository``; returns the folder removed.

    Raises:
        SiteModelError: no such site model (shipped models are never removed here).
    """
    folder = repository / name
    if not (folder / MARKER).is_file():
        raise SiteModelError([f"{name!r} is not a site model in {repository}"])
    shutil.rmtree(folder)
    return folder


def workflow_document(manifest: Manifest, triton_url: str = "127.0.0.1:8000",
                      destinations: tuple[str, ...] = ()) -> dict[str, Any]:
    """A workflow file's content that runs ``manifest``'s model: reader, inference per contract, SEG writer."""
    inference: dict[str, Any] = {"stage": "inference", "triton": {"url": triton_url, "protocol": "http"},
                                 "spacing_mm": list(manifest.spacing_mm), "clip_hu": list(manifest.clip_hu)}
    optional = {"scale": manifest.scale, "orientation": manifest.orientation, "block": manifest.block,
                "margin": manifest.margin if any(manifest.margin) else None, "pad_value": manifest.pad_value}
    inference.update({k: list(v) if isinstance(v, tuple) else v for k, v in optional.items() if v is not None})
    model: dict[str, Any] = {"name": manifest.name, "input": {"name": manifest.input_name, "datatype": "FP32"},
                             "output": {"name": manifest.output_name, "datatype": "FP32"},
                             "classes": manifest.classes}
    if manifest.activation != "none":
        model["activation"] = manifest.activation
    name = manifest.workflow or manifest.name
    return {
        "name": name,
        "description": manifest.description or f"Site model {manifest.name}",
        "model": model,
        "labels": [{"class": label.class_index, "name": label.name,
                    "category": {"scheme": "SCT", "code": "123037004", "meaning": "Anatomical Structure"},
                    "type": {"scheme": "SCT", "code": label.code, "meaning": label.meaning}}
                   for label in manifest.labels],
        "stages": [
            {"stage": "reader", "series": {"modality": "CT"}},
            inference,
            {"stage": "writer", "series_description": f"{name} (AI)"},
        ],
        "destinations": [{"name": d, "kind": "dicom"} for d in destinations],
    }
