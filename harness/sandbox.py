"""The local throwaway Ubuntu host behind ``inventory/sandbox`` (a systemd container).

Ubuntu 24.04 unless the environment variable ``HARNESS_RELEASE`` names another release of
:data:`harness.images.RELEASES` (``HARNESS_RELEASE=26.04 ./scripts/demo``).

It runs like a molecule platform (see .config/molecule/config.yml): privileged, host cgroup
namespace, tmpfs /run, systemd as PID 1; Docker's and containerd's stores are volumes because
overlay-on-overlay fails for a Docker engine inside it.
"""

from __future__ import annotations

import os
import subprocess
import time

from harness import cgroups, images

NAME = "appliance-sandbox"
VERSION = os.environ.get("HARNESS_RELEASE", "24.04")
IMAGE = f"{images.REPOSITORY}:{VERSION}"
STORES = {"docker": "/var/lib/docker", "containerd": "/var/lib/containerd"}


def _volume(store: str) -> str:
    return f"{NAME}-{store}"


def up(boot_timeout: float = 120.0) -> str:
    """Start the sandbox (or keep the running one), wait for systemd, and return its IP address."""
    if VERSION not in images.RELEASES:
        raise SystemExit(f"harness: HARNESS_RELEASE={VERSION!r} is none of {', '.join(images.RELEASES)}")
    running = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}} {{.Config.Image}}", NAME],
                             capture_output=True, text=True, check=False).stdout.strip()
    if running != f"true {IMAGE}":  # not running, or running another release: start afresh
        down()
        cgroup = "/sys/fs/cgroup" if VERSION != "26.04" else cgroups.v2_only_source()
        cmd = ["docker", "run", "-d", "--name", NAME, "--hostname", NAME, "--privileged",
               "--cgroupns=host", "-v", f"{cgroup}:/sys/fs/cgroup:rw", "--tmpfs", "/run",
               "--tmpfs", "/run/lock", "--stop-signal", "SIGRTMIN+3",
               # As on a real host, room in /dev/shm for Triton and the volumes handed to it.
               "--shm-size", "1g"]
        for store, path in STORES.items():
            cmd += ["-v", f"{_volume(store)}:{path}"]
        subprocess.run([*cmd, IMAGE, "/sbin/init"], check=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + boot_timeout
    state = ""
    while time.monotonic() < deadline:
        state = subprocess.run(["docker", "exec", NAME, "systemctl", "is-system-running", "--wait"],
                               capture_output=True, text=True, check=False).stdout.strip()
        if state in ("running", "degraded"):
            break
        time.sleep(1)
    else:
        raise SystemExit(f"harness: {NAME} did not finish booting in {boot_timeout:.0f} s (state: {state!r})")
    return subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", NAME],
                          capture_output=True, text=True, check=True).stdout.strip()


def down() -> None:
    """Remove the sandbox container and its volumes."""
    subprocess.run(["docker", "rm", "-f", "-v", NAME], capture_output=True, check=False)
    subprocess.run(["docker", "volume", "rm", *(_volume(s) for s in STORES)], capture_output=True, check=False)
