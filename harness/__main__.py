"""``python -m harness COMMAND``: engine, images and environment for molecule and CI.

Commands:
  engine start|stop|status   the private Docker engine (started only when none is reachable)
  images [VERSION ...]       build or reuse the Ubuntu test-host images (default: all)
  env                        print ``export`` lines for DOCKER_HOST and the molecule variables
  sandbox up|down            the local Ubuntu host of inventory/sandbox (24.04, or $HARNESS_RELEASE)
  appliance-image [--save FILE]
                             build the appliance's container images (and the bundled PostgreSQL's)
                             offline from the wheel bundle; --save writes them into one tar for
                             `ctr -n k8s.io images import`
  roundtrip [--container NAME] [--ae AE]
                             push a new phantom CT study into the host's DICOM port from here and
                             wait for its DICOM SEG on this machine (storescp, port 11112)
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys

from harness import appliance_image, cgroups, engine, images, loopdevs, roundtrip, sandbox


def _env_lines(host: str) -> list[str]:
    values = {
        "DOCKER_HOST": host,
        "HARNESS_CGROUP_V2_SOURCE": cgroups.v2_only_source(),
    }
    return [f"export {k}={shlex.quote(v)}" for k, v in values.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    eng = sub.add_parser("engine")
    eng.add_argument("action", choices=("start", "stop", "status"))
    img = sub.add_parser("images")
    img.add_argument("versions", nargs="*", metavar="VERSION", help=f"one of {', '.join(images.RELEASES)}")
    sub.add_parser("env")
    box = sub.add_parser("sandbox")
    box.add_argument("action", choices=("up", "down"))
    image = sub.add_parser("appliance-image")
    image.add_argument("--save", metavar="FILE", help="also write both images into FILE (a Docker archive tar)")
    trip = sub.add_parser("roundtrip")
    trip.add_argument("--container", default=sandbox.NAME, help=f"the host (default {sandbox.NAME})")
    trip.add_argument("--ae", default="OrganSeg", help="called AE title (default OrganSeg)")
    trip.add_argument("--workdir", default=".cache/roundtrip", help="study and received files (.cache/roundtrip)")
    args = parser.parse_args(argv)

    if args.command == "engine":
        if args.action == "stop":
            engine.stop_private()
            return 0
        if args.action == "status":
            found = engine.find()
            print(found.host if found else "no engine reachable")
            return 0 if found else 1
        print(engine.ensure().host)
        return 0
    if args.command == "images":
        unknown = set(args.versions) - set(images.RELEASES)
        if unknown:
            parser.error(f"unknown Ubuntu version(s) {sorted(unknown)}; choose from {list(images.RELEASES)}")
        for line in images.build_all(args.versions or list(images.RELEASES)):
            print(line)
        return 0
    if args.command == "sandbox":
        if args.action == "up":
            print(f"{sandbox.NAME}: running at {sandbox.up()}")
        else:
            sandbox.down()
        return 0
    if args.command == "appliance-image":
        from pathlib import Path

        built = appliance_image.build()
        if args.save:
            appliance_image.save(built, Path(args.save))
        print(built.as_json())
        return 0
    if args.command == "roundtrip":
        from pathlib import Path

        workdir = Path(args.workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        report = roundtrip.roundtrip(args.container, args.ae, workdir)
        print("\n".join(report.lines()))
        return 0
    loopdevs.ensure_nodes()
    print("\n".join(_env_lines(engine.ensure().host)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
