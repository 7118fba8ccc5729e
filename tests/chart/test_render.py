"""The chart, rendered offline for each kind of site, linted and validated for real.

Each values file in ``charts/appliance/ci/`` (and the defaults) is rendered with the Helm engine of
``helm-python-sdk``, linted strictly, and every object validated against the Kubernetes API schemas
of the minor the kubernetes role installs and the next (``kubernetes-validate``, strict: unknown
fields are errors). The tests then check what the schemas cannot: selectors match pod labels, only
Triton asks for GPUs, every container is locked down, the ConfigMap is a configuration file the
appliance itself accepts, and every ``fail`` guard stops the render with its message.

Not tested here (no API server is reachable): admission (PodSecurity ``restricted``, quota), the
scheduler placing pods, hooks running in order, ``lookup`` finding the existing database Secret.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from appliance.triton_access import server_flags

from .chartkit import (
    CHART,
    NAMESPACE,
    RELEASE,
    VALUES_FILES,
    Pod,
    Rendered,
    check_config,
    kubernetes_versions,
    render,
    values_of,
)

helm_python = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed (pip install -e '.[dev]')")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")

CASES = [None, *VALUES_FILES]
IDS = ["defaults", *(p.name.removesuffix("-values.yaml") for p in VALUES_FILES)]


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def site(request: pytest.FixtureRequest) -> tuple[dict[str, Any], Rendered]:
    values = values_of(request.param)
    return values, render(values)


@pytest.mark.parametrize("path", CASES, ids=IDS)
def test_lint_is_clean_in_strict_mode(path: Path | None) -> None:
    report = helm_python.lint(CHART, values_of(path), strict=True, namespace=NAMESPACE,
                              kube_version=f"v{kubernetes_versions()[0]}")
    assert report["errors"] == []
    # Severity 1 is information ("icon is recommended"); warnings (2) and errors (3) fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("version", kubernetes_versions())
def test_every_object_is_valid_for_the_cluster(site: tuple[dict[str, Any], Rendered], version: str) -> None:
    _, rendered = site
    problems = []
    for doc in rendered.docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert problems == []


def test_selectors_match_the_pod_labels(site: tuple[dict[str, Any], Rendered]) -> None:
    _, rendered = site
    for pod in rendered.pods():
        selector = pod.owner["spec"].get("selector", {}).get("matchLabels")
        if pod.owner["kind"] != "Job":
            assert selector and selector.items() <= pod.labels.items(), pod.owner["metadata"]["name"]
    # Each Service selects exactly one component's pods and targets ports those pods name.
    for service in rendered.of_kind("Service"):
        selected = [p for p in rendered.pods() if service["spec"]["selector"].items() <= p.labels.items()]
        assert len(selected) == 1, service["metadata"]["name"]
        names = {port["name"] for c in selected[0].spec["containers"] for port in c.get("ports", [])}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= names
    for kind in ("PodDisruptionBudget",):
        for doc in rendered.of_kind(kind):
            selected = [p for p in rendered.pods()
                        if doc["spec"]["selector"]["matchLabels"].items() <= p.labels.items()]
            assert [p.component for p in selected] == ["worker"]
    for hpa in rendered.of_kind("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert "replicas" not in rendered.get(target["kind"], target["name"])["spec"]  # the HPA owns the count


def _gpu_requests(pod: Pod) -> list[str]:
    return [f"{c['name']}: {key}" for c in pod.containers() for part in ("limits", "requests")
            for key in c.get("resources", {}).get(part, {}) if "gpu" in key]


def test_only_triton_requests_gpus(site: tuple[dict[str, Any], Rendered]) -> None:
    values, rendered = site
    for pod in rendered.pods():
        if pod.component == "triton" and values.get("triton", {}).get("mode", "gpu") == "gpu":
            assert _gpu_requests(pod) == ["triton: nvidia.com/gpu"]
            assert pod.spec["runtimeClassName"] == "nvidia"
            assert pod.spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        else:
            assert _gpu_requests(pod) == [], pod.component
            assert "runtimeClassName" not in pod.spec


def test_every_pod_and_container_is_locked_down(site: tuple[dict[str, Any], Rendered]) -> None:
    _, rendered = site
    for pod in rendered.pods():
        context = pod.spec["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] > 0 and context["fsGroup"] > 0
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod.spec["automountServiceAccountToken"] is False
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod.spec)
        assert not [v for v in pod.spec.get("volumes", []) if "hostPath" in v]
        for container in pod.containers():
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, container["name"]
            assert ctx["allowPrivilegeEscalation"] is False, container["name"]
            assert ctx["capabilities"] == {"drop": ["ALL"]}, container["name"]
            assert ctx["runAsNonRoot"] is True and ctx["seccompProfile"] == {"type": "RuntimeDefault"}
            # A read-only root needs somewhere to write: /tmp is an emptyDir everywhere.
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}, container["name"]


@pytest.mark.parametrize("service", ["adapter", "worker", "exporter"])
def test_the_config_map_passes_the_appliances_owncheck_config(site: tuple[dict[str, Any], Rendered], service: str,
                                                         tmp_path: Path) -> None:
    _, rendered = site
    status, output = check_config(rendered.config_file(), tmp_path, service)
    assert f"{tmp_path / 'adapter.yaml'}: OK" in output, output
    if "database-url" in yaml.safe_load(rendered.config_file())["storage"]:
        # Valid; only the database, the chart's Service or the site's server, cannot be reached from here.
        assert status == 1 and f"appliance {service}: job store postgresql://" in output, output
    else:
        assert status == 0, output
    # The migrations hook carries the same file in its environment (it runs before the ConfigMap exists).
    for job in rendered.of_kind("Job"):
        env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["APPLIANCE_CONFIG"].strip() == rendered.config_file().strip()


def test_the_original_dicom_block_is_taken_as_written(tmp_path: Path) -> None:
    original = yaml.safe_load((Path(__file__).parents[2] / "examples/adapter.yaml").read_text())["dicom"]
    rendered = render({"config": {"dicom": copy.deepcopy(original)}})
    config = yaml.safe_load(rendered.config_file())
    expected = copy.deepcopy(original)
    # The chart owns where the adapter listens: its unprivileged container port on every address.
    expected["scp"].update({"port": 10104, "bind-address": "0.0.0.0"})
    assert config["dicom"] == expected
    # Senders keep the original's port, on the Service.
    assert rendered.get("Service", f"{RELEASE}-adapter")["spec"]["ports"][0]["port"] == original["scp"]["port"]
    assert f"{tmp_path / 'adapter.yaml'}: OK" in check_config(rendered.config_file(), tmp_path, "adapter")[1]


def test_the_adapter_keeps_the_senders_address_and_drains_slowly() -> None:
    default = render({})
    service = default.get("Service", f"{RELEASE}-adapter")["spec"]
    assert service["type"] == "NodePort" and service["externalTrafficPolicy"] == "Local"
    assert 30000 <= service["ports"][0]["nodePort"] <= 32767
    adapter = default.pod("adapter")
    container = adapter.spec["containers"][0]
    assert container["readinessProbe"]["tcpSocket"] == {"port": "dicom"}
    assert adapter.spec["terminationGracePeriodSeconds"] >= 300
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > 0

    hostport = render(values_of(_values("single-node-hostport")))
    ports = hostport.pod("adapter").spec["containers"][0]["ports"]
    assert ports == [{"name": "dicom", "containerPort": 10104, "protocol": "TCP", "hostPort": 104}]
    assert hostport.get("Service", f"{RELEASE}-adapter")["spec"]["type"] == "ClusterIP"
    # A second pod could not bind the node's port 104: no surge.
    assert hostport.get("Deployment", f"{RELEASE}-adapter")["spec"]["strategy"] == {"type": "Recreate"}

    cloud = render(values_of(_values("cloud-loadbalancer"))).get("Service", f"{RELEASE}-adapter")["spec"]
    assert (cloud["type"], cloud["externalTrafficPolicy"], cloud["ports"][0]["port"]) == ("LoadBalancer", "Local", 104)
    assert cloud["loadBalancerSourceRanges"] == ["10.1.4.0/24"]


def _values(name: str) -> Path:
    return next(p for p in VALUES_FILES if p.name == f"{name}-values.yaml")


def _env(pod: Pod) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in pod.spec["containers"][0]["env"]}


def test_the_job_store_url_is_in_the_config_and_its_password_in_a_secret() -> None:
    bundled = render({})
    # storage.database-url, the setting the appliance role writes (appliance_database_url), without a password.
    url = f"postgresql://appliance@{RELEASE}-postgresql:5432/appliance"
    assert yaml.safe_load(bundled.config_file())["storage"]["database-url"] == url
    for component in ("adapter", "worker", "exporter", "migrations"):
        env = _env(bundled.pod(component))
        assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"{RELEASE}-postgresql", "key": "password"}
    secret = bundled.get("Secret", f"{RELEASE}-postgresql")
    assert set(secret["data"]) == {"password"}
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    job = bundled.get("Job", f"{RELEASE}-migrations")["metadata"]["annotations"]
    # The bundled database exists only after the install.
    assert job["helm.sh/hook"] == "post-install,pre-upgrade"
    statefulset = bundled.get("StatefulSet", f"{RELEASE}-postgresql")["spec"]
    assert statefulset["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}

    external = render(values_of(_values("external-postgres")))
    assert not external.of_kind("StatefulSet")
    assert f"{RELEASE}-postgresql" not in {s["metadata"]["name"] for s in external.of_kind("Secret")}
    assert yaml.safe_load(external.config_file())["storage"]["database-url"] == (
        "postgresql://appliance@db.hospital.internal:5432/appliance")
    env = _env(external.pod("adapter"))
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "appliance-database", "key": "password"}
    assert external.get("Job", f"{RELEASE}-migrations")["metadata"]["annotations"]["helm.sh/hook"] == (
        "pre-install,pre-upgrade")
    # Without a Secret (trust or certificate logins) no password is set.
    trusted = render({"database": {"external": {"url": "postgresql://appliance@db:5432/appliance"}}})
    assert "PGPASSWORD" not in _env(trusted.pod("worker"))

    sqlite = render(values_of(_values("single-node-hostport")))
    assert not sqlite.of_kind("Job") and not sqlite.of_kind("StatefulSet")
    assert "database-url" not in yaml.safe_load(sqlite.config_file())["storage"]
    assert all("PGPASSWORD" not in str(c.get("env", [])) for p in sqlite.pods() for c in p.containers())


def test_the_spool_is_shared_and_kept() -> None:
    rendered = render({})
    claim = rendered.get("PersistentVolumeClaim", f"{RELEASE}-spool")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for component in ("adapter", "worker", "exporter"):
        volumes = {v["name"]: v for v in rendered.pod(component).spec["volumes"]}
        assert volumes["spool"]["persistentVolumeClaim"]["claimName"] == f"{RELEASE}-spool"


def test_triton_probes_and_model_repository() -> None:
    for mode, backend in (("gpu", "onnxruntime"), ("cpu", "python")):
        triton = render({"triton": {"mode": mode}}).pod("triton")
        server = triton.spec["containers"][0]
        probes = ("startupProbe", "readinessProbe", "livenessProbe")
        paths = {probe: server[probe]["httpGet"]["path"] for probe in probes}
        assert paths == {"startupProbe": "/v2/health/ready", "readinessProbe": "/v2/health/ready",
                         "livenessProbe": "/v2/health/live"}
        models = triton.spec["initContainers"][0]
        assert models["args"][:4] == ["python", "-m", "appliance.model_repository", "/models"]
        assert f"--backend={backend}" in models["args"]
        assert "--liver-wheel=/opt/appliance/share/pyliverlesionseg-0.3-py3-none-any.whl" in models["args"]
        if mode == "cpu":
            assert server["args"][:3] == ["python", "-m", "appliance.triton_local"]
            assert "--address=0.0.0.0" in server["args"]


def test_triton_restricted_apis_need_the_key() -> None:
    key_file = "/run/secrets/triton/key"
    for mode in ("gpu", "cpu"):
        rendered = render({"triton": {"mode": mode}})
        secret = rendered.get("Secret", f"{RELEASE}-triton-key")
        assert len(base64.b64decode(secret["data"]["key"])) == 64
        server = rendered.pod("triton").spec["containers"][0]
        if mode == "gpu":
            # The same options as appliance.triton_access gives a host's tritonserver, the key from the Secret.
            assert server_flags("$(TRITON_API_KEY)") == [a for a in server["args"] if "restricted" in a]
            env = {e["name"]: e for e in server["env"]}
            assert env["TRITON_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": f"{RELEASE}-triton-key", "key": "key"}
        else:
            assert f"--key-file={key_file}" in server["args"]
            assert key_file in _mounted_files(rendered.pod("triton"))
        # The worker sends it: the config names the file its pod mounts; no other service gets it.
        assert yaml.safe_load(rendered.config_file())["worker"]["triton"]["key-file"] == key_file
        assert key_file in _mounted_files(rendered.pod("worker"))
        for component in ("adapter", "exporter"):
            assert key_file not in _mounted_files(rendered.pod(component))
    opened = render({"triton": {"restrictApis": False}})
    assert "key-file" not in yaml.safe_load(opened.config_file())["worker"]["triton"]
    assert not [a for a in opened.pod("triton").spec["containers"][0]["args"] if "restricted" in a]
    assert not [d for d in opened.of_kind("Secret") if d["metadata"]["name"].endswith("-triton-key")]


def _mounted_files(pod: Pod) -> set[str]:
    """The files of the pod's Secret volumes, at the paths its containers see them."""
    secrets = {v["name"]: v["secret"] for v in pod.spec.get("volumes", []) if "secret" in v}
    return {f"{m['mountPath']}/{item['path']}" for c in pod.containers() for m in c.get("volumeMounts", [])
            if m["name"] in secrets for item in secrets[m["name"]].get("items", [])}


