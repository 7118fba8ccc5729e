#!/usr/bin/env python3
"""Build, on the Ansible controller, the offline install bundle of the appliance for one host Python.

The bundle is one tar file holding a wheel of the appliance (built from the checkout, its version
suffixed with a hash of the sources, ``0.1.0+src.<hash>``, so that a changed checkout is a new
version on the host) and every dependency's wheel for the host's Python version and platform
(``pip download --only-binary``). Hosts then install with ``pip --no-index``: they need no access to
PyPI, and every host of a run gets the same versions.

Bundles are cached in DEST by (sources, Python version, platform, extras): a re-run with an unchanged
checkout builds nothing. The tar is byte-for-byte reproducible (sorted names, fixed times and
owners), so Ansible's copy only transfers it when it really changed.

Prints one JSON object: ``{"path", "version", "python", "extras", "built"}``.

Usage: ``build_bundle.py --source REPO --dest CACHE --python-version 3.12 [--extras cpu-serving]``
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections import deque
from email.parser import Parser
from pathlib import Path

import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

# The files that make the package (with its data files, from pyproject.toml's package-data);
# anything else in the checkout does not change the bundle.
SOURCE_GLOBS = ("pyproject.toml", "appliance/**/*.py")
# manylinux tags up to glibc 2.35 (Ubuntu 22.04, the oldest supported release).
GLIBC_MINORS = range(17, 36)


def source_globs(source: Path) -> list[str]:
    """:data:`SOURCE_GLOBS` and the package-data patterns of ``source``'s pyproject.toml (workflow
    files, the dashboard's templates and static files): a data file left out would be missing on
    the hosts."""
    project = tomllib.loads((source / "pyproject.toml").read_text())
    data = project.get("tool", {}).get("setuptools", {}).get("package-data", {})
    return [*SOURCE_GLOBS, *(f"{package.replace('.', '/')}/{pattern}" for package, patterns in data.items()
                             for pattern in patterns)]


def source_files(source: Path) -> list[Path]:
    """The package's files under ``source``, sorted, without caches."""
    found = {p for pattern in source_globs(source) for p in source.glob(pattern)
             if p.is_file() and "__pycache__" not in p.parts}
    return sorted(found)


def bundle_key(source: Path, python: str, arch: str, extras: list[str]) -> str:
    """First 12 hex digits of the SHA-256 over the sources' paths and bytes and the target."""
    digest = hashlib.sha256(f"{python}|{arch}|{','.join(sorted(extras))}".encode())
    for path in source_files(source):
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def stage_sources(source: Path, stage: Path, local_version: str) -> None:
    """Copy the package's files to ``stage`` with ``+local_version`` appended to its version."""
    for path in source_files(source):
        target = stage / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    # The package's long description: a pointer, so that editing the project README is not a new version.
    (stage / "README.md").write_text("The appliance: see README.md in the project's repository.\n")
    pyproject = stage / "pyproject.toml"
    text, count = re.subn(r'^version = "([^"+]+)"', rf'version = "\1+{local_version}"',
                          pyproject.read_text(), count=1, flags=re.MULTILINE)
    if count != 1:
        raise SystemExit(f"{source / 'pyproject.toml'}: no static `version = \"...\"` line to stamp")
    pyproject.write_text(text)


def pip(*args: str) -> None:
    """Run this interpreter's pip; its output goes to stderr so stdout stays one JSON object."""
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, stdout=sys.stderr)


def target_environment(python: str, arch: str) -> dict[str, str]:
    """Marker environment of the host: its Python version and platform, not the controller's."""
    env = {key: str(value) for key, value in default_environment().items()}
    env.update(python_version=python, python_full_version=f"{python}.0", implementation_name="cpython",
               platform_python_implementation="CPython", sys_platform="linux", platform_system="Linux",
               os_name="posix", platform_machine=arch)
    return env


