"""Taking access back without a restart: API keys revoked, tenants disabled
and removed, through the admin API (this daemon) and the CLI (another
process), against a running daemon on each backend."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from gateway.auth import hash_key
from spool.base import State
from tests.conftest import Running
from tests.proc import smsgw, write_config


async def _status(gw: Running, key: str) -> int:
    async with gw.session.get(f"{gw.url}/api/v1/campaigns", headers=gw.headers(key)) as r:
        return r.status


async def _call(gw: Running, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with gw.session.request(method, gw.url + path, headers=gw.headers(), **kw) as r:
        return r.status, await r.json()


async def test_a_key_revoked_through_the_api_is_refused_on_its_next_request(
        make_gateway: Any) -> None:
    gw = await make_gateway()
    status, made = await _call(gw, "POST", "/api/v1/tenants/other/keys", json={"label": "new"})
    assert status == 201 and made["id"] == hash_key(made["key"])[:12]
    assert await _status(gw, made["key"]) == 200  # now in the 30 s key cache
    status, listed = await _call(gw, "GET", "/api/v1/tenants/other/keys")
    assert made["id"] in {k["id"] for k in listed["keys"]} and len(listed["keys"]) == 2
    status, body = await _call(gw, "DELETE", f"/api/v1/tenants/other/keys/{made['id']}")
    assert status == 200 and body == {"revoked": 1}
    assert await _status(gw, made["key"]) == 401
    assert await _status(gw, gw.other_key) == 200, "the tenant's other key still works"
    status, _ = await _call(gw, "DELETE", f"/api/v1/tenants/other/keys/{made['id']}")
    assert status == 404
    async with gw.session.get(f"{gw.url}/api/v1/tenants",
                              headers=gw.headers(gw.other_key)) as r:
        assert r.status == 403, "only the operator's tenant manages tenants"


async def test_a_disabled_tenant_is_refused_until_enabled(make_gateway: Any) -> None:
    gw = await make_gateway()
    assert await _status(gw, gw.other_key) == 200
    status, body = await _call(gw, "POST", "/api/v1/tenants/other/disable")
    assert status == 200 and body["state"] == "disabled"
    assert await _status(gw, gw.other_key) == 401
    status, body = await _call(gw, "POST", "/api/v1/tenants/default/disable")
    assert status == 400 and body["field"] == "name"
    status, body = await _call(gw, "POST", "/api/v1/tenants/other/enable")
    assert status == 200 and body["state"] == "active"
    assert await _status(gw, gw.other_key) == 200


async def test_remove_refuses_unfinished_work_unless_forced_and_keeps_history(
        make_gateway: Any) -> None:
    gw = await make_gateway()
    other = gw.headers(gw.other_key)
    async with gw.session.post(f"{gw.url}/api/v1/campaigns", headers=other,
                               json={"name": "held", "enabled": False}) as r:
        assert r.status == 201
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=other, json={
            "destination": "098344484", "message": "hola", "campaign": "held"}) as r:
        assert r.status == 202
        mid = (await r.json())["messages"][0]["id"]
    status, body = await _call(gw, "DELETE", "/api/v1/tenants/other")
    assert status == 409 and "1 unfinished" in body["error"]
    assert await _status(gw, gw.other_key) == 200, "a refused removal changes nothing"
    status, body = await _call(gw, "DELETE", "/api/v1/tenants/other?force=true")
    assert status == 200 and body == {"removed": "other", "cancelled": 1}
    assert await _status(gw, gw.other_key) == 401
    message = await gw.store.get_message(None, mid)
    owner = await gw.store.tenant_by_name("other")
    assert message.state == State.CANCELLED and message.tenant == owner.id and owner.removed
    assert await gw.store.list_api_keys(owner.id) == []
    status, body = await _call(gw, "GET", "/api/v1/tenants")
    assert {"name": "other", "state": "removed"}.items() <= \
        next(t for t in body["tenants"] if t["name"] == "other").items()
    status, _ = await _call(gw, "DELETE", "/api/v1/tenants/default")
    assert status == 400


async def _refused_within(gw: Running, key: str, limit_s: float) -> float:
    """Seconds until `key` is refused; fails after `limit_s`."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        if await _status(gw, key) == 401:
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"key still accepted after {limit_s}s")


