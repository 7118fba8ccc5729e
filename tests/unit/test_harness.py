"""The test-host harness's pure parts: image keys, cgroup choice, the runc wrapper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness import cgroups, engine, hostchecks, images, loopdevs


def test_image_keys_are_stable_and_distinct() -> None:
    keys = {v: images.input_key(v) for v in images.RELEASES}
    assert keys == {v: images.input_key(v) for v in images.RELEASES}
    assert len(set(keys.values())) == len(keys)


def test_v2_source_is_a_cgroup_tree() -> None:
    assert cgroups.v2_only_source() in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")


def test_cap_detection_reads_bounding_set() -> None:
    assert isinstance(engine.lacks_cap_sys_resource(), bool)


def _wrapper(tmp_path: Path) -> Path:
    """The wrapper with a fake runc that records its arguments."""
    fake = tmp_path / "fake-runc"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\n")
    fake.chmod(0o755)
    source = (Path(engine.__file__).with_name("runc_wrapper.py")).read_text().replace("@RUNC@", str(fake))
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(source)
    return wrapper


def test_wrapper_drops_cap_sys_resource_on_create(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    caps = ["CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_SYS_ADMIN"]
    config = {"process": {"capabilities": {"bounding": caps, "effective": caps}}}
    (bundle / "config.json").write_text(json.dumps(config))
    args = ["--root", "/run/runc", "create", "--bundle", str(bundle), "ctr1"]
    subprocess.run([sys.executable, str(_wrapper(tmp_path)), *args], check=True)
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["capabilities"]["bounding"] == ["CAP_CHOWN", "CAP_SYS_ADMIN"]
    assert config["process"]["capabilities"]["effective"] == ["CAP_CHOWN", "CAP_SYS_ADMIN"]
    assert (tmp_path / "args").read_text().split() == args


def test_wrapper_drops_cap_sys_resource_on_exec(tmp_path: Path) -> None:
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"capabilities": {"permitted": ["CAP_SYS_RESOURCE", "CAP_KILL"]}}))
    subprocess.run([sys.executable, str(_wrapper(tmp_path)), "exec", "--process", str(process), "ctr1"], check=True)
    assert json.loads(process.read_text())["capabilities"]["permitted"] == ["CAP_KILL"]


def test_wrapper_passes_other_commands_through(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(_wrapper(tmp_path)), "state", "ctr1"], check=True)
    assert (tmp_path / "args").read_text().split() == ["state", "ctr1"]


def test_loop_nodes_created(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        return
    (tmp_path / "loop0").touch()  # an existing node is left alone
    assert loopdevs.ensure_nodes(3, tmp_path) == 2
    assert (tmp_path / "loop2").is_block_device() and os.major((tmp_path / "loop2").stat().st_rdev) == 7


def test_packages_and_lists_of_another_release_are_found() -> None:
    apt_list = "\n".join([
        "Listing...",
        "python3.12/noble-updates,noble-security,now 3.12.3-1ubuntu0.17 amd64 [installed]",
        "libc6/resolute-updates,resolute-security,now 2.43-2ubuntu2.7 amd64 [installed]",
        "appliance-test-orphan/now 1.0 all [installed,local]",
    ])
    assert hostchecks.other_release_packages(apt_list, "resolute") == ["python3.12"]
    assert hostchecks.other_release_packages(apt_list, "noble") == ["libc6"]
    lists = ["archive.ubuntu.com_ubuntu_dists_noble-updates_InRelease", "lock", "partial",
             "archive.ubuntu.com_ubuntu_dists_resolute_main_binary-amd64_Packages"]
    assert hostchecks.apt_lists_of_other_releases(lists, "resolute") == [lists[0]]
