"""Logic behind the container-runtime roles: daemon.json merging, containerd facts, headroom."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

GB = 1_000_000_000
KUBELET_EVICTION = {"memory.available": "100Mi", "nodefs.available": "10%", "nodefs.inodesFree": "5%",
                    "imagefs.available": "15%", "imagefs.inodesFree": "5%"}


# --- json_merge -------------------------------------------------------------------------------

def test_merge_keeps_operator_keys(json_merge: ModuleType) -> None:
    operator = {"registry-mirrors": ["https://m"], "log-opts": {"labels": "site"}}
    merged = json_merge.deep_merge(operator, {"log-opts": {"max-size": "100m"}, "data-root": "/mnt/d"})
    assert merged == {"registry-mirrors": ["https://m"], "log-opts": {"labels": "site", "max-size": "100m"},
                      "data-root": "/mnt/d"}
    assert operator == {"registry-mirrors": ["https://m"], "log-opts": {"labels": "site"}}  # not mutated


def test_merge_two_runtimes(json_merge: ModuleType) -> None:
    doc = json_merge.deep_merge({"runtimes": {"crun": {"path": "/usr/bin/crun"}}},
                                {"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}})
    assert set(doc["runtimes"]) == {"crun", "nvidia"}


def test_remove_drops_empty_parents(json_merge: ModuleType) -> None:
    doc = {"runtimes": {"nvidia": {"path": "x"}}, "default-runtime": "nvidia", "data-root": "/d"}
    assert json_merge.remove_paths(doc, ["runtimes.nvidia", "default-runtime"]) == {"data-root": "/d"}


def test_remove_keeps_other_siblings_and_ignores_missing(json_merge: ModuleType) -> None:
    doc = {"runtimes": {"nvidia": {}, "crun": {}}}
    assert json_merge.remove_paths(doc, ["runtimes.nvidia", "no.such.key"]) == {"runtimes": {"crun": {}}}


def test_undo_puts_back_what_a_merge_changed(json_merge: ModuleType) -> None:
    # The docker role's merge over an operator's daemon.json, undone at uninstall.
    operator = {"registry-mirrors": ["https://m"], "log-opts": {"labels": "site", "max-size": "10m"}}
    role = {"log-driver": "json-file", "log-opts": {"max-size": "100m", "max-file": "3"}}
    merged = json_merge.deep_merge(operator, role)
    undo = json_merge.undo_entries(operator, merged)
    assert undo == [{"path": ["log-driver"]}, {"path": ["log-opts", "max-file"]},
                    {"path": ["log-opts", "max-size"], "was": "10m"}]
    assert json_merge.apply_undo(merged, undo) == operator


def test_undo_keeps_keys_others_set_since(json_merge: ModuleType) -> None:
    # The role added log-driver; later data_root set data-root and the operator a mirror: those stay.
    undo = json_merge.undo_entries({}, {"log-driver": "json-file"})
    later = {"log-driver": "json-file", "data-root": "/mnt/d", "registry-mirrors": ["https://m"]}
    assert json_merge.apply_undo(later, undo) == {"data-root": "/mnt/d", "registry-mirrors": ["https://m"]}


def test_undo_log_oldest_value_wins(json_merge: ModuleType) -> None:
    # Two runs changed the same key (100m, then 200m): undoing both gives the value before the first.
    first = json_merge.undo_entries({"log-opts": {"max-size": "10m"}}, {"log-opts": {"max-size": "100m"}})
    second = json_merge.undo_entries({"log-opts": {"max-size": "100m"}}, {"log-opts": {"max-size": "200m"}})
    undone = json_merge.apply_undo({"log-opts": {"max-size": "200m"}}, first + second)
    assert undone == {"log-opts": {"max-size": "10m"}}


def test_undo_of_a_removal_and_of_a_replaced_type(json_merge: ModuleType) -> None:
    before = {"runtimes": {"nvidia": {"path": "x"}}, "log-opts": "odd"}
    after = {"log-opts": {"max-size": "1m"}}
    assert json_merge.apply_undo(after, json_merge.undo_entries(before, after)) == before
    assert json_merge.undo_entries(before, before) == []


# --- containerd_facts -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "version"),
    [("containerd github.com/containerd/containerd/v2 2.2.1 ", "2.2.1"),
     ("containerd containerd.io 1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da", "1.7.27"),
     ("containerd github.com/containerd/containerd v1.6.12 a05d175", "1.6.12")],
)
def test_containerd_version(containerd_facts: ModuleType, text: str, version: str) -> None:
    assert containerd_facts.parse_version(text) == version


def test_containerd_root_is_top_level_only(containerd_facts: ModuleType) -> None:
    dump = 'disabled_plugins = []\nroot = "/mnt/big/containerd"\nstate = "/run/containerd"\n\n' \
           '[plugins."io.containerd.grpc.v1.cri"]\n  root = "/elsewhere"\n'
    assert containerd_facts.parse_root(dump) == "/mnt/big/containerd"
    assert containerd_facts.parse_root('[grpc]\nroot = "/x"\n') is None
    # containerd 2.2 writes single-quoted (literal) strings.
    assert containerd_facts.parse_root("version = 3\nroot = '/var/lib/containerd'\n") == "/var/lib/containerd"


# --- filesystem -------------------------------------------------------------------------------

def test_describe_missing_path_uses_existing_ancestor(filesystem: ModuleType, tmp_path: Path) -> None:
    facts = filesystem.describe(str(tmp_path / "a" / "b"))
    assert facts["exists"] is False and facts["existing_ancestor"] == str(tmp_path)
    assert facts["real_ancestor"] == os.path.realpath(tmp_path)
    assert facts["device"] == os.stat(tmp_path).st_dev
    assert facts["size_bytes"] >= facts["used_bytes"] and 0 <= facts["used_percent"] <= 100


def test_describe_reports_symlinks(filesystem: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    facts = filesystem.describe(str(tmp_path / "link" / "docker"))
    assert facts["symlinks"] == [str(tmp_path / "link")]
    assert facts["real_ancestor"] == str((tmp_path / "real").resolve())


# --- headroom ---------------------------------------------------------------------------------

def _fs(used_gb: float, avail_gb: float) -> dict[str, Any]:
    return {"mount": "/data", "used_bytes": int(used_gb * GB), "avail_bytes": int(avail_gb * GB),
            "size_bytes": int((used_gb + avail_gb) * GB)}


@pytest.mark.parametrize(("value", "percent"), [("15%", 15.0), ("10Gi", 100.0 * 10 * 1024**3 / (100 * GB)),
                                                 ("5G", 5.0), ("500Mi", 100.0 * 500 * 1024**2 / (100 * GB))])
def test_eviction_quantities(headroom: ModuleType, value: str, percent: float) -> None:
    assert headroom.available_threshold_percent(value, 100 * GB) == pytest.approx(percent)


def test_bad_quantity_is_named(headroom: ModuleType) -> None:
    with pytest.raises(ValueError, match="not a kubelet quantity: 'ten'"):
        headroom.available_threshold_percent("ten", GB)


def test_roomy_filesystem_passes(headroom: ModuleType) -> None:
    result = headroom.check(_fs(30, 70), ["imagefs"], 85, 80, KUBELET_EVICTION, 10 * GB)
    assert result["ok"] and result["after_percent"] == 40.0 and result["limit_percent"] == 85.0


def test_loading_images_past_gc_threshold_fails_with_numbers(headroom: ModuleType) -> None:
    result = headroom.check(_fs(70, 30), ["imagefs"], 85, 80, KUBELET_EVICTION, 20 * GB)
    assert not result["ok"]
    assert result["used_percent"] == 70.0 and result["after_percent"] == 90.0
    # 85 % of 100 GB usable is 85 GB: 90 GB after loading needs just over 5 GB freed.
    assert result["free_needed_gb"] == pytest.approx(5.0, abs=0.01)
    message = result["message"]
    for text in ("70.0 GB used of 100.0 GB usable = 70.0%", "loading 20.0 GB of images brings it to 90.0%",
                 "image GC high threshold of 85%", "down to 80%", "relocate-data-root.yml", "free 5.0 GB"):
        assert text in message


def test_reserved_blocks_are_named_so_the_sum_reads_right(headroom: ModuleType) -> None:
    # A CI machine's root: 270 GB raw, of which only used + available (109 GB) is usable.
    fs = {**_fs(98.11, 10.8), "size_bytes": int(270.55 * GB)}
    message = headroom.check(fs, ["nodefs"], 85, 80, KUBELET_EVICTION, 0)["message"]
    assert "98.11 GB used of 108.91 GB usable = 90.1% (the filesystem is 270.55 GB; 161.64 GB of it is reserved)" \
        in message


def test_eviction_threshold_binds_when_stricter_than_gc(headroom: ModuleType) -> None:
    result = headroom.check(_fs(82, 18), ["imagefs"], 90, 85, {"imagefs.available": "20%"}, 0)
    assert not result["ok"] and result["limit_percent"] == 80.0
    assert "imagefs.available<20% eviction threshold" in result["limit_reason"]


def test_nodefs_ignores_incoming_images(headroom: ModuleType) -> None:
    result = headroom.check(_fs(50, 50), ["nodefs"], 85, 80, KUBELET_EVICTION, 40 * GB)
    assert result["ok"] and result["incoming_gb"] == 0 and result["limit_percent"] == 90.0


def test_shared_filesystem_takes_the_strictest_limit(headroom: ModuleType) -> None:
    result = headroom.check(_fs(50, 50), ["imagefs", "nodefs"], 95, 90, KUBELET_EVICTION, 0)
    assert result["limit_percent"] == 85.0  # imagefs.available 15 % beats GC 95 % and nodefs 10 %
