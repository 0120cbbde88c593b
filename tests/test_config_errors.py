"""A configuration the daemon cannot use stops it with exit 78 and one line
naming the key: also for environment values that look like JSON, and
without ever printing a password hash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.dashboard_auth import hash_password
from tests.conftest import ROOT
from tests.proc import write_config


def _run(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "-c", str(config), "run"],
                          capture_output=True, text=True, cwd=ROOT, timeout=30,
                          env={**os.environ, **env})


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return write_config(tmp_path / "smsgw.toml", {
        "server": {"port": 0}, "storage": {"url": f"sqlite:///{tmp_path / 'spool.db'}"},
        "spool_folder": {"path": str(tmp_path / "spool")},
        "channels": [{"name": "loop-a", "driver": "loopback"}]})


@pytest.mark.parametrize(("name", "value", "key"), [
    ("SMSGW_SERVER__PORT", "{", "server.port"),
    ("SMSGW_SERVER__LEGACY_OPEN_NETWORKS", "[10.0.0.0/8", "server.legacy_open_networks"),
    ("SMSGW_SERVER__LEGACY_OPEN_NETWORKS", "[" * 5000, "server.legacy_open_networks"),
    ("SMSGW_DISPATCHER__BATCH_SIZE", '{"a": 1}', "dispatcher.batch_size"),
])
def test_an_environment_value_that_is_not_json_exits_78_naming_the_key(
        cfg: Path, name: str, value: str, key: str) -> None:
    result = _run(cfg, **{name: value})
    assert result.returncode == 78, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and "Traceback" not in result.stderr
    assert len(lines[0]) < 300


def test_a_secret_that_starts_like_json_is_taken_as_text(cfg: Path) -> None:
    from gateway.settings import load_settings

    settings = load_settings(cfg, {"SMSGW_DASHBOARD__SESSION_SECRET": "{not json, a secret"})
    assert settings.dashboard.session_secret == "{not json, a secret"


@pytest.mark.parametrize("bad", [
    "scrypt$16384$8$1$c2VjcmV0c2FsdA$not!base64!SECRETPART",
    "scrypt$SECRETPART$8$1$c2FsdA$aGFzaA",
    "pbkdf2_sha256$SECRETPART$c2FsdA$aGFzaA",
    hash_password("pw").replace("scrypt$16384", "scrypt$16") + "SECRETPART",
])
def test_a_bad_password_hash_is_refused_without_echoing_it(tmp_path: Path, bad: str) -> None:
    config = tmp_path / "smsgw.toml"
    config.write_text(f'[server]\nport = 0\n[storage]\nurl = "sqlite:///{tmp_path}/spool.db"\n'
                      f'[[dashboard.users]]\nname = "admin"\npassword_hash = "{bad}"\n')
    for result in (_run(config), _run(config, SMSGW_DASHBOARD__USERS=(
            f'[{{"name": "admin", "password_hash": "{bad}"}}]'))):
        assert result.returncode == 78, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "dashboard.users[0].password_hash" in lines[0]
        assert "SECRETPART" not in result.stderr and bad[:20] not in result.stderr