def unmet_requirements(wheels: Path, root: str, env: dict[str, str]) -> list[str]:
    """Requirements of ``root`` (with its extras) and its dependencies that no wheel in ``wheels`` meets.

    ``pip download --python-version`` picks wheels for the host's Python but evaluates dependency
    markers such as ``python_version < "3.11"`` for the controller's, so a host with an older Python
    would miss packages (e.g. aiohttp's async-timeout on 3.10). This walks the graph again with the
    host's markers.
    """
    have: dict[str, tuple[str, Path]] = {}
    for path in wheels.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(path.name)
        have[canonicalize_name(name)] = (str(version), path)
    unmet: list[str] = []
    seen: set[tuple[str, str]] = set()
    queue = deque([Requirement(root)])
    while queue:
        req = queue.popleft()
        name = canonicalize_name(req.name)
        if name not in have or not req.specifier.contains(have[name][0], prereleases=True):
            unmet.append(str(req).split(";")[0])
            continue
        for extra in ("", *sorted(req.extras)):
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            with zipfile.ZipFile(have[name][1]) as wheel:
                meta_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
                meta = Parser().parsestr(wheel.read(meta_name).decode())
            for line in meta.get_all("Requires-Dist") or []:
                dep = Requirement(line)
                if dep.marker is None or dep.marker.evaluate({**env, "extra": extra}):
                    queue.append(dep)
    return sorted(set(unmet))


def reproducible_tar(folder: Path, out: Path) -> None:
    """Write ``folder``'s files into ``out`` with sorted names, mtime 0 and root ownership."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(folder.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(folder)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
            info.mode = 0o755 if info.isdir() else 0o644
            if info.isfile():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)


def build(source: Path, dest: Path, python: str, arch: str, extras: list[str]) -> dict[str, object]:
    """Build (or find in the cache) the bundle; returns the JSON-able result."""
    key = bundle_key(source, python, arch, extras)
    base = re.search(r'^version = "([^"+]+)"', (source / "pyproject.toml").read_text(), re.MULTILINE)
    if base is None:
        raise SystemExit(f"{source / 'pyproject.toml'}: no static version")
    version = f"{base.group(1)}+src.{key}"
    name = f"appliance-py{python}-{arch}-{key}.tar"
    result: dict[str, object] = {"path": str(dest / name), "version": version, "python": python,
                                 "extras": extras, "built": False}
    dest.mkdir(parents=True, exist_ok=True)
    # Several hosts of one play build for the same Python at once: one builds, the others wait.
    with (dest / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (dest / name).is_file():
            return result
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            stage, wheels = Path(tmp) / "src", Path(tmp) / "bundle" / "wheels"
            stage_sources(source, stage, f"src.{key}")
            pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(stage))
            wheel = next(wheels.glob("appliance-*.whl"))
            requirement = f"appliance[{','.join(extras)}] @ {wheel.as_uri()}" if extras else str(wheel)
            platforms = [f"--platform=manylinux_2_{minor}_{arch}" for minor in GLIBC_MINORS]
            target = ["--only-binary=:all:", f"--python-version={python}", "--implementation=cp", *platforms,
                      "--platform=linux_" + arch, "--dest", str(wheels)]
            pip("download", "--quiet", *target, requirement)
            root = f"appliance[{','.join(extras)}]" if extras else "appliance"
            for _ in range(10):
                unmet = unmet_requirements(wheels, root, target_environment(python, arch))
                if not unmet:
                    break
                pip("download", "--quiet", *target, *unmet)
            else:
                raise SystemExit(f"requirements still unmet for Python {python}: {unmet}")
            (wheels.parent / "bundle.json").write_text(json.dumps(
                {k: result[k] for k in ("version", "python", "extras")}, sort_keys=True) + "\n")
            reproducible_tar(wheels.parent, Path(tmp) / name)
            for old in dest.glob(f"appliance-py{python}-{arch}-*.tar"):
                old.unlink()
            (Path(tmp) / name).rename(dest / name)
    result["built"] = True
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build, print the JSON result; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, type=Path, help="the checkout (folder with pyproject.toml)")
    parser.add_argument("--dest", required=True, type=Path, help="cache folder for bundles")
    parser.add_argument("--python-version", required=True, help="the host's Python, e.g. 3.12")
    parser.add_argument("--arch", default="x86_64", help="the host's machine architecture (default x86_64)")
    parser.add_argument("--extras", default="", help="comma-separated extras of the appliance package")
    args = parser.parse_args(argv)
    extras = [e for e in args.extras.split(",") if e]
    print(json.dumps(build(args.source.resolve(), args.dest.resolve(), args.python_version, args.arch, extras)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
