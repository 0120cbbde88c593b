"""Dashboard sessions end server-side (logout, a user taken out of the
config), survive a restart only when a secret keeps them, and the login
throttle holds under a concurrent burst; against the real daemon."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp

from gateway.dashboard_auth import COOKIE, hash_password
from tests.conftest import Running

PASSWORD = "correct horse battery"
ADMIN = {"name": "admin", "password_hash": hash_password(PASSWORD)}


async def _login(gw: Running, password: str = PASSWORD,
                 session: aiohttp.ClientSession | None = None) -> tuple[int, str | None, str]:
    """(status, session cookie, csrf) of one login."""
    async with (session or gw.session).post(f"{gw.url}/dashboard/login",
                                            json={"user": "admin", "password": password}) as r:
        body = await r.json()
        cookie = r.cookies.get(COOKIE)
        return r.status, cookie.value if cookie else None, body.get("csrf", "")


async def _with_cookie(gw: Running, cookie: str, path: str = "/dashboard/session") -> int:
    """A request that carries only this cookie, as a replaying attacker would."""
    async with aiohttp.ClientSession() as fresh, fresh.get(
            gw.url + path, headers={"Cookie": f"{COOKIE}={cookie}"}) as r:
        return r.status


async def _logout(gw: Running, cookie: str, csrf: str) -> None:
    async with aiohttp.ClientSession() as fresh, fresh.post(
            f"{gw.url}/dashboard/logout",
            headers={"Cookie": f"{COOKIE}={cookie}", "X-CSRF-Token": csrf}) as r:
        assert r.status == 200


async def test_a_cookie_replayed_after_logout_is_refused(make_gateway: Any) -> None:
    gw = await make_gateway(dashboard={"users": [ADMIN]})
    status, cookie, csrf = await _login(gw)
    assert status == 200 and cookie
    assert await _with_cookie(gw, cookie) == 200
    assert await _with_cookie(gw, cookie, "/api/v1/campaigns") == 200
    await _logout(gw, cookie, csrf)
    assert await _with_cookie(gw, cookie) == 401
    assert await _with_cookie(gw, cookie, "/api/v1/campaigns") == 401


async def test_kept_sessions_outlive_a_restart_but_not_logout_or_the_users_removal(
        make_gateway: Any) -> None:
    kept = {"users": [ADMIN], "session_secret": "a long configured secret"}
    first = await make_gateway(dashboard=kept)
    _, stays, _ = await _login(first)
    _, leaves, csrf = await _login(first)
    assert stays and leaves
    await _logout(first, leaves, csrf)
    # Another daemon with the same config and store: a restart, or a second node.
    second = await make_gateway(dashboard=kept)
    assert await _with_cookie(second, stays) == 200
    assert await _with_cookie(second, leaves) == 401
    # The admin is taken out of the config: at start its sessions end everywhere.
    ops = {"name": "ops", "password_hash": ADMIN["password_hash"]}
    third = await make_gateway(dashboard={**kept, "users": [ops]})
    assert await _with_cookie(third, stays) == 401
    assert await _with_cookie(second, stays) == 401


async def test_a_burst_of_wrong_logins_never_gets_past_the_limit(make_gateway: Any) -> None:
    gw = await make_gateway(dashboard={"users": [ADMIN]})
    connector = aiohttp.TCPConnector(limit=0)  # all 150 at once
    async with aiohttp.ClientSession(connector=connector) as burst:
        results = await asyncio.gather(*(_login(gw, f"guess{i}", burst) for i in range(150)))
    statuses = Counter(status for status, _, _ in results)
    assert statuses == {401: 10, 429: 140}, statuses
    status, cookie, _ = await _login(gw)
    assert status == 429 and cookie is None, "the right password inside the window waits too"


async def test_a_mixed_burst_lets_at_most_the_limit_be_checked(make_gateway: Any) -> None:
    gw = await make_gateway(dashboard={"users": [ADMIN]})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as burst:
        guesses = [f"guess{i}" for i in range(149)]
        guesses.insert(75, PASSWORD)
        results = await asyncio.gather(*(_login(gw, g, burst) for g in guesses))
    statuses = Counter(status for status, _, _ in results)
    assert statuses[429] >= 140 and statuses[401] + statuses[200] <= 10, statuses
