"""The systemd unit's contract: what the daemon and the docs rely on."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"
UNIT = SYSTEMD / "smsgw.service"


def _unit() -> configparser.ConfigParser:
    # Unit files repeat keys (DeviceAllow=, Environment=); configparser keeps
    # the last one, which is enough for single-valued keys.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def _all_values(key: str) -> list[str]:
    prefix = key + "="
    return [line[len(prefix):] for line in UNIT.read_text().splitlines()
            if line.startswith(prefix)]


def _lines(name: str) -> list[str]:
    text = (SYSTEMD / name).read_text()
    return [" ".join(line.split()) for line in text.splitlines()
            if line.strip() and not line.startswith("#")]


def test_service_lifecycle_contract() -> None:
    service = _unit()["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["ExecStart"] == "/usr/bin/env smsgw -c /etc/smsgw/smsgw.toml run"
    assert service["WatchdogSec"] == "30"
    assert service["Restart"] == "on-failure"
    assert service["RestartSec"] == "2"
    assert service["RestartPreventExitStatus"] == "78"
    assert service["TimeoutStopSec"] == "30"
    assert _unit()["Install"]["WantedBy"] == "multi-user.target"


def test_service_runs_unprivileged_in_its_state_directory() -> None:
    service = _unit()["Service"]
    assert (service["User"], service["Group"]) == ("smsgw", "smsgw")
    assert service["SupplementaryGroups"] == "dialout"
    assert service["StateDirectory"] == "smsgw"
    assert service["WorkingDirectory"] == "/var/lib/smsgw"
    assert service["ReadWritePaths"] == "/var/lib/smsgw"
    assert service["UMask"] == "0027"
    assert service["LimitNOFILE"] == "65536"
    assert service["EnvironmentFile"] == "-/etc/smsgw/smsgw.env"
    assert "SMSGW_CONFIG=/etc/smsgw/smsgw.toml" in _all_values("Environment")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "no"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("SystemCallArchitectures", "native"),
        ("SystemCallFilter", "@system-service"),
        ("CapabilityBoundingSet", ""),
    ],
)
def test_hardening(key: str, value: str) -> None:
    assert _unit()["Service"][key] == value


def test_only_modem_tty_classes_are_allowed() -> None:
    assert sorted(_all_values("DeviceAllow")) == ["char-ttyACM rw", "char-ttyUSB rw"]


def test_sysusers_creates_smsgw_in_dialout() -> None:
    lines = _lines("smsgw.sysusers")
    assert any(line.startswith("u smsgw ") for line in lines)
    assert "m smsgw dialout" in lines


def test_tmpfiles_creates_state_spool_and_config_dirs() -> None:
    lines = _lines("smsgw.tmpfiles")
    for sub in ("", "/spool", "/spool/incoming", "/spool/processed", "/spool/failed"):
        assert f"d /var/lib/smsgw{sub} 0750 smsgw smsgw -" in lines
    assert "d /etc/smsgw 0750 root smsgw -" in lines


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_accepts_the_unit() -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(UNIT)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "smsgw.service" not in result.stderr, result.stderr
