"""Build the appliance's container images offline, in a Docker engine, from what the single host uses.

* ``localhost/appliance:<version>``: the appliance's virtualenv (``appliance[cpu-serving]``: adapter,
  worker, exporter, dashboard, the model-repository builder and the CPU ``tritonserver`` of the
  nvidia-pytriton wheel), installed with ``pip --no-index`` from the **same wheel bundle the appliance
  role installs** (``roles/appliance/files/build_bundle.py``); ``tini`` as PID 1, user 10001.
* ``localhost/appliance-postgresql:16``: Ubuntu's PostgreSQL 16 with its ``postgres`` user as uid 999,
  for the chart's bundled database.

Both start from the Ubuntu 24.04 image the harness builds with debootstrap (:mod:`harness.images`),
take packages from the Ubuntu archive only, and pull nothing from a registry. Each step is
``docker run`` + ``docker commit`` (no Dockerfile ``COPY``: the bundle is bind-mounted, so its
wheels never become an image layer). An image whose inputs (bundle version, base image, this file)
are unchanged is reused.

``python -m harness appliance-image [--save FILE]``: ``--save`` writes both into one tar that
``ctr -n k8s.io images import FILE`` loads into a node's containerd (sites without a registry).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from appliance.model_repository import sources
from harness import archives, images
from harness.paths import REPO_ROOT

#: The Ubuntu release of the base image, and its Python (the bundle's wheels are built for it).
RELEASE = "24.04"
PYTHON = "3.12"
APPLIANCE_REPOSITORY = "localhost/appliance"
POSTGRESQL_REPOSITORY = "localhost/appliance-postgresql"
#: Intermediate: the base with current packages, Python, tini and the two users (reused by both images).
RUNTIME_REPOSITORY = "localhost/appliance-runtime"
POSTGRESQL_MAJOR = "16"
#: The users the chart's pods run as (podSecurityContext.runAsUser, database.bundled.runAsUser).
APPLIANCE_UID = 10001
POSTGRESQL_UID = 999
#: The extras the appliance role installs (appliance_venv_extras): the CPU Triton comes with them.
EXTRAS = ("cpu-serving",)
VENV = "/opt/appliance/venv"
#: The trained liver model's weights (inside a wheel from PyPI, appliance.model_repository.sources): in the
#: image, so that the Triton pods' init container builds the model repository without PyPI.
SHARE = "/opt/appliance/share"
LIVER_WHEEL = "pyliverlesionseg-0.3-py3-none-any.whl"
KEY_LABEL = "org.appliance.build-key"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Ends every step: no apt lists, no setuid/setgid programs (the pods run with no-new-privileges anyway).
_CLEAN = """
rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
find / -xdev -type f -perm /6000 -exec chmod a-s {} +
"""

# The runtime both images share, made once per base image: the archive's current packages, Python and
# tini, the two users, without sudo. The base's systemd-journal group holds gid 999: it moves (no journal
# runs in these images).
_RUNTIME_SCRIPT = f"""
set -eu
export DEBIAN_FRONTEND=noninteractive SUDO_FORCE_REMOVE=yes
apt-get update -qq
apt-get upgrade -y -qq >/dev/null
apt-get install -y -qq --no-install-recommends python{PYTHON}-venv libpython{PYTHON}t64 tini >/dev/null
apt-get purge -y -qq sudo >/dev/null
apt-get autoremove -y -qq --purge >/dev/null
taken=$(getent group {POSTGRESQL_UID} | cut -d: -f1)
if [ -n "$taken" ]; then groupmod --gid 899 "$taken"; fi
groupadd --system --gid {APPLIANCE_UID} appliance
useradd --system --uid {APPLIANCE_UID} --gid appliance --home-dir /nonexistent --shell /usr/sbin/nologin appliance
# The package's postinst keeps an existing postgres user: the uid the chart runs the database as.
groupadd --system --gid {POSTGRESQL_UID} postgres
useradd --system --uid {POSTGRESQL_UID} --gid postgres --home-dir /var/lib/postgresql --shell /bin/sh postgres
{_CLEAN}
"""

_APPLIANCE_SCRIPT = f"""
set -eu
python{PYTHON} -m venv {VENV}
{VENV}/bin/pip install -q --no-index --no-cache-dir --disable-pip-version-check \\
  --find-links /bundle/wheels "appliance[{','.join(EXTRAS)}]==$VERSION"
