"""Verify the kubernetes role's multi-node path on two hosts: the control plane initialised once and
created one join token for its worker; the worker joined with a mode-0600 configuration holding that
token, which is gone afterwards; both nodes were labelled through the control plane; the token is in no
log, also at -vvv. kubeadm, kubectl and kubelet are the kubernetes scenario's stand-ins (pkgs.k8s.io is
unreachable here): what a real API server does with the calls is not tested."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

TOKEN = "x7k2m9.q4w8e1r5t6y3u0p2"
"""The stand-in kubeadm's bootstrap token (molecule/kubernetes/files/standins.json)."""
CA_HASH = "sha256:" + "7".zfill(64)
LABEL = "appliance.example.org/site=molecule"


def _calls(host, tool: str) -> list[str]:  # type: ignore[no-untyped-def]
    log = host.file(f"/var/tmp/{tool}-calls")
    return log.content_string.splitlines() if log.exists else []


def _is_control_plane(host) -> bool:  # type: ignore[no-untyped-def]
    return host.backend.get_hostname().endswith("-cp")


def test_control_plane_initialised_once_and_created_one_token(host) -> None:  # type: ignore[no-untyped-def]
    calls = _calls(host, "kubeadm")
    if not _is_control_plane(host):
        assert not any(c.startswith(("init", "token")) for c in calls), calls
        return
    assert [c for c in calls if c.startswith("init")] == ["init --config /etc/kubernetes/kubeadm-config.yaml"]
    # Once, for the worker that had not joined: the idempotence run created none.
    assert [c for c in calls if c.startswith("token")] == [
        "token create --ttl 15m --print-join-command --kubeconfig /etc/kubernetes/admin.conf"]
    assert not any(c.startswith("join") for c in calls), calls
    # The token is created after init, and the cluster config is the control plane's alone.
    assert calls.index("init --config /etc/kubernetes/kubeadm-config.yaml") < calls.index(
        "token create --ttl 15m --print-join-command --kubeconfig /etc/kubernetes/admin.conf")


def test_control_plane_keeps_its_taint_with_workers(host) -> None:  # type: ignore[no-untyped-def]
    if not _is_control_plane(host):
        return
    config = list(yaml.safe_load_all(host.file("/etc/kubernetes/kubeadm-config.yaml").content_string))
    init = next(d for d in config if d["kind"] == "InitConfiguration")
    assert "taints" not in init.get("nodeRegistration", {}), init
    assert not any(c.startswith("taint") for c in _calls(host, "kubectl"))


def test_worker_joined_once_with_the_token_in_a_private_file(host) -> None:  # type: ignore[no-untyped-def]
    if _is_control_plane(host):
        assert not host.file("/var/tmp/kubeadm-join-seen.yaml").exists
        return
    assert _calls(host, "kubeadm").count("join --config /etc/kubernetes/kubeadm-join.yaml") == 1
    assert host.file("/var/tmp/kubeadm-join-mode").content_string.strip() == "600"
    join = yaml.safe_load(host.file("/var/tmp/kubeadm-join-seen.yaml").content_string)
    assert join["kind"] == "JoinConfiguration"
    assert join["discovery"]["bootstrapToken"] == {
        "apiServerEndpoint": "10.96.7.1:6443", "token": TOKEN, "caCertHashes": [CA_HASH]}
    assert join["nodeRegistration"]["name"] == "k8s-worker"
    # Deleted after the join; the worker renders no init config and applies no add-ons.
    assert not host.file("/etc/kubernetes/kubeadm-join.yaml").exists
    assert not host.file("/etc/kubernetes/kubeadm-config.yaml").exists
    assert not host.file("/etc/kubernetes/admin.conf").exists
    assert _calls(host, "kubectl") == []


def test_both_nodes_labelled_through_the_control_plane(host) -> None:  # type: ignore[no-untyped-def]
    if not _is_control_plane(host):
        return
    labels = [c for c in _calls(host, "kubectl") if c.startswith("label")]
    # Once each; the idempotence run's identical calls changed nothing.
    assert sorted(set(labels)) == [f"label node k8s-cp --overwrite {LABEL}",
                                   f"label node k8s-worker --overwrite {LABEL}"]
    calls = _calls(host, "kubectl")
    assert calls.index(f"label node k8s-worker --overwrite {LABEL}") > calls.index(
        "apply -f /etc/kubernetes/addons/kube-flannel.yml")


def test_token_in_no_log() -> None:
    log = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "ansible.log"
    text = log.read_text()
    assert "token create" in text or "bootstrap token" in text  # the log is the converge's
    assert TOKEN not in text and TOKEN.split(".")[1] not in text
