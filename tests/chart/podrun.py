"""Run a rendered chart's pods as Docker containers on one network: the chart's own specs, no cluster.

What is carried over from each pod template, as a kubelet would: the image, command and args (with
``$(VAR)`` expansion), env (values and ``secretKeyRef`` from the rendered or given Secrets), init
containers run to completion first, ConfigMap and Secret volumes as read-only files, PVCs as host
folders group-owned by the pod's ``fsGroup``, ``emptyDir`` as a host folder per pod (``medium:
Memory`` at /dev/shm as the shm size), ``runAsUser``/``runAsGroup``/``fsGroup``,
``readOnlyRootFilesystem``, dropped capabilities and no privilege escalation. Every Service that
selects a pod becomes a network alias of its container, so the names in the rendered configuration
resolve. Readiness is the pod's own readiness (or
startup) probe, run from this machine against the container's address.

Not carried over: kube-proxy (Services are DNS aliases of one container, NodePort/LoadBalancer/
hostPort are not exercised: senders connect to the container's address), resource limits, liveness
probes, lifecycle hooks, scheduling, hooks' ordering (the test runs the migrations Job itself).
"""

from __future__ import annotations

import base64
import contextlib
import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .chartkit import Pod, Rendered

_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def docker(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``docker ARGS``; raises with the output on failure when ``check``."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=timeout)
    if check and done.returncode != 0:
        output = (done.stdout + done.stderr)[-3000:]
        raise RuntimeError(f"docker {' '.join(args[:4])}: exit {done.returncode}: {output}")
    return done


@dataclass
class PodRunner:
    """Starts the pods of ``rendered`` on a network of its own; :meth:`close` removes everything.

    The network exists from the start, so that values can name this machine's address on it
    (:meth:`gateway`) before the chart is rendered and set as ``rendered``.
    """

    workdir: Path
    rendered: Rendered = field(default_factory=lambda: Rendered([]))
    #: Secrets the release does not render (an existing Secret): name -> key -> value.
    external_secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    network: str = ""
    started: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.network = f"chart-{secrets.token_hex(5)}"
        docker("network", "create", self.network)

    def gateway(self) -> str:
        """This machine's address on the network: where containers reach peers running here."""
        out = docker("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}", self.network)
        return out.stdout.strip()

    def address(self, container: str) -> str:
        out = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container)
        return out.stdout.strip()

    # -- what the pod refers to ------------------------------------------------------------------
    def _secret(self, name: str, key: str) -> str:
        if name in self.external_secrets:
            return self.external_secrets[name][key]
        secret = self.rendered.get("Secret", name)
        if "stringData" in secret and key in secret["stringData"]:
            return str(secret["stringData"][key])
        return base64.b64decode(secret["data"][key]).decode()

    def _env(self, container: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), str(var["value"]))
            else:
                ref = var["valueFrom"]["secretKeyRef"]
                env[var["name"]] = self._secret(ref["name"], ref["key"])
        return env

    def _files(self, folder: Path, data: dict[str, str], items: list[dict[str, str]] | None) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        chosen = {i["key"]: i["path"] for i in items} if items else {k: k for k in data}
        for key, path in chosen.items():
            (folder / path).write_text(data[key])
            (folder / path).chmod(0o644)
        return folder

    def _volume_args(self, pod: Pod, name: str, claims: dict[str, Path]) -> dict[str, list[str]]:
        """Per volume name: the docker arguments that mount it at ``{path}`` (filled in per mount)."""
        fs_group = pod.spec.get("securityContext", {}).get("fsGroup")
        out: dict[str, list[str]] = {}
        templates = {t["metadata"]["name"]: t for t in pod.owner["spec"].get("volumeClaimTemplates", [])}
        volumes = [*pod.spec.get("volumes", []), *({"name": n, "template": t} for n, t in templates.items())]
        for volume in volumes:
            vname = volume["name"]
            if "configMap" in volume:
                data = self.rendered.get("ConfigMap", volume["configMap"]["name"])["data"]
                src = self._files(self.workdir / name / vname, data, volume["configMap"].get("items"))
                out[vname] = ["--volume", f"{src}:{{path}}:ro"]
            elif "secret" in volume:
                secret_name = volume["secret"]["secretName"]
                keys = {i["key"] for i in volume["secret"].get("items", [])}
                data = {k: self._secret(secret_name, k) for k in keys}
                src = self._files(self.workdir / name / vname, data, volume["secret"].get("items"))
                out[vname] = ["--volume", f"{src}:{{path}}:ro"]
            elif "persistentVolumeClaim" in volume or "template" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"] if "persistentVolumeClaim" in volume else (
                    f"{vname}-{pod.owner['metadata']['name']}-0")
                src = claims.setdefault(claim, self.workdir / "claims" / claim)
                if not src.exists():
                    src.mkdir(parents=True)
                    # What the kubelet does for fsGroup: the group owns it, setgid, group-writable.
                    shutil.chown(src, group=fs_group)
                    src.chmod(0o2775)
                out[vname] = ["--volume", f"{src}:{{path}}"]
            elif "emptyDir" in volume:
                if volume["emptyDir"].get("medium") == "Memory":
                    out[vname] = ["--shm-size", _bytes(volume["emptyDir"].get("sizeLimit", "64Mi"))]
                else:  # one folder per pod, shared by its containers (the init container fills /models)
                    src = self.workdir / pod.owner["metadata"]["name"] / "emptydir" / vname
                    if not src.exists():
                        src.mkdir(parents=True)
                        src.chmod(0o1777)
                    out[vname] = ["--volume", f"{src}:{{path}}"]
            else:
                raise NotImplementedError(f"volume {vname}: {sorted(volume)}")
        return out

    # -- running ----------------------------------------------------------------------------------
    def _argv(self, pod: Pod, container: dict[str, Any], name: str, claims: dict[str, Path],
              aliases: list[str], detach: bool) -> list[str]:
        spec_ctx = pod.spec.get("securityContext", {})
        ctx = {**spec_ctx, **container.get("securityContext", {})}
        argv = ["run", "--name", name, "--network", self.network, "--hostname", name[:63]]
        argv += ["-d"] if detach else []
        for alias in aliases:
            argv += ["--network-alias", alias]
        if "runAsUser" in ctx:
            argv += ["--user", f"{ctx['runAsUser']}:{ctx.get('runAsGroup', ctx['runAsUser'])}"]
        if "fsGroup" in spec_ctx:
            argv += ["--group-add", str(spec_ctx["fsGroup"])]
        if ctx.get("readOnlyRootFilesystem"):
            argv += ["--read-only"]
        for cap in ctx.get("capabilities", {}).get("drop", []):
            argv += ["--cap-drop", cap]
        if ctx.get("allowPrivilegeEscalation") is False:
            argv += ["--security-opt", "no-new-privileges"]
        env = self._env(container)
        for key, value in env.items():
            argv += ["--env", f"{key}={value}"]
        volumes = self._volume_args(pod, name, claims)
        for mount in container.get("volumeMounts", []):
            args = volumes[mount["name"]]
            if args[0] == "--shm-size":
                argv += args
            else:
                argv += [args[0], args[1].replace("{path}", mount["mountPath"])]
        expand = [_VAR.sub(lambda m: env.get(m.group(1), m.group(0)), str(a))
                  for a in [*container.get("command", []), *container.get("args", [])]]
        if container.get("command"):
            argv += ["--entrypoint", expand[0], container["image"], *expand[1:]]
        else:
            argv += [container["image"], *expand]
        return argv

    def start(self, component: str, claims: dict[str, Path], replica: int = 0) -> str:
        """Run the component's init containers to completion, then its (first) container, detached."""
        pod = self.rendered.pod(component)
        name = f"{self.network}-{component}-{replica}"
        aliases = [s["metadata"]["name"] for s in self.rendered.of_kind("Service")
                   if s["spec"].get("selector", {}).items() <= pod.labels.items()]
        for init in pod.spec.get("initContainers", []):
            init_name = f"{name}-{init['name']}"
            self.started.append(init_name)
            done = docker(*self._argv(pod, init, init_name, claims, [], detach=False), check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{component}: init container {init['name']} failed ({done.returncode}):\n"
                                   f"{(done.stdout + done.stderr)[-3000:]}")
        container = pod.spec["containers"][0]
        self.started.append(name)
        docker(*self._argv(pod, container, name, claims, aliases, detach=True))
        return name

    def run_job(self, component: str, claims: dict[str, Path]) -> str:
        """Run a Job's pod to completion; returns its output (raises when it fails)."""
        pod = self.rendered.pod(component)
        name = f"{self.network}-{component}"
        self.started.append(name)
        done = docker(*self._argv(pod, pod.spec["containers"][0], name, claims, [], detach=False), check=False)
        if done.returncode != 0:
            raise RuntimeError(f"job {component} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
        return done.stdout + done.stderr

    def wait_ready(self, component: str, container: str, timeout: float = 300) -> None:
        """Poll the pod's startup, then readiness probe from here until it passes (raises on timeout)."""
        spec = self.rendered.pod(component).spec["containers"][0]
        probe = spec.get("readinessProbe") or spec.get("startupProbe")
        assert probe is not None, f"{component} has no readiness probe"
        ports = {p["name"]: p["containerPort"] for p in spec.get("ports", [])}
        address = self.address(container)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if docker("inspect", "-f", "{{.State.Running}}", container).stdout.strip() != "true":
                raise RuntimeError(f"{component} exited:\n{self.logs(container)}")
            if _probe(address, probe, ports):
                return
            time.sleep(0.5)
        raise TimeoutError(f"{component} not ready after {timeout:.0f} s:\n{self.logs(container)}")

    def logs(self, container: str) -> str:
        done = docker("logs", "--tail", "60", container, check=False)
        return (done.stdout + done.stderr)[-4000:]

    def close(self) -> None:
        for name in reversed(self.started):
            docker("rm", "--force", "--volumes", name, check=False)
        docker("network", "rm", self.network, check=False)


def _probe(address: str, probe: dict[str, Any], ports: dict[str, int]) -> bool:
    if "tcpSocket" in probe:
        port = probe["tcpSocket"]["port"]
        with contextlib.suppress(OSError), socket.create_connection((address, ports.get(port, port)), timeout=2):
            return True
        return False
    http = probe["httpGet"]
    port = ports.get(http["port"], http["port"])
    with contextlib.suppress(OSError), urllib.request.urlopen(f"http://{address}:{port}{http['path']}",
                                                             timeout=2) as response:
        return bool(200 <= response.status < 400)
    return False


def _bytes(quantity: str) -> str:
    """A Kubernetes quantity (``2Gi``) as docker's size (``2g``)."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", quantity)
    assert match, quantity
    return match.group(1) + {"Ki": "k", "Mi": "m", "Gi": "g", None: "b"}[match.group(2)]
