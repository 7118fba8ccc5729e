"""Configuration: the original dicom block loads as written; errors name the line, the key and the problem."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from adapterkit import APPLIANCE

from appliance.settings import SettingsError, load_config, parse_config

EXAMPLE = Path(__file__).parents[2] / "examples" / "adapter.yaml"


def test_example_is_the_sdk_demo_config() -> None:
    config = load_config(EXAMPLE)
    scp, scu = config.dicom.scp, config.dicom.scu
    assert [a.ae_title for a in scp.ae_titles] == ["OrganSeg", "LiverSeg"]
    assert scp.ae_title("OrganSeg ") is not None and scp.ae_title("Other") is None
    assert [(s.ae_title, s.host_ip) for s in scp.sources] == [("ORTHANC", "127.0.0.1")]
    assert scu.destination("MYPACS") is not None
    assert scp.verification.transfer_syntaxes[0] == "1.2.840.10008.1.2"


def test_original_dicom_block_loads_without_new_keys() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    for ae in raw["dicom"]["scp"]["ae-titles"]:
        del ae["workflow"], ae["destinations"]
    config = parse_config({"dicom": raw["dicom"], "storage": {"root": "/srv/payloads"}})
    assert config.dicom.scp.ae_titles[0].workflow == "OrganSeg"
    assert config.dicom.scp.ae_titles[1].destinations == ("MYPACS",)  # the file's one destination
    assert config.completion.quiet_seconds == 5.0
    assert config.storage.database == Path("/srv/payloads/jobs.sqlite3")
    assert config.export.backoff(1) == 2.0 and config.export.backoff(10) == 60.0


def test_every_problem_is_reported_with_its_key_path() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["dicom"]["scp"]["ae-titles"][1]["ae-title"] = "A-TITLE-LONGER-THAN-16"
    raw["dicom"]["scp"]["port"] = 70000
    raw["dicom"]["scp"]["ae-titles"][0]["destinations"] = ["NOPACS"]
    raw["dicom"]["scu"]["destinations"][0]["host-ip"] = ""
    raw["dicom"]["scp"]["verification"]["transfer-syntaxes"].append("not-a-uid")
    raw["dicom"]["scp"]["typo-key"] = 1
    with pytest.raises(SettingsError) as info:
        parse_config(raw)
    text = "\n".join(info.value.problems)
    assert "dicom.scp.ae-titles[1].ae-title: must be 1-16 characters" in text
    assert "dicom.scp.port: must be less than or equal to 65535, not 70000" in text
    assert "dicom.scp.ae-titles[0].destinations[0]: unknown destination 'NOPACS'" in text
    assert "dicom.scu.destinations[0].host-ip: must be a host name or IP address, not ''" in text
    assert "dicom.scp.verification.transfer-syntaxes[3]: must be a UID" in text
    assert "dicom.scp.typo-key: unknown key" in text


def test_reject_unknown_sources_needs_sources() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["dicom"]["scp"]["sources"] = []
    with pytest.raises(SettingsError, match=r"dicom\.scp\.reject-unknown-sources: is true but"):
        parse_config(raw)


def test_adapter_refuses_to_start_on_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("dicom:\n  scp:\n    ae-titles:\n      - ae-title: ''\nstorage: {root: /tmp/x}\n")
    done = subprocess.run([str(APPLIANCE), "adapter", "--config", str(bad)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2
    assert "dicom.scp.ae-titles[0].ae-title: must be 1-16 characters" in done.stderr
    ok = subprocess.run([str(APPLIANCE), "adapter", "--config", str(EXAMPLE), "--check"],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr


# The original SDK's dicom-server-config.yaml, unchanged (its one SCU destination is MYPACS).
SDK_FILE = """\
dicom:
  scp:
    port: 104
    ae-titles:
      - ae-title: OrganSeg
        processors:
          - "nvidia/clara/dicom-processor"
      - ae-title: LiverSeg
        processors:
          - "nvidia/clara/dicom-processor"
    max-associations: 2
    verification:
      enabled: true
      transfer-syntaxes:
        - "1.2.840.10008.1.2" #Implicit VR Little Endian
        - "1.2.840.10008.1.2.1" #Explicit VR Little Endian
        - "1.2.840.10008.1.2.2" #Explicit VR Big Endian
    log-dimse-datasets: false
    reject-unknown-sources: true
    sources:
      - host-ip: 10.110.46.111
        ae-title: DCM4CHEE
  scu:
    ae-title: ClaraSCU
    max-associations: 2
    destinations:
      - name: MYPACS
        host-ip: 10.110.46.111
        port: 4242
        ae-title: ORTHANC
