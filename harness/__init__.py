"""Test-host harness: a private Docker engine and Ubuntu systemd images, for molecule and CI.

Nothing here is pulled from a registry: images are built with debootstrap from the Ubuntu
archive and ``docker import``-ed into an engine this harness starts when none is reachable.
"""
