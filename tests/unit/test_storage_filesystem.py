"""Which filesystem a path is on: the settings refuse a SQLite job store on a network filesystem.

No network filesystem can be mounted on the build machines (no NFS client in their kernel), so the
refusal is checked on the mountinfo text such a host has; the lookup itself runs on this host's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.settings import SettingsError, parse_config
from appliance.storage import mount_of

#: /proc/self/mountinfo of a host whose spool is an NFS mount (a space in one mount point).
NFS_HOST = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
41 22 0:40 / /mnt/spool rw,relatime shared:20 - nfs4 fileserver:/export/spool rw,vers=4.2,hard
42 41 0:41 / /mnt/spool/local\\040disk rw,relatime shared:21 - ext4 /dev/sdb1 rw
"""


def test_the_longest_matching_mount_wins() -> None:
    assert mount_of(Path("/mnt/spool/payloads/jobs.sqlite3"), NFS_HOST).network  # type: ignore[union-attr]
    local = mount_of(Path("/mnt/spool/local disk/jobs.sqlite3"), NFS_HOST)
    assert local is not None and local.fstype == "ext4" and local.point == Path("/mnt/spool/local disk")
    root = mount_of(Path("/var/lib/appliance/jobs.sqlite3"), NFS_HOST)
    assert root is not None and not root.network and root.point == Path("/")


def test_this_hosts_folders_are_found(tmp_path: Path) -> None:
    mount = mount_of(tmp_path / "not" / "made" / "yet")  # a folder not made yet is on its parent's
    assert mount is not None and mount.point in (tmp_path, *tmp_path.parents)


def test_sqlite_on_a_network_filesystem_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import appliance.settings.config as config

    monkeypatch.setattr(config, "mount_of", lambda path: mount_of(path, NFS_HOST))
    ae_titles = {"ae-titles": [{"ae-title": "OrganSeg", "destinations": "none"}]}
    with pytest.raises(SettingsError, match=r"storage.database: /mnt/spool/payloads/jobs.sqlite3 is on a network "
                                            r"filesystem \(nfs4 fileserver:/export/spool at /mnt/spool\)"):
        parse_config({"dicom": {"scp": ae_titles}, "storage": {"root": "/mnt/spool/payloads"}})
    # The spool may be there; the job store then lives in PostgreSQL, or on a local disk.
    parse_config({"dicom": {"scp": ae_titles}, "storage": {"root": "/mnt/spool/payloads",
                                                           "database-url": "postgresql://a@db/appliance"}})
    parse_config({"dicom": {"scp": ae_titles}, "storage": {"root": "/mnt/spool/payloads",
                                                           "database": "/var/lib/appliance/jobs.sqlite3"}})