async def test_the_cli_revokes_and_disables_in_a_running_daemon_within_seconds(
        make_gateway: Any, storage_url: str, tmp_path: Path) -> None:
    gw = await make_gateway()  # keys cached for 30 s
    cfg = write_config(tmp_path / "cli.toml", {
        "storage": {"url": storage_url}, "spool_folder": {"path": str(tmp_path / "spool")},
        "channels": [{"name": "loop-a", "driver": "loopback"}]})
    out = await asyncio.to_thread(smsgw, cfg, "tenant", "key", "add", "other", "--label", "b")
    spare = out.stdout.split("(shown once): ")[1].split()[0]
    for key in (gw.other_key, spare):
        assert await _status(gw, key) == 200
    listed = (await asyncio.to_thread(smsgw, cfg, "tenant", "key", "list", "other")).stdout
    assert hash_key(spare)[:12] in listed and " b\n" in listed
    revoked = await asyncio.to_thread(smsgw, cfg, "tenant", "key", "revoke", "other",
                                      "--id", hash_key(spare)[:12])
    assert "revoked 1" in revoked.stdout
    assert await _refused_within(gw, spare, 5) < 3.0
    assert await _status(gw, gw.other_key) == 200
    await asyncio.to_thread(smsgw, cfg, "tenant", "disable", "other")
    assert await _refused_within(gw, gw.other_key, 5) < 3.0
    listing = (await asyncio.to_thread(smsgw, cfg, "tenant", "list")).stdout
    assert "other" in listing and "disabled" in listing
    refused = await asyncio.to_thread(smsgw, cfg, "tenant", "disable", "default", check=False)
    assert refused.returncode == 1 and "operator" in refused.stderr


def test_cli_remove_refuses_unfinished_messages_unless_forced(tmp_path: Path) -> None:
    db = tmp_path / "spool.db"
    cfg = write_config(tmp_path / "smsgw.toml", {
        "storage": {"url": f"sqlite:///{db}"}, "spool_folder": {"path": str(tmp_path / "sp")},
        "channels": [{"name": "loop-a", "driver": "loopback"}]})
    smsgw(cfg, "tenant", "add", "acme")
    smsgw(cfg, "campaign", "create", "later", "--stopped", "--tenant", "acme")
    smsgw(cfg, "send", "--to", "098344484", "--text", "x", "--campaign", "later",
          "--tenant", "acme")
    refused = smsgw(cfg, "tenant", "remove", "acme", check=False)
    assert refused.returncode == 1 and "1 unfinished" in refused.stderr
    assert "1 unfinished message(s) cancelled" in \
        smsgw(cfg, "tenant", "remove", "acme", "--force").stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT state FROM sms_spool").fetchall() == [(State.CANCELLED,)]
        assert conn.execute("SELECT count(*) FROM api_keys k JOIN tenants t ON t.id = k.tenant "
                            "WHERE t.name = 'acme'").fetchone() == (0,)
    assert "removed" in smsgw(cfg, "tenant", "list").stdout
    again = smsgw(cfg, "tenant", "key", "acme", check=False)
    assert again.returncode == 1 and "removed" in again.stderr


def test_a_bad_webhook_url_stores_no_tenant(tmp_path: Path) -> None:
    db = tmp_path / "spool.db"
    cfg = write_config(tmp_path / "smsgw.toml", {
        "storage": {"url": f"sqlite:///{db}"}, "spool_folder": {"path": str(tmp_path / "sp")},
        "channels": [{"name": "loop-a", "driver": "loopback"}]})
    for url in ("file:///etc/passwd", "http://", "https:// spaced.example/"):
        bad = smsgw(cfg, "tenant", "add", "acme", "--webhook-url", url, check=False)
        assert bad.returncode == 1 and "webhook url" in bad.stderr, bad.stderr
        assert "API key" not in bad.stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM tenants WHERE name = 'acme'").fetchone() == (0,)
    out = smsgw(cfg, "tenant", "add", "acme", "--webhook-url", "https://hooks.example/in").stdout
    secret = out.split("signing secret (shown once): ")[1].split()[0]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT webhook_url, webhook_secret FROM tenants WHERE name = 'acme'"
                            ).fetchone() == ("https://hooks.example/in", secret)