cp /bundle/bundle.json {VENV}/bundle.json
install -D -m 0644 /bundle/{LIVER_WHEEL} {SHARE}/{LIVER_WHEEL}
{VENV}/bin/appliance --help >/dev/null
{_CLEAN}
"""

_POSTGRESQL_SCRIPT = f"""
set -eu
export DEBIAN_FRONTEND=noninteractive
# No cluster from the package: the chart's init container makes one on the volume.
mkdir -p /etc/postgresql-common
echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql-{POSTGRESQL_MAJOR} >/dev/null
install -d -o postgres -g postgres -m 2775 /var/run/postgresql
{_CLEAN}
"""


@dataclass(frozen=True)
class Built:
    """The images one build produced (or found), by full reference."""

    appliance: str
    postgresql: str
    version: str

    def as_json(self) -> str:
        """One JSON object: appliance, postgresql, version (what the kubernetes deployment needs)."""
        return json.dumps({"appliance": self.appliance, "postgresql": self.postgresql, "version": self.version})


def _docker(*args: str, check: bool = True, capture: bool = True) -> str:
    out = subprocess.run(["docker", *args], capture_output=capture, text=True, check=False)
    if check and out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])} ...: exit {out.returncode}: {(out.stderr or '')[-2000:]}")
    return out.stdout if capture else ""


def _label(ref: str) -> str | None:
    out = subprocess.run(["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{KEY_LABEL}"}}}}',
                          ref], capture_output=True, text=True, check=False)
    return out.stdout.strip() if out.returncode == 0 else None


def build_key(*parts: str) -> str:
    """First 12 hex digits of the SHA-256 over ``parts`` and this file (the recipe)."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for part in parts:
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:12]


def _run_and_commit(base: str, script: str, ref: str, key: str, changes: list[str],
                    mounts: tuple[str, ...] = (), env: dict[str, str] | None = None, flatten: bool = False) -> None:
    """Run ``script`` in a container of ``base`` and commit the result as ``ref``, labelled with ``key``.

    ``flatten`` exports the container's whole filesystem into one layer instead (``docker export |
    docker import``): files an upgrade replaced are then stored once, not twice.
    """
    name = f"appliance-image-build-{key}"
    _docker("rm", "--force", name, check=False)
    argv = ["run", "--name", name, "--network", "bridge"]
    for mount in mounts:
        argv += ["--volume", mount]
    for var, value in (env or {}).items():
        argv += ["--env", f"{var}={value}"]
    changed: list[str] = []
    for change in [*changes, f"LABEL {KEY_LABEL}={key}"]:
        changed += ["--change", change]
    try:
        run = subprocess.run(["docker", *argv, base, "bash", "-c", script], capture_output=True, text=True,
                             check=False)
        if run.returncode != 0:
            raise RuntimeError(f"building {ref}: exit {run.returncode}:\n{(run.stdout + run.stderr)[-3000:]}")
        if not flatten:
            _docker("commit", *changed, name, ref)
            return
        export = subprocess.Popen(["docker", "export", name], stdout=subprocess.PIPE)
        imported = subprocess.run(["docker", "import", *changed, "-", ref], stdin=export.stdout,
                                  capture_output=True, text=True, check=False)
        if export.wait() != 0 or imported.returncode != 0:
            raise RuntimeError(f"flattening {ref}: {imported.stderr[-2000:]}")
    finally:
        _docker("rm", "--force", name, check=False)


