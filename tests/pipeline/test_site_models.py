"""Bring your own model: the contract checks, and a site model added with the CLI making a SEG."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pydicom
import pytest
import SimpleITK as sitk
from onnx import TensorProto, helper

from appliance.cli import main
from appliance.model_repository import site_models
from appliance.model_repository.onnx_graph import NetworkSpec, OrganClass, build_network
from appliance.phantom import PhantomFiles
from appliance.pipeline.inference import run_inference
from appliance.pipeline.reader import read_series
from appliance.pipeline.writer import write_outputs
from appliance.triton_local import LocalTriton
from appliance.workflows import load_workflow

from .conftest import dciodvfy_errors, dice, key_file


def _identity(name: str, in_dims: list[int | str], out_dims: list[int | str]) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["probabilities"])], name,
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, in_dims)],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, out_dims)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _manifest(tmp_path: Path, model: onnx.ModelProto, **keys: object) -> site_models.Manifest:
    onnx.save(model, str(tmp_path / "m.onnx"))
    data = {"name": "site", "onnx": "m.onnx", "labels": ["1=Liver"], "spacing_mm": [3, 3, 3], **keys}
    return site_models.parse_manifest(data, tmp_path)


def test_contract_mismatches_are_named(tmp_path: Path) -> None:
    batch = _manifest(tmp_path, _identity("b", [1, 1, "z", "y", "x"], [1, 2, "z", "y", "x"]))
    with pytest.raises(site_models.SiteModelError, match=r"no batch or channel axis"):
        site_models.check_onnx(onnx.load(str(batch.onnx)), batch)
    classes = _manifest(tmp_path, _identity("c", ["z", "y", "x"], [3, "z", "y", "x"]))
    with pytest.raises(site_models.SiteModelError, match=r"has 3 classes; the labels need 2"):
        site_models.check_onnx(onnx.load(str(classes.onnx)), classes)
    fixed = _manifest(tmp_path, _identity("f", [64, 96, 96], [2, 64, 96, 96]))
    with pytest.raises(site_models.SiteModelError, match=r"set block: \[96, 96, 64\]"):
        site_models.check_onnx(onnx.load(str(fixed.onnx)), fixed)
    ok = _manifest(tmp_path, _identity("f", [64, 96, 96], [2, 60, 92, 92]), block=[96, 96, 64], margin=[2, 2, 2])
    assert site_models.check_onnx(onnx.load(str(ok.onnx)), ok) == ([64, 96, 96], [2, 60, 92, 92])
    with pytest.raises(site_models.SiteModelError) as info:
        site_models.parse_manifest({"name": "9x", "labels": [], "spacing_mm": [3, 3], "orientation": "RAR",
                                    "colour": "red"}, tmp_path)
    assert len(info.value.problems) == 6, info.value.problems


def test_site_model_added_with_the_cli_makes_a_seg(triton: LocalTriton, phantom: PhantomFiles,
                                                   ground_truth: np.ndarray, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # The site's "model": the demo network retuned to liver alone, under its own tensor names' defaults.
    onnx.save(build_network(NetworkSpec((OrganClass("liver", 95.0, 15.0),), gradient_hu=60.0), "site_liver"),
              str(tmp_path / "liver.onnx"))
    assert triton.repository is not None
    workflows = tmp_path / "workflows"
    # The session's server restricts model control to requests carrying its key.
    keyed = ["--key-file", key_file(triton)]
    status = main(["models", "--repository", str(triton.repository), "--workflows-dir", str(workflows), *keyed,
                   "add", "site_liver", "--onnx", str(tmp_path / "liver.onnx"), "--labels", "1=Liver",
                   "--spacing", "3", "3", "3", "--window", "-1024", "3071", "--triton", triton.http_url])
    out = capsys.readouterr()
    assert status == 0, out.err
    assert main(["models", "--repository", str(triton.repository), "list"]) == 0
    assert "site_liver" in capsys.readouterr().out
    workflow = load_workflow(workflows / "site_liver.yaml")
    reader = read_series(phantom.series_dir, workflow.reader, tmp_path / "reader")
    volume = next(iter(reader.volume_files.values()))
    inference = dataclasses.replace(workflow.inference, triton=dataclasses.replace(
        workflow.inference.triton, key_file=Path(key_file(triton))))
    labels = run_inference(volume, workflow.model, inference, tmp_path / "inference")
    seg_path = write_outputs(reader.manifest, labels, workflow, tmp_path / "writer")[0]["seg"]
    assert dciodvfy_errors(seg_path) == []
    assert pydicom.dcmread(seg_path).SegmentSequence[0].SegmentLabel == "Liver"
    result = sitk.GetArrayFromImage(sitk.ReadImage(str(labels)))
    assert dice(result == 1, ground_truth == 1) > 0.9
    # Removing it takes the model and its workflow away; shipped models cannot be removed.
    assert main(["models", "--repository", str(triton.repository), "--workflows-dir", str(workflows), *keyed,
                 "remove", "site_liver", "--triton", triton.http_url]) == 0
    assert not (workflows / "site_liver.yaml").exists()
    assert main(["models", "--repository", str(triton.repository), "remove", "organ_seg_ct",
                 "--triton", triton.http_url]) == 1


def test_manifest_file_with_the_onnx_elsewhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As the appliance role installs a site model: manifest and ONNX copied apart, no Triton asked."""
    onnx.save(_identity("m", ["z", "y", "x"], [2, "z", "y", "x"]), str(tmp_path / "model.onnx"))
    (tmp_path / "spleen.yaml").write_text("name: spleen_site\nonnx: spleen.onnx\nlabels:\n"
                                          "  - {class: 1, name: Spleen, code: '78961009', meaning: Spleen}\n"
                                          "spacing_mm: [1.5, 1.5, 2]\norientation: RAS\nclip_hu: [-160, 240]\n"
                                          "scale: [0, 1]\nactivation: softmax\n")
    repository, workflows = tmp_path / "models", tmp_path / "workflows"
    base = ["models", "--repository", str(repository), "--workflows-dir", str(workflows)]
    assert main([*base, "add", "--manifest", str(tmp_path / "spleen.yaml"), "--onnx", str(tmp_path / "model.onnx"),
                 "--no-ready-check"]) == 0, capsys.readouterr().err
    config = (repository / "spleen_site" / "config.pbtxt").read_text()
    assert 'dims: [ 2, -1, -1, -1 ]' in config
    workflow = load_workflow(workflows / "spleen_site.yaml")
    assert (workflow.inference.orientation, workflow.inference.scale, workflow.model.activation) == (
        "RAS", (0.0, 1.0), "softmax")
    assert workflow.labels[0].type.value == "78961009"
    assert main([*base, "remove", "spleen_site", "--triton", "127.0.0.1:1"]) == 0
    assert not (repository / "spleen_site").exists() and not (workflows / "spleen_site.yaml").exists()
