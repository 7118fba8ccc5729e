"""OCI runtime wrapper: drop CAP_SYS_RESOURCE from a container's capabilities, then exec runc.

Installed by :mod:`harness.engine` only where root itself lacks CAP_SYS_RESOURCE, so that
``--privileged`` containers (which ask for every capability) can start. ``@RUNC@`` is replaced
by the real runc path at install time.
"""

import json
import os
import sys

RUNC = "@RUNC@"
CAP = "CAP_SYS_RESOURCE"


def _value(args: list[str], *flags: str) -> str | None:
    for i, arg in enumerate(args):
        for flag in flags:
            if arg == flag and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
    return None


def _strip(process: dict) -> None:  # type: ignore[type-arg]
    for key, caps in (process.get("capabilities") or {}).items():
        process["capabilities"][key] = [c for c in caps if c != CAP]


def _rewrite(path: str, in_process: bool) -> None:
    with open(path) as f:
        doc = json.load(f)
    _strip(doc if in_process else doc.get("process", {}))
    with open(path, "w") as f:
        json.dump(doc, f)


def main() -> None:
    args = sys.argv[1:]
    if "create" in args or "run" in args:
        bundle = _value(args, "--bundle", "-b") or os.getcwd()
        _rewrite(os.path.join(bundle, "config.json"), in_process=False)
    elif "exec" in args:
        process = _value(args, "--process", "-p")
        if process:
            _rewrite(process, in_process=True)
    os.execv(RUNC, [RUNC, *args])


main()
