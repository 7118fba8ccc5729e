"""The kubernetes role's rendered configs: kubelet thresholds from the one variable set disk_headroom
reads, a complete evictionHard map, pod CIDRs that agree, and containerd's CRI drop-in."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles/kubernetes"
KUBELET_DEFAULT_EVICTION = {"memory.available": "100Mi", "nodefs.available": "10%", "nodefs.inodesFree": "5%",
                            "imagefs.available": "15%", "imagefs.inodesFree": "5%"}
SHARED = {
    "kubelet_image_gc_high_threshold_percent": 88,
    "kubelet_image_gc_low_threshold_percent": 70,
    "kubelet_eviction_hard": {"memory.available": "500Mi", "nodefs.available": "12%", "nodefs.inodesFree": "6%",
                              "imagefs.available": "20%", "imagefs.inodesFree": "7%"},
}


def _trust(value: Any) -> Any:
    return trust_as_template(value) if isinstance(value, str) else value


def role_vars(role: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A role's defaults and vars plus inventory-like extras, as Ansible would see them (lazily templated)."""
    variables: dict[str, Any] = {}
    for name in ("defaults", "vars"):
        path = REPO / "roles" / role / name / "main.yml"
        if path.exists():
            variables.update(yaml.safe_load(path.read_text()))
    variables.update(extra or {})
    return {key: _trust(value) for key, value in variables.items()}


def templar(role: str, extra: dict[str, Any] | None = None) -> Templar:
    facts = {
        "ansible_managed": "Ansible managed",
        "kubernetes_containerd": {"installed": True, "config_version": 3, "root": "/var/lib/containerd"},
        "kubernetes_kubeadm_version": {"rc": 1, "stdout": ""},
    }
    return Templar(loader=DataLoader(), variables=role_vars(role, {**facts, **(extra or {})}))


def value(role: str, name: str, extra: dict[str, Any] | None = None) -> Any:
    return templar(role, extra).template(trust_as_template("{{ " + name + " }}"))


def render(template: str, extra: dict[str, Any] | None = None) -> str:
    text = (ROLE / "templates" / template).read_text()
    result = templar("kubernetes", extra).template(trust_as_template(text))
    assert isinstance(result, str)
    return result


def kubeadm_docs(extra: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(render("kubeadm-config.yaml.j2", extra)) if doc}


def manifest(template: str, extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render(template, extra)) if doc]


# --- one variable set feeds kubelet and the headroom check ------------------------------------

@pytest.mark.parametrize("shared", [{}, SHARED], ids=["kubelet-defaults", "shared-variables-set"])
def test_thresholds_flow_into_kubeadm_config_and_disk_headroom(shared: dict[str, Any]) -> None:
    kubelet = kubeadm_docs(shared)["KubeletConfiguration"]
    high = shared.get("kubelet_image_gc_high_threshold_percent", 85)
    low = shared.get("kubelet_image_gc_low_threshold_percent", 80)
    eviction = shared.get("kubelet_eviction_hard", KUBELET_DEFAULT_EVICTION)
    assert kubelet["imageGCHighThresholdPercent"] == high
    assert kubelet["imageGCLowThresholdPercent"] == low
    assert kubelet["evictionHard"] == eviction
    # disk_headroom's defaults resolve to the very same values.
    assert int(value("disk_headroom", "disk_headroom_gc_high_percent", shared)) == high
    assert int(value("disk_headroom", "disk_headroom_gc_low_percent", shared)) == low
    assert value("disk_headroom", "disk_headroom_eviction_hard", shared) == eviction


def test_both_roles_fall_back_to_the_same_complete_map() -> None:
    assert value("kubernetes", "kubernetes_eviction_hard") == value("disk_headroom", "disk_headroom_eviction_hard")


ROLE_THRESHOLDS = ("disk_headroom_gc_high_percent", "disk_headroom_gc_low_percent", "disk_headroom_eviction_hard",
                   "kubernetes_image_gc_high_threshold_percent", "kubernetes_image_gc_low_threshold_percent",
                   "kubernetes_eviction_hard")


@pytest.mark.parametrize("group_vars", sorted(REPO.glob("inventory/*/group_vars/*.yml")),
                         ids=lambda p: p.parent.parent.name)
