"""Verify the kubernetes role on Ubuntu hosts: host preparation, containerd as the CRI runtime and the
rendered configs for real; the cluster itself only where pkgs.k8s.io could be reached (skipped by name)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from harness.hostchecks import containerd_root

REPO = "https://pkgs.k8s.io/core:/stable:/v1.36/deb/Release"
TARGET = "/mnt/k8sdisk/container-data"
ADMIN = "KUBECONFIG=/etc/kubernetes/admin.conf"


def _cluster_or_skip(host) -> None:  # type: ignore[no-untyped-def]
    """Skip (naming why) when the packages could not be installed; fail when they could but are missing."""
    if host.run("command -v kubeadm").rc != 0:
        if host.run(f"curl -fsI --max-time 10 {REPO}").rc != 0:
            pytest.skip("kubeadm install, kubeadm init and the add-ons not run: pkgs.k8s.io is unreachable here")
        pytest.fail("pkgs.k8s.io is reachable but kubeadm is not installed")


# --- host preparation -------------------------------------------------------------------------

def test_swap_off_persisted(host) -> None:  # type: ignore[no-untyped-def]
    assert host.check_output("systemctl is-enabled swap.target || true") == "masked"
    fstab = host.file("/etc/fstab").content_string
    assert "# disabled by the kubernetes role (kubelet needs swap off): /swap.img none swap sw 0 0" in fstab
    assert not re.search(r"(?m)^[^#]\S*\s+\S+\s+swap\s", fstab)


def test_kernel_modules_persisted(host) -> None:  # type: ignore[no-untyped-def]
    lines = host.file("/etc/modules-load.d/kubernetes.conf").content_string.splitlines()
    assert [line for line in lines if line and not line.startswith("#")] == ["overlay", "br_netfilter"]


def test_sysctls_persisted_and_set(host) -> None:  # type: ignore[no-untyped-def]
    conf = host.file("/etc/sysctl.d/99-kubernetes.conf").content_string
    for key in ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables", "net.ipv4.ip_forward"):
        assert re.search(rf"(?m)^{re.escape(key)}\s*=\s*1$", conf), key
    assert host.sysctl("net.ipv4.ip_forward") == 1
    if not host.file("/proc/sys/net/bridge/bridge-nf-call-iptables").exists:
        pytest.skip("br_netfilter sysctls not set: the host kernel does not expose them to this container")
    assert host.sysctl("net.bridge.bridge-nf-call-iptables") == 1


# --- containerd as the CRI runtime ------------------------------------------------------------

def test_containerd_runs_with_the_dropins(host) -> None:  # type: ignore[no-untyped-def]
    assert host.service("containerd").is_running and host.service("containerd").is_enabled
    assert 'imports = ["/etc/containerd/conf.d/*.toml"]' in host.file("/etc/containerd/config.toml").content_string
    assert host.run("ctr version").rc == 0


def test_cri_enabled_with_systemd_cgroups(host) -> None:  # type: ignore[no-untyped-def]
    plugins = host.check_output("ctr plugins ls")
    assert re.search(r"(?m)\scri\s.*\sok\s*$", plugins), plugins
    dump = host.check_output("containerd config dump")
    assert not re.search(r"(?m)^disabled_plugins\s*=\s*\[[^\]]*cri", dump)
    assert re.search(r"runtimes\.runc\.options\][^\[]*SystemdCgroup = true", dump)
    assert "registry.k8s.io/pause:3.10.2" in dump


def test_nvidia_runtime_registered_once(host) -> None:  # type: ignore[no-untyped-def]
    # The nvidia_container_runtime role's drop-in; this role adds no second one.
    dump = host.check_output("containerd config dump")
    assert "runtimes.nvidia]" in dump
    assert "nvidia" not in host.file("/etc/containerd/conf.d/40-kubernetes.toml").content_string


def test_containerd_root_stays_on_the_relocated_data_root(host) -> None:  # type: ignore[no-untyped-def]
    assert containerd_root(host) == f"{TARGET}/containerd"
    assert "root" not in re.sub(r"#.*", "", host.file("/etc/containerd/conf.d/40-kubernetes.toml").content_string)


# --- the rendered configs ---------------------------------------------------------------------

def _kubeadm_docs(host) -> dict[str, dict]:  # type: ignore[no-untyped-def,type-arg]
    text = host.file("/etc/kubernetes/kubeadm-config.yaml").content_string
    return {doc["kind"]: doc for doc in yaml.safe_load_all(text) if doc}


def test_kubeadm_config_carries_the_shared_thresholds(host) -> None:  # type: ignore[no-untyped-def]
    kubelet = _kubeadm_docs(host)["KubeletConfiguration"]
    # molecule.yml sets the shared kubelet_* variables away from kubelet's defaults.
    assert kubelet["imageGCHighThresholdPercent"] == 83
    assert kubelet["imageGCLowThresholdPercent"] == 78
    assert kubelet["evictionHard"] == {"memory.available": "200Mi", "nodefs.available": "10%",
                                       "nodefs.inodesFree": "5%", "imagefs.available": "17%",
                                       "imagefs.inodesFree": "5%"}
    assert kubelet["cgroupDriver"] == "systemd"


def test_kubeadm_config_single_node_on_containerd(host) -> None:  # type: ignore[no-untyped-def]
    docs = _kubeadm_docs(host)
    assert docs["InitConfiguration"]["nodeRegistration"]["criSocket"] == "unix:///run/containerd/containerd.sock"
    assert docs["InitConfiguration"]["nodeRegistration"]["taints"] == []
    assert docs["ClusterConfiguration"]["networking"]["podSubnet"] == "10.244.0.0/16"


def test_flannel_network_matches_the_pod_subnet(host) -> None:  # type: ignore[no-untyped-def]
    docs = [d for d in yaml.safe_load_all(host.file("/etc/kubernetes/addons/kube-flannel.yml").content_string) if d]
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    network = json.loads(config["data"]["net-conf.json"])["Network"]
    assert network == _kubeadm_docs(host)["ClusterConfiguration"]["networking"]["podSubnet"]


# --- the cluster (only where the packages could be installed) ---------------------------------

def test_packages_pinned_and_held(host) -> None:  # type: ignore[no-untyped-def]
    _cluster_or_skip(host)
    holds = host.check_output("dpkg --get-selections kubelet kubeadm kubectl")
    assert holds.count("hold") == 3
    assert host.check_output("kubeadm version -o short").startswith("v1.36.")


def test_node_ready_and_core_pods_running(host) -> None:  # type: ignore[no-untyped-def]
    _cluster_or_skip(host)
    assert "True" in host.check_output(
        f"{ADMIN} kubectl get nodes -o jsonpath='{{.items[*].status.conditions[?(@.type==\"Ready\")].status}}'")
    phases = host.check_output(f"{ADMIN} kubectl get pods -A -o jsonpath='{{.items[*].status.phase}}'").split()
    assert phases and set(phases) == {"Running"}


def test_gpus_allocatable(host) -> None:  # type: ignore[no-untyped-def]
    _cluster_or_skip(host)
    if not host.run("ls /sys/bus/pci/devices/*/vendor | xargs grep -l 0x10de").stdout.strip():
        pytest.skip("no NVIDIA GPU on this host's PCI bus")
    allocatable = host.check_output(
        f"{ADMIN} kubectl get nodes -o jsonpath='{{.items[*].status.allocatable.nvidia\\.com/gpu}}'")
    assert sum(int(n) for n in allocatable.split()) > 0
