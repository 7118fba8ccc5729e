"""``appliance models add|list|remove``: bring a site's own ONNX model, checked against the model contract.

``add`` checks the graph's tensors against the contract, writes it into the model repository
with a ``config.pbtxt``, writes a workflow file that runs it, and asks Triton to load it; it
succeeds only once Triton reports the model ready (and undoes both files otherwise).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from appliance.model_repository import site_models
from appliance.triton_access import KeyFileError, read_key, request_headers


def _manifest(args: argparse.Namespace) -> site_models.Manifest:
    if args.manifest:
        path = Path(args.manifest)
        loaded = yaml.safe_load(path.read_text())
        if not isinstance(loaded, dict):
            raise site_models.SiteModelError([f"{path}: a mapping of keys expected"])
        if args.onnx:  # the ONNX file is elsewhere than the manifest says (e.g. copied by Ansible)
            loaded["onnx"] = str(Path(args.onnx).resolve())
        return site_models.parse_manifest(loaded, path.parent)
    data: dict[str, Any] = {"name": args.name, "onnx": args.onnx, "labels": args.labels,
                            "spacing_mm": args.spacing, "clip_hu": args.window}
    for key in ("scale", "orientation", "block", "margin", "activation", "workflow"):
        value = getattr(args, key)
        if value is not None:
            data[key] = value
    return site_models.parse_manifest(data, Path.cwd())


def _headers(key_file: str | None) -> dict[str, str] | None:
    """The headers that carry the key of Triton's restricted APIs (model control among them)."""
    return request_headers(read_key(key_file)) if key_file else None


def _ready(url: str, name: str, timeout: float, key_file: str | None = None) -> str | None:
    """None once Triton at ``url`` has loaded ``name`` and reports it ready, else Triton's reason."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    headers = _headers(key_file)
    client = httpclient.InferenceServerClient(url.split("://", 1)[-1], connection_timeout=10, network_timeout=60)
    try:
        try:
            client.load_model(name, headers=headers)  # explicit model control: load it now
        except InferenceServerException as exc:
            if "explicit" not in str(exc).lower() and "poll" not in str(exc).lower():
                return exc.message() or str(exc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if client.is_model_ready(name):
                    return None
            except InferenceServerException:
                pass
            time.sleep(0.5)
        index = {m.get("name"): m for m in client.get_model_repository_index(headers=headers)}
        entry = index.get(name, {})
        state, reason = entry.get("state", "not in the repository"), entry.get("reason", "")
        return f"not ready after {timeout:.0f} s: {state} {reason}".rstrip()
    finally:
        client.close()


def _unload(url: str, name: str, key_file: str | None = None) -> None:
    """Ask Triton to unload ``name``; a server that is down or not in explicit mode is left alone."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    headers = _headers(key_file)
    client = httpclient.InferenceServerClient(url.split("://", 1)[-1], connection_timeout=5, network_timeout=30)
    try:
        client.unload_model(name, headers=headers)
        # Unloading is asynchronous, and a strict-readiness server is not ready until it is done.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = {m.get("name"): m.get("state") for m in client.get_model_repository_index(headers=headers)}
            if states.get(name) != "UNLOADING":
                return
            time.sleep(0.2)
    except (InferenceServerException, OSError):
        pass
    finally:
        client.close()


def _key_problem(args: argparse.Namespace) -> str | None:
    """Why the key file cannot be used, before anything is changed (None: fine, or none given)."""
    try:
        _headers(args.key_file)
    except KeyFileError as exc:
        return str(exc)
    return None


def _add(args: argparse.Namespace) -> int:
    if (problem := _key_problem(args)) is not None:
        print(f"appliance models add: {problem}", file=sys.stderr)
        return 1
    try:
        manifest = _manifest(args)
        folder = site_models.install(manifest, Path(args.repository), args.backend, args.kind)
    except site_models.SiteModelError as exc:
        for problem in exc.problems:
            print(f"appliance models add: {problem}", file=sys.stderr)
        return 1
    workflow_file = Path(args.workflows_dir) / f"{manifest.workflow or manifest.name}.yaml"
    workflow_file.parent.mkdir(parents=True, exist_ok=True)
    document = site_models.workflow_document(manifest, args.triton, tuple(args.destination or ()))
    workflow_file.write_text("# Written by `appliance models add`.\n" + yaml.safe_dump(document, sort_keys=False))
    if not args.no_ready_check:
        failure = _ready(args.triton, manifest.name, args.timeout, args.key_file)
        if failure is not None:
            site_models.remove(Path(args.repository), manifest.name)
            workflow_file.unlink()
            print(f"appliance models add: Triton at {args.triton} did not load {manifest.name}: {failure}",
                  file=sys.stderr)
            return 1
    print(f"added {manifest.name}: {folder} and workflow {workflow_file}")
    return 0