def test_inventories_set_thresholds_only_through_the_shared_variables(group_vars: Path) -> None:
    # A role's own threshold variable set in an inventory would make the headroom check and kubelet disagree.
    assert not set(yaml.safe_load(group_vars.read_text()) or {}) & set(ROLE_THRESHOLDS)


def test_eviction_hard_map_is_complete() -> None:
    kubelet = kubeadm_docs()["KubeletConfiguration"]
    assert kubelet["evictionHard"] == KUBELET_DEFAULT_EVICTION
    # The role's own list of keys (its preflight rejects a map missing one) is kubelet's full set.
    assert sorted(value("kubernetes", "kubernetes_eviction_hard_keys")) == sorted(KUBELET_DEFAULT_EVICTION)
    # Values stay strings: kubelet parses "10%" and "100Mi", never numbers.
    assert all(isinstance(v, str) for v in kubelet["evictionHard"].values())


def test_kubelet_uses_systemd_cgroups_on_containerd() -> None:
    docs = kubeadm_docs()
    assert docs["KubeletConfiguration"]["cgroupDriver"] == "systemd"
    assert docs["InitConfiguration"]["nodeRegistration"]["criSocket"] == "unix:///run/containerd/containerd.sock"
    assert docs["KubeletConfiguration"]["containerRuntimeEndpoint"] == "unix:///run/containerd/containerd.sock"


def test_single_node_has_no_control_plane_taint() -> None:
    assert kubeadm_docs()["InitConfiguration"]["nodeRegistration"]["taints"] == []
    assert "taints" not in kubeadm_docs({"kubernetes_single_node": False})["InitConfiguration"]["nodeRegistration"]


@pytest.mark.parametrize(("host", "single"), [("cp", False), ("elsewhere", True)])
def test_a_control_plane_with_workers_keeps_its_taint(host: str, single: bool) -> None:
    groups = {"kubernetes_control_plane": ["cp"], "kubernetes_workers": ["w1", "w2"]}
    registration = kubeadm_docs({"groups": groups, "inventory_hostname": host})["InitConfiguration"]["nodeRegistration"]
    assert ("taints" in registration) is single


