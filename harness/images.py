"""Build Ubuntu systemd test-host images with debootstrap + ``docker import``; never pull.

An image is tagged ``appliance-test/ubuntu:<version>`` and ``...:<version>-<key>``, where
*key* hashes every input of the build (release, mirror, packages, keyring, this file). A build
whose key-tag already exists in the engine, or whose saved tarball is in the cache, is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.paths import CACHE

REPOSITORY = "appliance-test/ubuntu"
RELEASES: dict[str, str] = {"22.04": "jammy", "24.04": "noble", "26.04": "resolute"}
MIRROR = os.environ.get("UBUNTU_MIRROR", "http://archive.ubuntu.com/ubuntu")

# Debian has no Ubuntu keyring package: fetch Ubuntu's own, pinned by checksum.
KEYRING_DEB = "pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb"
KEYRING_SHA256 = "36de43b15853ccae0028e9a767613770c704833f82586f28eb262f0311adb8a8"

PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "python3", "python3-apt", "sudo", "iproute2", "procps",
    "ca-certificates", "gnupg", "curl", "kmod", "udev", "util-linux", "e2fsprogs", "iptables",
    "pciutils", "apt-transport-https", "lsb-release", "mokutil",
)

# Units that cannot work in a container (no devices, no modules, no consoles): masked.
MASKED_UNITS = (
    "systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service", "systemd-modules-load.service", "systemd-firstboot.service",
    "getty@tty1.service", "console-getty.service", "getty.target",
    "sys-kernel-config.mount", "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
    "sys-fs-fuse-connections.mount", "dev-hugepages.mount", "systemd-remount-fs.service",
    "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount",
)


def input_key(version: str) -> str:
    """Short hash of everything that determines the image for *version*."""
    blob = json.dumps(
        [version, RELEASES[version], MIRROR, PACKAGES, MASKED_UNITS, KEYRING_SHA256,
         Path(__file__).read_text()],
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _docker(*args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["docker", *args], check=False, capture_output=True, **kw)  # type: ignore[call-overload, no-any-return]


def _exists(tag: str) -> bool:
    return _docker("image", "inspect", tag).returncode == 0


def keyring() -> Path:
    """Path to Ubuntu's archive keyring, downloaded once and checked against its pinned SHA-256."""
    target = CACHE / "ubuntu-archive-keyring.gpg"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(f"{MIRROR}/{KEYRING_DEB}", timeout=60) as resp:
        data = resp.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != KEYRING_SHA256:
        raise SystemExit(f"harness: ubuntu-keyring checksum mismatch ({digest}); refusing to trust it")
    with tempfile.TemporaryDirectory() as tmp:
        deb = Path(tmp, "keyring.deb")
        deb.write_bytes(data)
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        shutil.copy(Path(tmp, "usr/share/keyrings/ubuntu-archive-keyring.gpg"), target)
    return target


def _debootstrap(codename: str, root: Path) -> None:
    # Debian 12's debootstrap has no script for noble/resolute; jammy's is 'gutsy', which fits them.
    scripts = Path("/usr/share/debootstrap/scripts")
    script = scripts / codename if (scripts / codename).exists() else scripts / "gutsy"
    subprocess.run(
        ["debootstrap", "--variant=minbase", "--components=main,universe",
         f"--include={','.join(PACKAGES)}", f"--keyring={keyring()}",
         codename, str(root), MIRROR, str(script)],
        check=True, stdout=subprocess.DEVNULL,
    )


def _customise(codename: str, root: Path) -> None:
    """Make the rootfs boot as a container: masked units, empty machine-id, stale apt lists."""
    systemd = root / "etc/systemd/system"
    for unit in MASKED_UNITS:
        link = systemd / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    (root / "etc/machine-id").write_text("")
    (root / "etc/apt/sources.list").write_text(
        "".join(f"deb {MIRROR} {codename}{suite} main universe\n" for suite in ("", "-updates", "-security"))
    )
    lists = root / "var/lib/apt/lists"
    for entry in lists.iterdir():
        if entry.is_file():
            entry.unlink()
    # An empty list folder with a recent mtime makes Ansible's apt module skip its cache update.
    os.utime(lists, (0, 0))
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()


def _import(version: str, key: str, root: Path) -> None:
    tar = subprocess.Popen(
        ["tar", "-C", str(root), "--numeric-owner", "--exclude=./dev/*", "--exclude=./proc/*",
         "--exclude=./sys/*", "-c", "."],
        stdout=subprocess.PIPE,
    )
    # Docker 20.10 rejects --change STOPSIGNAL: molecule sets the stop signal instead.
    subprocess.run(
        ["docker", "import", "--change", "ENV container=docker", "--change", 'CMD ["/sbin/init"]',
         "-", f"{REPOSITORY}:{version}-{key}"],
        stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL,
    )
    if tar.wait() != 0:
        raise SystemExit(f"harness: tar of the {version} rootfs failed")


def _saved(version: str, key: str) -> Path:
    return CACHE / "images" / f"ubuntu-{version}-{key}.tar.zst"


def build(version: str) -> str:
    """Make ``appliance-test/ubuntu:<version>`` current and return a line saying how."""
    key = input_key(version)
    tag, keyed = f"{REPOSITORY}:{version}", f"{REPOSITORY}:{version}-{key}"
    started = time.monotonic()
    how = "reused"
    if not _exists(keyed):
        saved = _saved(version, key)
        if saved.exists():
            subprocess.run(f"zstd -dc '{saved}' | docker load", shell=True, check=True, stdout=subprocess.DEVNULL)
            how = "loaded from cache"
        else:
            with tempfile.TemporaryDirectory(dir=CACHE, prefix=f"rootfs-{version}-") as tmp:
                root = Path(tmp)
                _debootstrap(RELEASES[version], root)
                _customise(RELEASES[version], root)
                _import(version, key, root)
            saved.parent.mkdir(parents=True, exist_ok=True)
            for old in saved.parent.glob(f"ubuntu-{version}-*.tar.zst"):
                old.unlink()
            subprocess.run(f"docker save '{keyed}' | zstd -q -T0 -o '{saved}.part' && mv '{saved}.part' '{saved}'",
                           shell=True, check=True)
            how = "built"
    subprocess.run(["docker", "tag", keyed, tag], check=True)
    return f"{tag}: {how} ({key}) in {time.monotonic() - started:.0f} s"


def build_all(versions: list[str]) -> list[str]:
    """Build or reuse the images for *versions* concurrently (debootstrap is mostly I/O-bound)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    keyring()
    with ThreadPoolExecutor(max_workers=len(versions) or 1) as pool:
        return list(pool.map(build, versions))