def _bundle(dest: Path) -> dict[str, object]:
    """Build (or find) the wheel bundle for the image's Python, as the appliance role does."""
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "roles/appliance/files/build_bundle.py"), f"--source={REPO_ROOT}",
         f"--dest={dest}", f"--python-version={PYTHON}", "--arch=x86_64", f"--extras={','.join(EXTRAS)}"],
        capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"build_bundle.py failed ({out.returncode}): {out.stderr[-2000:]}")
    result: dict[str, object] = json.loads(out.stdout)
    return result


def image_tag(version: str) -> str:
    """A Docker tag for the package version (``0.1.0+src.abc`` -> ``0.1.0-src.abc``: tags have no ``+``)."""
    return version.replace("+", "-")


def build(bundle_cache: Path | None = None) -> Built:
    """Make both images current in the engine ``docker`` talks to; returns their references."""
    images.build(RELEASE)
    base = f"{images.REPOSITORY}:{RELEASE}"
    base_id = _docker("image", "inspect", "--format", "{{.Id}}", base).strip()
    bundle = _bundle(bundle_cache or REPO_ROOT / ".cache" / "bundles")
    # The same controller cache the triton role fetches it into (triton_packages_cache).
    liver = sources.liver_wheel(REPO_ROOT / ".cache")
    version = str(bundle["version"])

    runtime = f"{RUNTIME_REPOSITORY}:{RELEASE}"
    key = build_key("runtime", base_id)
    if _label(runtime) != key:
        _run_and_commit(base, _RUNTIME_SCRIPT, runtime, key, ['CMD ["/bin/bash"]'], flatten=True)
    runtime_id = _docker("image", "inspect", "--format", "{{.Id}}", runtime).strip()

    postgresql = f"{POSTGRESQL_REPOSITORY}:{POSTGRESQL_MAJOR}"
    key = build_key("postgresql", runtime_id)
    if _label(postgresql) != key:
        _run_and_commit(runtime, _POSTGRESQL_SCRIPT, postgresql, key, [
            f"ENV PATH=/usr/lib/postgresql/{POSTGRESQL_MAJOR}/bin:{PATH}", "ENV PGDATA=/var/lib/postgresql/data/pgdata",
            f"USER {POSTGRESQL_UID}:{POSTGRESQL_UID}", "WORKDIR /var/lib/postgresql", 'CMD ["postgres"]'])

    appliance = f"{APPLIANCE_REPOSITORY}:{image_tag(version)}"
    key = build_key("appliance", runtime_id, version, liver.name)
    if _label(appliance) != key:
        with tempfile.TemporaryDirectory(prefix="appliance-image-") as tmp:
            with tarfile.open(str(bundle["path"])) as tar:
                archives.extract(tar, Path(tmp))
            shutil.copyfile(liver, Path(tmp, LIVER_WHEEL))
            _run_and_commit(runtime, _APPLIANCE_SCRIPT, appliance, key, [
                f"ENV PATH={VENV}/bin:{PATH}", "ENV HOME=/tmp", "ENV PYTHONUNBUFFERED=1",
                f"USER {APPLIANCE_UID}:{APPLIANCE_UID}", "WORKDIR /tmp",
                'ENTRYPOINT ["/usr/bin/tini", "--"]', 'CMD ["appliance", "--help"]',
                f"LABEL org.opencontainers.image.version={version}"],
                mounts=(f"{tmp}:/bundle:ro",), env={"VERSION": version})
        # Earlier builds of the appliance (other source versions) go: each is over a gigabyte.
        for old in _docker("images", "--format", "{{.Repository}}:{{.Tag}}", APPLIANCE_REPOSITORY).split():
            if old != appliance:
                _docker("rmi", old, check=False)
    return Built(appliance, postgresql, version)


def save(built: Built, path: Path) -> Path:
    """Write both images into one Docker-archive tar for ``ctr -n k8s.io images import``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _docker("save", "--output", str(path), built.appliance, built.postgresql)
    return path
