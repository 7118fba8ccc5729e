"""``appliance dashboard --check``, ``appliance dashboard-password``, the vendored viewer library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from argon2 import PasswordHasher
from dashkit import dashboard_config

ROOT = Path(__file__).resolve().parents[2]
APPLIANCE = Path(sys.executable).with_name("appliance")


def _check(tmp_path: Path, config: dict[str, object]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "adapter.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run([str(APPLIANCE), "dashboard", "--check", "--config", str(path)], capture_output=True,
                          text=True, timeout=60)


def test_check_accepts_a_dashboard_and_refuses_one_nobody_can_use(tmp_path: Path) -> None:
    ok = _check(tmp_path, dashboard_config(tmp_path / "s", port=9443))
    assert ok.returncode == 0, ok.stderr
    assert "(http://127.0.0.1:9443, 3 user(s))" in ok.stdout
    config = dashboard_config(tmp_path / "s")
    config["dashboard"]["users"] = []
    config["dashboard"]["tls-certificate"] = str(tmp_path / "missing.crt")
    config["dashboard"]["tls-key"] = str(tmp_path / "missing.key")
    bad = _check(tmp_path, config)
    assert bad.returncode == 2
    assert "dashboard.users: list at least one user" in bad.stderr
    assert "dashboard.tls-certificate: " in bad.stderr and "missing or not readable" in bad.stderr
    config["dashboard"]["users"] = [{"name": "x", "password-hash": "secret", "role": "admin"}]
    plain = _check(tmp_path, config)
    assert plain.returncode == 2 and "must be an argon2 hash" in plain.stderr


def test_dashboard_password_prints_an_argon2_hash() -> None:
    done = subprocess.run([str(APPLIANCE), "dashboard-password"], input="correct horse\n", capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert PasswordHasher().verify(done.stdout.strip(), "correct horse")
    short = subprocess.run([str(APPLIANCE), "dashboard-password"], input="short\n", capture_output=True, text=True,
                           timeout=60)
    assert short.returncode == 1 and "at least 8" in short.stderr


def test_the_vendored_viewer_library_is_the_pinned_one() -> None:
    done = subprocess.run([str(ROOT / "scripts" / "vendor-niivue"), "--check"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    licence = (ROOT / "appliance/dashboard/static/vendor/niivue/LICENSE").read_text()
    assert "BSD 2-Clause License" in licence and "NiiVue 0.69.0" in licence
