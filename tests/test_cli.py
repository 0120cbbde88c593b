"""The `smsgw` command line, run as a process against a real SQLite file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from spool import migrations
from tests.proc import smsgw, write_config


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return write_config(tmp_path / "smsgw.toml", {
        "storage": {"url": f"sqlite:///{tmp_path / 'spool.db'}"},
        "spool_folder": {"path": str(tmp_path / "spool")},
        "channels": [{"name": "loop-a", "driver": "loopback", "cost": 0.15},
                     {"name": "loop-b", "driver": "loopback", "cost": 0.25}],
    })


def test_migrate_is_idempotent(cfg: Path) -> None:
    latest = len(migrations.load("sqlite"))
    assert f"schema version {latest} (was 0)" in smsgw(cfg, "db", "migrate").stdout
    assert "up to date" in smsgw(cfg, "db", "migrate").stdout


def test_campaign_send_and_status(cfg: Path, tmp_path: Path) -> None:
    created = json.loads(smsgw(cfg, "campaign", "create", "test1", "--channels", "loop-b",
                               "--in-doubt", "hold").stdout)
    assert created["channels"] == ["loop-b"] and created["in_doubt"] == "hold"
    dup = smsgw(cfg, "campaign", "create", "test1", check=False)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    bad = smsgw(cfg, "campaign", "create", "t2", "--channels", "nope", check=False)
    assert bad.returncode == 1 and "unknown channel" in bad.stderr
    sent = json.loads(smsgw(cfg, "send", "--to", "098344484", "--text", "hola",
                            "--campaign", "test1").stdout)
    assert sent["state_name"] == "TO_PROCESS" and sent["destination"] == "+59898344484"
    smsgw(cfg, "campaign", "stop", "test1")
    listing = smsgw(cfg, "campaign", "list").stdout
    assert "test1" in listing and "stopped" in listing
    status = json.loads(smsgw(cfg, "status", "--json").stdout)
    [test1] = [c for c in status["campaigns"] if c["name"] == "test1"]
    assert test1["states"] == {"TO_PROCESS": 1} and test1["active"] is False
    assert test1["cost"] == 0
    table = smsgw(cfg, "status").stdout
    assert "test1" in table and "TO_PROCESS" in table
    one = json.loads(smsgw(cfg, "status", "--message", str(sent["id"])).stdout)
    assert one["history"][0]["state_name"] == "TO_PROCESS"
    unknown = smsgw(cfg, "send", "--to", "1", "--text", "x", "--campaign", "zz", check=False)
    assert unknown.returncode == 1 and "campaign" in unknown.stderr


def test_tenant_key_is_shown_once_and_stored_hashed(cfg: Path, tmp_path: Path) -> None:
    out = smsgw(cfg, "tenant", "add", "acme").stdout
    key = out.split("store it now): ")[1].split()[0]
    assert key.startswith("sgw_") and len(key) > 40
    with sqlite3.connect(tmp_path / "spool.db") as db:
        hashes = [r[0] for r in db.execute("SELECT key_hash FROM api_keys")]
    assert key not in hashes and len(hashes) == 1 and len(hashes[0]) == 64
    assert "acme" in smsgw(cfg, "tenant", "list").stdout


def test_blacklist_commands(cfg: Path, tmp_path: Path) -> None:
    smsgw(cfg, "campaign", "create", "promo")
    assert smsgw(cfg, "blacklist", "add", "098344484", "+59899111222").stdout.strip() == "added 2"
    assert smsgw(cfg, "blacklist", "add", "098344484", "--campaign", "promo").stdout.strip() \
        == "added 1"
    assert smsgw(cfg, "blacklist", "list").stdout.split() == ["+59898344484", "+59899111222"]
    assert smsgw(cfg, "blacklist", "remove", "+59899111222").stdout.strip() == "removed 1"
    dncr = tmp_path / "dncr.csv"
    dncr.write_text("phone;campaign\n099000111;\n099000222;promo\nabc;\n099000333;nosuch\n")
    result = smsgw(cfg, "blacklist", "import", str(dncr))
    assert "added 2 (of 2 valid rows; 2 rejected)" in result.stdout
    assert "line 4" in result.stderr and "line 5" in result.stderr
    assert smsgw(cfg, "blacklist", "list", "--campaign", "promo").stdout.split() == [
        "+59898344484", "+59899000222"]


def test_import_dry_run_then_real(cfg: Path, tmp_path: Path) -> None:
    smsgw(cfg, "blacklist", "add", "098000000")
    csv = tmp_path / "msgs.csv"
    csv.write_text("campaign,destination,message,priority\n"
                   "default,098344484,hello,1\n"
                   "default,098000000,blocked one,\n"
                   "default,12,bad number,\n"
                   "default,098344485," + "x" * 200 + ",\n"
                   "broken line\n")
    dry = smsgw(cfg, "import", str(csv), "--dry-run").stdout
    assert "would import 2, blocked 1, invalid 1, rejected 1" in dry
    # 1 + 2 segments; both channels in the default pool: mean price 0.20
    assert "segments 3, estimated cost 0.60" in dry
    with sqlite3.connect(tmp_path / "spool.db") as db:
        assert db.execute("SELECT count(*) FROM sms_spool").fetchone()[0] == 0
    real = smsgw(cfg, "import", str(csv)).stdout
    assert "imported 2, blocked 1, invalid 1, rejected 1" in real
    errors = (tmp_path / "msgs.errors.csv").read_text().splitlines()
    assert errors[0] == "line;state;reason;raw"
    assert [e.split(";")[:2] for e in errors[1:]] == [["3", "BLOCKED"], ["4", "INVALID"],
                                                      ["6", "REJECTED"]]
    with sqlite3.connect(tmp_path / "spool.db") as db:
        states = sorted(r[0] for r in db.execute("SELECT state FROM sms_spool"))
    assert states == [1, 1, 3, 7]


def test_tenant_webhook_prints_a_secret_once(cfg: Path, tmp_path: Path) -> None:
    smsgw(cfg, "tenant", "add", "hooks")
    out = smsgw(cfg, "tenant", "webhook", "hooks", "--url", "https://t.example/hook").stdout
    secret = out.split("signing secret (shown once): ")[1].split()[0]
    with sqlite3.connect(tmp_path / "spool.db") as db:
        url, stored = db.execute("SELECT webhook_url, webhook_secret FROM tenants "
                                 "WHERE name = 'hooks'").fetchone()
    assert url == "https://t.example/hook" and stored == secret
    bad = smsgw(cfg, "tenant", "webhook", "hooks", "--url", "ftp://x", check=False)
    assert bad.returncode == 1 and "http(s)" in bad.stderr
    assert "no longer sent" in smsgw(cfg, "tenant", "webhook", "hooks").stdout
