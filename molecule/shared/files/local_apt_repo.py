#!/usr/bin/env python3
"""Build dummy Debian packages and a flat apt repository from them, on a test host.

Molecule scenarios use it where the real repository is unreachable (pkgs.k8s.io) or where a future state
of the Ubuntu archive must be simulated (a newer driver point release with a newer kernel ABI). Only the
host's own dpkg-deb, python3 and (for signing) gpg are needed.

    local_apt_repo.py SPEC.json REPO_DIR [--sign GNUPGHOME]

SPEC is a JSON list of packages: {"name", "version", "depends": "...", "source": "...", "files": {path:
content}, "mode": {path: octal string}, "postinst": "shell"}. The packages are added to REPO_DIR (earlier
ones stay, as in an archive that only grows), then Packages, Release and, with --sign, InRelease and
Release.key (the public key) are written. The repository is flat: ``deb [signed-by=...] URL /`` or
``file:REPO_DIR ./``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from email.utils import formatdate
from pathlib import Path


def build(package: dict, out: Path) -> Path:
    """One .deb from a spec entry (architecture all)."""
    deb = out / f"{package['name']}_{package['version']}_all.deb"
    if deb.exists():
        return deb
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "DEBIAN").mkdir()
        control = [f"Package: {package['name']}", f"Version: {package['version']}", "Architecture: all",
                   "Maintainer: molecule <molecule@localhost>", f"Description: stand-in {package['name']}"]
        for field in ("source", "depends", "provides", "conflicts"):
            if package.get(field):
                control.append(f"{field.capitalize()}: {package[field]}")
        (root / "DEBIAN/control").write_text("\n".join(control) + "\n")
        if package.get("postinst"):
            script = root / "DEBIAN/postinst"
            script.write_text("#!/bin/sh\nset -e\n" + package["postinst"] + "\n")
            script.chmod(0o755)
        for path, content in package.get("files", {}).items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(int(package.get("mode", {}).get(path, "0644"), 8))
        subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True,
                       stdout=subprocess.DEVNULL)
    return deb


def index(repo: Path) -> str:
    """The Packages index of every .deb in *repo*."""
    stanzas = []
    for deb in sorted(repo.glob("*.deb")):
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True).stdout
        data = deb.read_bytes()
        stanzas.append(control.rstrip("\n") + f"\nFilename: ./{deb.name}\nSize: {len(data)}\n"
                       f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
    return "\n".join(stanzas)


def release(repo: Path) -> str:
    data = (repo / "Packages").read_bytes()
    lines = ["Origin: molecule", "Label: molecule", "Suite: stable", "Codename: stable",
             "Architectures: all amd64 arm64", f"Date: {formatdate(usegmt=True)}", "SHA256:",
             f" {hashlib.sha256(data).hexdigest()} {len(data)} Packages"]
    return "\n".join(lines) + "\n"


def sign(repo: Path, home: Path) -> None:
    """A throwaway key (made once per GNUPGHOME): InRelease signed with it, its public key as Release.key."""
    env = {**os.environ, "GNUPGHOME": str(home)}
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    listed = subprocess.run(["gpg", "--batch", "--list-secret-keys"], env=env, capture_output=True, text=True)
    if "sec" not in listed.stdout:
        subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "molecule <molecule@localhost>",
                        "rsa2048", "sign", "never"], env=env, check=True, capture_output=True)
    (repo / "InRelease").unlink(missing_ok=True)
    subprocess.run(["gpg", "--batch", "--yes", "--clearsign", "-o", str(repo / "InRelease"), str(repo / "Release")],
                   env=env, check=True, capture_output=True)
    key = subprocess.run(["gpg", "--batch", "--armor", "--export"], env=env, check=True, capture_output=True)
    (repo / "Release.key").write_bytes(key.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("spec", type=Path)
    parser.add_argument("repo", type=Path)
    parser.add_argument("--sign", type=Path, metavar="GNUPGHOME")
    args = parser.parse_args()
    args.repo.mkdir(parents=True, exist_ok=True)
    for package in json.loads(args.spec.read_text()):
        build(package, args.repo)
    (args.repo / "Packages").write_text(index(args.repo))
    (args.repo / "Release").write_text(release(args.repo))
    if args.sign:
        sign(args.repo, args.sign)
    return 0


if __name__ == "__main__":
    sys.exit(main())
