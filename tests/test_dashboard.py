"""Dashboard logins, sessions and CSRF, the page itself, and `smsgw status`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.dashboard_auth import SessionSigner, check_hash_format, hash_password, verify_password
from gateway.settings import ConfigError, settings_from_dict
from tests.conftest import ROOT, Running
from tests.proc import write_config
from tests.test_stats import create, send

PASSWORD = "correct horse battery"
HASH = hash_password(PASSWORD)
USERS = {"users": [{"name": "admin", "password_hash": HASH}], "sample_interval_s": 0.05}


def test_password_hashes() -> None:
    assert verify_password(PASSWORD, HASH) and not verify_password("wrong", HASH)
    assert HASH.startswith("scrypt$16384$8$1$") and hash_password(PASSWORD) != HASH
    derived = hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", 200000)
    legacy = "pbkdf2_sha256$200000$c2FsdA$" + base64.urlsafe_b64encode(derived).decode()
    assert verify_password("pw", check_hash_format(legacy))
    for bad in ("plain", "scrypt$3$8$1$AA$AA", "pbkdf2_sha256$10$AA$AA"):
        with pytest.raises(ValueError):
            check_hash_format(bad)


def test_config_rejects_an_unusable_hash() -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_dict({"dashboard": {"users": [{"name": "a", "password_hash": "x"}]}})
    assert err.value.key == "dashboard.users[0].password_hash"


def test_session_cookies_are_signed_and_expire() -> None:
    now = [1000.0]
    signer = SessionSigner("k", 60, clock=lambda: now[0])
    cookie, session = signer.issue("admin")
    assert signer.verify(cookie) == session
    body, sig = cookie.rsplit(".", 1)
    assert signer.verify(body[:-2] + "xx." + sig) is None
    assert SessionSigner("other", 60).verify(cookie) is None
    now[0] += 61
    assert signer.verify(cookie) is None


async def login(gw: Running, session: aiohttp.ClientSession,
                password: str = PASSWORD) -> tuple[int, dict[str, Any]]:
    async with session.post(f"{gw.url}/dashboard/login",
                            json={"user": "admin", "password": password}) as r:
        return r.status, await r.json()


async def test_login_session_and_csrf(make_gateway) -> None:
    gw = await make_gateway(dashboard=USERS)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(f"{gw.url}/api/v1/stats",
                               headers={"X-Forwarded-For": "192.0.2.1"}) as r:
            assert r.status == 401
        assert (await login(gw, browser, "nope"))[0] == 401
        status, body = await login(gw, browser)
        assert status == 200 and body["user"] == "admin"
        csrf = body["csrf"]
        async with browser.get(f"{gw.url}/dashboard/session") as r:
            assert (await r.json())["csrf"] == csrf
        async with browser.get(f"{gw.url}/api/v1/stats",
                               headers={"X-Forwarded-For": "192.0.2.1"}) as r:
            names = {c["name"] for c in (await r.json())["campaigns"]}
        assert "default" in names
        stop = f"{gw.url}/api/v1/campaigns/default/stop"
        async with browser.post(stop) as r:
            assert r.status == 403 and "CSRF" in (await r.json())["error"]
        async with browser.post(stop, headers={"X-CSRF-Token": csrf,
                                               "Origin": "http://evil.example"}) as r:
            assert r.status == 403
        async with browser.post(stop, headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 200 and (await r.json())["enabled"] is False
        async with browser.post(f"{gw.url}/dashboard/logout",
                                headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 200
        async with browser.get(f"{gw.url}/dashboard/session") as r:
            assert r.status == 401


async def test_login_cookie_flags_and_form_posts_refused(make_gateway) -> None:
    gw = await make_gateway(dashboard=USERS)
    async with gw.session.post(f"{gw.url}/dashboard/login",
                               json={"user": "admin", "password": PASSWORD}) as r:
        cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    async with gw.session.post(f"{gw.url}/dashboard/login",
                               data={"user": "admin", "password": PASSWORD}) as r:
        assert r.status == 403  # a cross-site <form> cannot log anyone in


async def test_repeated_failures_are_throttled(make_gateway) -> None:
    gw = await make_gateway(dashboard=USERS)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        statuses = [(await login(gw, browser, f"guess{i}"))[0] for i in range(11)]
        assert statuses[:10] == [401] * 10 and statuses[10] == 429
        assert (await login(gw, browser))[0] == 429


async def test_the_page_is_served_with_a_strict_policy(make_gateway) -> None:
    gw = await make_gateway(dashboard=USERS)
    async with gw.session.get(f"{gw.url}/") as r:
        assert r.status == 200
        page = await r.text()
        policy = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and r.headers["X-Frame-Options"] == "DENY"
    assert "/static/dashboard.js" in page and "http" not in page.split("<body>")[0]
    for asset in ("dashboard.js", "dashboard.css"):
        async with gw.session.get(f"{gw.url}/static/{asset}") as r:
            assert r.status == 200
            assert "https://" not in await r.text()  # nothing from the internet


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "-c", str(config), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


async def test_status_reads_the_daemon_then_the_database(make_gateway, tmp_path: Path,
                                                         storage_url: str) -> None:
    gw = await make_gateway()
    await create(gw, "promo", enabled=False)
    await send(gw, "promo", 2)
    port = int(gw.url.rsplit(":", 1)[1])
    cfg = write_config(tmp_path / "cli.toml", {
        "server": {"port": port}, "storage": {"url": storage_url},
        "channels": [{"name": "loop-a", "driver": "loopback"},
                     {"name": "loop-b", "driver": "loopback"}]})
    live = json.loads((await asyncio.to_thread(_cli, cfg, "status", "--json")).stdout)
    assert live["source"].startswith("daemon at") and live["live"] is True
    promo = next(c for c in live["campaigns"] if c["name"] == "promo")
    assert promo["status"] == "stopped" and promo["not_processed"] == 2
    table = (await asyncio.to_thread(_cli, cfg, "status")).stdout
    assert "promo" in table and "stopped" in table and "TO_PROCESS=2" in table
    assert "loop-a" in table and "Stopped: nothing is sent" in table

    offline_cfg = write_config(tmp_path / "off.toml", {
        "server": {"port": 1}, "storage": {"url": storage_url},
        "channels": [{"name": "loop-a", "driver": "loopback"}]})
    offline = json.loads((await asyncio.to_thread(_cli, offline_cfg, "status", "--json")).stdout)
    assert offline["source"].startswith("database") and offline["live"] is False
    assert next(c for c in offline["campaigns"] if c["name"] == "promo")["not_processed"] == 2
    assert offline["channels"][0]["status"] == "unknown"


def test_hash_password_command_makes_a_usable_hash(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "gateway", "dashboard", "hash-password",
                           "--stdin"], input="s3cret-pass\n", capture_output=True, text=True,
                          cwd=ROOT, timeout=60, check=True)
    made = done.stdout.strip()
    assert verify_password("s3cret-pass", made)
    short = subprocess.run([sys.executable, "-m", "gateway", "dashboard", "hash-password"],
                           input="short\n", capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert short.returncode == 1 and "8 characters" in short.stderr
