"""Configuration: the original dicom block loads as written; errors name the key and the problem."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from adapterkit import APPLIANCE

from appliance.config import ConfigError, load, parse

EXAMPLE = Path(__file__).parents[2] / "examples" / "adapter.yaml"


def test_example_is_the_sdk_demo_config() -> None:
    config = load(EXAMPLE)
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
    config = parse({"dicom": raw["dicom"], "storage": {"root": "/srv/payloads"}})
    assert config.dicom.scp.ae_titles[0].workflow == "OrganSeg"
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
    del raw["storage"]
    with pytest.raises(ConfigError) as info:
        parse(raw)
    text = "\n".join(info.value.problems)
    assert "dicom.scp.ae-titles[1].ae-title: must be 1-16 characters" in text
    assert "dicom.scp.port: must be a port number 1-65535, not 70000" in text
    assert "dicom.scp.ae-titles[0].destinations[0]: unknown destination 'NOPACS'" in text
    assert "dicom.scu.destinations[0].host-ip: must be a host name or IP address, not ''" in text
    assert "dicom.scp.verification.transfer-syntaxes[3]: must be a transfer syntax UID" in text
    assert "dicom.scp.typo-key: unknown key" in text
    assert "storage: is required" in text


def test_reject_unknown_sources_needs_sources() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["dicom"]["scp"]["sources"] = []
    with pytest.raises(ConfigError, match=r"dicom\.scp\.reject-unknown-sources: is true but"):
        parse(raw)


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