def _list(args: argparse.Namespace) -> int:
    for name, manifest in site_models.installed(Path(args.repository)).items():
        labels = ", ".join(f"{label.class_index}={label.name}" for label in manifest.labels)
        grid = "x".join(f"{v:g}" for v in manifest.spacing_mm)
        print(f"{name:<20} labels: {labels}  spacing {grid} mm  orientation {manifest.orientation or 'as acquired'}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    if (problem := _key_problem(args)) is not None:
        print(f"appliance models remove: {problem}", file=sys.stderr)
        return 1
    if args.name in site_models.installed(Path(args.repository)):
        _unload(args.triton, args.name, args.key_file)
    try:
        folder = site_models.remove(Path(args.repository), args.name)
    except site_models.SiteModelError as exc:
        print(f"appliance models remove: {exc}", file=sys.stderr)
        return 1
    workflow_file = Path(args.workflows_dir) / f"{args.name}.yaml"
    if workflow_file.exists():
        workflow_file.unlink()
    print(f"removed {folder}" + (f" and {workflow_file}" if args.workflows_dir else ""))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``models`` sub-command with ``add``, ``list`` and ``remove``."""
    p = sub.add_parser("models", help="add, list or remove a site's own ONNX models", description=__doc__)
    p.add_argument("--repository", default="/var/lib/triton/models", help="Triton's model repository")
    p.add_argument("--workflows-dir", default="/etc/appliance/workflows",
                   help="the worker's workflows-dir, where the model's workflow goes")
    p.add_argument("--key-file", help="the key of Triton's restricted APIs, which loading and unloading need "
                                      "(the triton role writes /var/lib/triton/api-key; default: none)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="check an ONNX model against the contract and install it")
    add.add_argument("name", nargs="?", help="model (and workflow) name")
    add.add_argument("--manifest", help="a YAML manifest instead of the options below")
    add.add_argument("--onnx", help="the ONNX file (with --manifest: instead of the manifest's)")
    add.add_argument("--labels", nargs="+", metavar="CLASS=NAME", help="output classes, e.g. 1=Spleen")
    add.add_argument("--spacing", nargs=3, type=float, metavar=("X", "Y", "Z"), help="model voxel size, mm")
    add.add_argument("--window", nargs=2, type=float, metavar=("LOW", "HIGH"), default=[-1024, 3071],
                     help="HU window (default -1024 3071)")
    add.add_argument("--scale", nargs=2, type=float, metavar=("LOW", "HIGH"), help="map the window onto this range")
    add.add_argument("--orientation", help="model grid axes, e.g. RAS (default: as acquired)")
    add.add_argument("--block", nargs=3, type=int, metavar=("X", "Y", "Z"), help="fixed input size, voxels")
    add.add_argument("--margin", nargs=3, type=int, metavar=("X", "Y", "Z"), help="context voxels per side")
    add.add_argument("--activation", choices=("none", "softmax"), help="softmax: the model outputs logits")
    add.add_argument("--workflow", help="workflow name (default: the model's)")
    add.add_argument("--destination", action="append", help="destination name for the workflow (repeatable)")
    add.add_argument("--triton", default="127.0.0.1:8000", help="Triton HTTP endpoint for the ready check")
    add.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the model to be ready")
    add.add_argument("--no-ready-check", action="store_true", help="do not ask Triton (offline installs)")
    add.add_argument("--backend", choices=("python", "onnxruntime"), default="python")
    add.add_argument("--kind", choices=("cpu", "gpu"), default="cpu")
    add.set_defaults(func=_add)
    ls = actions.add_parser("list", help="list the site models in the repository")
    ls.set_defaults(func=_list)
    rm = actions.add_parser("remove", help="remove a site model and its workflow")
    rm.add_argument("name")
    rm.add_argument("--triton", default="127.0.0.1:8000", help="Triton HTTP endpoint to unload it from")
    rm.set_defaults(func=_remove)