def test_join_configuration_from_the_control_planes_join_command() -> None:
    join = "kubeadm join 10.1.2.3:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:0a1b \n"
    extra = {"__kubernetes_join": join, "ansible_facts": {"nodename": "GPU-1"}}
    doc = yaml.safe_load(render("kubeadm-join.yaml.j2", extra))
    assert doc["kind"] == "JoinConfiguration"
    assert doc["discovery"]["bootstrapToken"] == {
        "apiServerEndpoint": "10.1.2.3:6443", "token": "abcdef.0123456789abcdef", "caCertHashes": ["sha256:0a1b"]}
    assert doc["nodeRegistration"] == {"name": "gpu-1", "criSocket": "unix:///run/containerd/containerd.sock"}
    # An endpoint set in the inventory wins over the one kubeadm advertises.
    pinned = yaml.safe_load(render("kubeadm-join.yaml.j2",
                                   {**extra, "kubernetes_control_plane_endpoint": "cp.example:6443"}))
    assert pinned["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "cp.example:6443"


def test_kubernetes_version_follows_installed_kubeadm() -> None:
    assert kubeadm_docs()["ClusterConfiguration"]["kubernetesVersion"] == "stable-1.36"
    installed = {"kubernetes_kubeadm_version": {"rc": 0, "stdout": "v1.36.4\n"}}
    assert kubeadm_docs(installed)["ClusterConfiguration"]["kubernetesVersion"] == "v1.36.4"


# --- pod CIDR: kubeadm and flannel agree ------------------------------------------------------

def _flannel_network(extra: dict[str, Any] | None = None) -> str:
    config = next(doc for doc in manifest("kube-flannel.yml.j2", extra) if doc["kind"] == "ConfigMap")
    return str(json.loads(config["data"]["net-conf.json"])["Network"])


@pytest.mark.parametrize("cidr", [None, "10.50.0.0/16"])
def test_pod_cidr_agrees_between_kubeadm_and_flannel(cidr: str | None) -> None:
    extra = {"kubernetes_pod_cidr": cidr} if cidr else {}
    pod_subnet = kubeadm_docs(extra)["ClusterConfiguration"]["networking"]["podSubnet"]
    assert pod_subnet == _flannel_network(extra) == (cidr or "10.244.0.0/16")


# --- pinned add-on manifests shipped in the role ----------------------------------------------

def _images(docs: list[dict[str, Any]]) -> list[str]:
    images = []
    for doc in docs:
        if doc["kind"] == "DaemonSet":
            spec = doc["spec"]["template"]["spec"]
            images += [c["image"] for c in spec.get("initContainers", []) + spec["containers"]]
    return images


def test_flannel_images_pinned() -> None:
    assert _images(manifest("kube-flannel.yml.j2")) == [
        "ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3",
        "ghcr.io/flannel-io/flannel:v0.28.9",
        "ghcr.io/flannel-io/flannel:v0.28.9",
    ]


def test_device_plugin_pinned_and_runs_under_the_nvidia_runtime() -> None:
    docs = manifest("nvidia-device-plugin.yml.j2")
    assert _images(docs) == ["nvcr.io/nvidia/k8s-device-plugin:v0.20.0"]
    runtime_class = next(doc for doc in docs if doc["kind"] == "RuntimeClass")
    assert runtime_class["handler"] == "nvidia"  # the runtime nvidia_container_runtime registers
    daemonset = next(doc for doc in docs if doc["kind"] == "DaemonSet")
    assert daemonset["spec"]["template"]["spec"]["runtimeClassName"] == runtime_class["metadata"]["name"]
    without = manifest("nvidia-device-plugin.yml.j2", {"kubernetes_nvidia_runtime_class": ""})
    assert [doc["kind"] for doc in without] == ["DaemonSet"]
    assert "runtimeClassName" not in without[0]["spec"]["template"]["spec"]


# --- containerd drop-in -----------------------------------------------------------------------

@pytest.mark.parametrize(("config_version", "cri", "runtime"), [
    (3, "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.runtime"),
    (2, "io.containerd.grpc.v1.cri", "io.containerd.grpc.v1.cri"),
])
def test_containerd_dropin_systemd_cgroup(config_version: int, cri: str, runtime: str) -> None:
    facts = {"kubernetes_containerd": {"installed": True, "config_version": config_version, "root": "/x"}}
    doc = tomllib.loads(render("containerd-kubernetes.toml.j2", facts))
    assert doc["version"] == config_version
    runc = doc["plugins"][runtime]["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["SystemdCgroup"] is True
    # containerd's root belongs to data_root's drop-in; nvidia's runtime to nvidia_container_runtime's.
    assert "root" not in doc
    assert "nvidia" not in doc["plugins"][runtime]["containerd"]["runtimes"]
    pause = doc["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] if config_version == 3 \
        else doc["plugins"][cri]["sandbox_image"]
    assert pause == "registry.k8s.io/pause:3.10.2"


# --- the pinned minor: supported, and its pause image ------------------------------------------

def test_pinned_kubernetes_minor_is_not_past_its_end_of_life() -> None:
    """Fails once the pinned minor is past the end of life kubernetes.io publishes: move the pin then."""
    minor = value("kubernetes", "kubernetes_version")
    end_of_life = value("kubernetes", "kubernetes_end_of_life")
    assert minor in end_of_life, f"no published end of life recorded for Kubernetes {minor} (vars/main.yml)"
    assert date.today() < date.fromisoformat(end_of_life[minor]), (
        f"Kubernetes {minor} reached its end of life on {end_of_life[minor]}: pin a supported minor")


@pytest.mark.parametrize(("minor", "pause"), [("1.34", "3.10.1"), ("1.35", "3.10.1"), ("1.36", "3.10.2")])
def test_pause_image_follows_the_minor(minor: str, pause: str) -> None:
    assert value("kubernetes", "kubernetes_pause_image", {"kubernetes_version": minor}) == (
        f"registry.k8s.io/pause:{pause}")
    # An unknown minor leaves the tag empty, which the role's preflight refuses with the fix.
    assert value("kubernetes", "kubernetes_pause_image", {"kubernetes_version": "1.99"}).endswith(":")


def test_manifest_headers_name_the_pinned_releases() -> None:
    """The shipped manifests are the pinned releases' (the image tags alone could drift from them)."""
    flannel = (ROLE / "templates/kube-flannel.yml.j2").read_text()
    plugin = (ROLE / "templates/nvidia-device-plugin.yml.j2").read_text()
    assert f"(release {value('kubernetes', 'kubernetes_flannel_version')}," in flannel
    assert f"({value('kubernetes', 'kubernetes_nvidia_device_plugin_version')})" in plugin