"""


def test_the_sdk_file_alone_is_a_configuration(tmp_path: Path) -> None:
    path = tmp_path / "dicom-server-config.yaml"
    path.write_text(SDK_FILE)
    config = load_config(path)
    assert [a.destinations for a in config.dicom.scp.ae_titles] == [("MYPACS",), ("MYPACS",)]
    assert config.storage.root == Path("/var/lib/appliance/payloads")
    assert config.storage.database == Path("/var/lib/appliance/payloads/jobs.sqlite3")
    done = subprocess.run([str(APPLIANCE), "adapter", "--config", str(path), "--check"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def _problems(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "adapter.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError) as info:
        load_config(path)
    return info.value.problems


def test_an_ae_title_without_destinations_is_an_error_unless_it_says_none(tmp_path: Path) -> None:
    # Two SCU destinations: no default, so each AE title must say where its results go.
    two = SDK_FILE + "      - {name: ARCHIVE, host-ip: 10.0.0.9, port: 104, ae-title: ARCHIVE}\n"
    problems = _problems(two, tmp_path)
    assert problems == [
        f"{tmp_path}/adapter.yaml:{_line(two, title)}: dicom.scp.ae-titles[{i}].destinations: AE title {title} sends "
        "its results nowhere: add destinations: [MYPACS] (any of MYPACS, ARCHIVE), or write 'destinations: none' to "
        "keep them on this host only" for i, title in enumerate(["OrganSeg", "LiverSeg"])]
    first = '        processors:\n          - "nvidia/clara/dicom-processor"\n      - ae-title: LiverSeg'
    explicit = two.replace(first, "        destinations: none\n      - ae-title: LiverSeg\n        destinations: []", 1)
    problems = _problems(explicit, tmp_path)
    assert len(problems) == 1 and "dicom.scp.ae-titles[1].destinations: AE title LiverSeg sends" in problems[0]
    (tmp_path / "ok.yaml").write_text(explicit.replace("destinations: []", "destinations: [ARCHIVE]"))
    assert [a.destinations for a in load_config(tmp_path / "ok.yaml").dicom.scp.ae_titles] == [(), ("ARCHIVE",)]
    # No SCU destination at all: the message says to add one.
    bare = SDK_FILE.split("    destinations:\n")[0]
    assert "add a destination to dicom.scu.destinations and its name here" in _problems(bare, tmp_path)[0]


def _line(text: str, needle: str, nth: int = 1) -> int:
    return [n for n, line in enumerate(text.splitlines(), 1) if needle in line][nth - 1]


def test_file_problems_name_their_line(tmp_path: Path) -> None:
    text = SDK_FILE.replace("    max-associations: 2\n    verification", "    max-associations: two\n    verification")
    text = text.replace("        port: 4242", "        port: 4242\n        destination: [X]")
    text += "worker:\n  workers: 2\n  workers: 3\n"
    path = f"{tmp_path}/adapter.yaml"
    assert _problems(text, tmp_path) == [f"{path}:{_line(text, 'workers:', 2)}: worker.workers: duplicate key"]
    text = text.replace("  workers: 3\n", "")
    assert _problems(text, tmp_path) == [
        f"{path}:{_line(text, 'max-associations: two')}: dicom.scp.max-associations: must be a valid integer, "
        "not 'two'",
        f"{path}:{_line(text, 'destination: [X]')}: dicom.scu.destinations[0].destination: unknown key "
        "(known: name, host-ip, port, ae-title, tls)",
    ]


def test_duplicate_names_are_errors(tmp_path: Path) -> None:
    text = SDK_FILE.replace("      - ae-title: LiverSeg", "      - ae-title: OrganSeg")
    text += "      - {name: MYPACS, host-ip: 10.0.0.9, port: 104, ae-title: ARCHIVE}\n"
    path = f"{tmp_path}/adapter.yaml"
    assert _problems(text, tmp_path) == [
        f"{path}:{_line(text, 'ae-title: OrganSeg', 2)}: dicom.scp.ae-titles[1].ae-title: "
        "duplicate AE title 'OrganSeg'",
        f"{path}:{_line(text, 'ARCHIVE')}: dicom.scu.destinations[1].name: duplicate destination name 'MYPACS'",
    ]
