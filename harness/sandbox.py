"""The local throwaway Ubuntu 24.04 host behind ``inventory/sandbox`` (a systemd container).

It runs like a molecule platform (see .config/molecule/config.yml): privileged, host cgroup
namespace, tmpfs /run, systemd as PID 1; Docker's and containerd's stores are volumes because
overlay-on-overlay fails for a Docker engine inside it.
"""

from __future__ import annotations

import subprocess
import time

from harness import cgroups, images

NAME = "appliance-sandbox"
VERSION = "24.04"
STORES = {"docker": "/var/lib/docker", "containerd": "/var/lib/containerd"}


def _volume(store: str) -> str:
    return f"{NAME}-{store}"


def up(boot_timeout: float = 120.0) -> str:
    """Start the sandbox (or keep the running one), wait for systemd, and return its IP address."""
    running = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", NAME],
                             capture_output=True, text=True, check=False).stdout.strip()
    if running != "true":
        subprocess.run(["docker", "rm", "-f", NAME], capture_output=True, check=False)
        cgroup = "/sys/fs/cgroup" if VERSION != "26.04" else cgroups.v2_only_source()
        cmd = ["docker", "run", "-d", "--name", NAME, "--hostname", NAME, "--privileged",
               "--cgroupns=host", "-v", f"{cgroup}:/sys/fs/cgroup:rw", "--tmpfs", "/run",
               "--tmpfs", "/run/lock", "--stop-signal", "SIGRTMIN+3",
               # As on a real host, room in /dev/shm for Triton and the volumes handed to it.
               "--shm-size", "1g"]
        for store, path in STORES.items():
            cmd += ["-v", f"{_volume(store)}:{path}"]
        subprocess.run([*cmd, f"{images.REPOSITORY}:{VERSION}", "/sbin/init"], check=True, stdout=subprocess.DEVNULL)
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