@pytest.mark.parametrize(("values", "message"), [
    ({"database": {"type": "sqlite"}},
     "database.type sqlite allows one replica of each service, worker.replicas is 2"),
    ({"database": {"type": "sqlite"}, "worker": {"replicas": 1}, "adapter": {"replicas": 3}},
     "database.type sqlite allows one replica of each service, adapter.replicas is 3"),
    ({"database": {"type": "sqlite"}, "worker": {"replicas": 1, "autoscaling": {"enabled": True}}},
     "worker.autoscaling.enabled would add workers"),
    ({"database": {"external": {"url": "postgresql://appliance:s3cret@db:5432/appliance"}}},
     "database.external.url holds a password, which would land in a ConfigMap"),
    ({"adapter": {"service": {"nodePort": 104}}},
     "adapter.service.nodePort 104 is outside the cluster's NodePort range 30000-32767"),
    ({"adapter": {"service": {"nodePort": 30104, "nodePortRange": "20000-22767"}}},
     "adapter.service.nodePort 30104 is outside the cluster's NodePort range 20000-22767"),
    ({"triton": {"mode": "gpu", "gpu": {"resourceName": ""}}},
     "triton.mode gpu needs triton.gpu.resourceName"),
    ({"dashboard": {"enabled": True}}, "dashboard.enabled needs at least one entry in dashboard.users"),
    ({"config": {"dicom": {"scp": {"ae-titles": [{"ae-title": "A", "destinations": "none"}],
                                   "reject-unknown-sources": True}}}},
     "reject-unknown-sources is true but config.dicom.scp.sources is empty"),
], ids=["sqlite-workers", "sqlite-adapters", "sqlite-autoscaling", "password-in-url", "nodeport-low",
        "nodeport-own-range", "gpu-without-resource", "dashboard-without-users", "sources-empty"])
def test_each_fail_guard_stops_the_render_with_its_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError, match="appliance: ") as caught:
        render(values)
    assert message in str(caught.value)


@pytest.mark.parametrize(("values", "where"), [
    ({"adapter": {"replicass": 2}}, "/adapter"),
    ({"adapter": {"service": {"type": "External"}}}, "/adapter/service/type"),
    ({"triton": {"mode": "tpu"}}, "/triton/mode"),
    ({"database": {"type": "mysql"}}, "/database/type"),
    ({"adapter": {"containerPort": 104}}, "/adapter/containerPort"),
])
def test_the_values_schema_refuses_typos_and_wrong_kinds(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=f"at '{where}'"):
        render(values)
