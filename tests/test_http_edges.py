"""The HTTP server's edges: who the client is behind a proxy, which Host names
are served, what the server says about itself, and that nothing answers an
HTML 500. Against the daemon's real HTTP server on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
import structlog.testing
from aiohttp import web

from gateway.api.connections import serve
from gateway.api.http import build_app
from gateway.dashboard_auth import hash_password
from gateway.edge.proxies import TrustedProxies
from tests.conftest import Running

LEGACY = "/Integra/resources/SMS/SendSMS"
FORM = {"destination": "098344484", "message": "hola"}
PASSWORD = "correct horse battery"
USERS = {"users": [{"name": "admin", "password_hash": hash_password(PASSWORD)}]}
BEHIND_PROXY = {"trusted_proxies": ["127.0.0.0/8", "::1/128"]}


async def status_of(gw: Running, method: str, path: str, **kw: Any) -> int:
    async with gw.session.request(method, gw.url + path, **kw) as r:
        return r.status


# -- who is the client ---------------------------------------------------------


def test_forwarded_address_is_believed_only_from_a_trusted_proxy() -> None:
    proxies = TrustedProxies(["127.0.0.1/32", "10.9.0.0/16"])
    xff = "X-Forwarded-For"
    # No header: the peer, fit for trust decisions.
    c = proxies.client("::ffff:127.0.0.1", {})
    assert c.address == "127.0.0.1" and c.vouched
    # A header from a stranger: the stranger, and nothing may trust it.
    c = proxies.client("192.0.2.7", {xff: "127.0.0.1"})
    assert c.address == "192.0.2.7" and not c.vouched
    # From our proxy: the rightmost address that is not one of our proxies;
    # what the client wrote to the left of it proves nothing.
    c = proxies.client("127.0.0.1", {xff: "127.0.0.1, 203.0.113.9, 10.9.1.1"})
    assert c.address == "203.0.113.9" and c.vouched
    # Our proxy forwarding the proxy host's own request.
    assert proxies.client("127.0.0.1", {xff: "127.0.0.1"}).address == "127.0.0.1"
    # Only the configured header: a client can add the others itself.
    c = proxies.client("127.0.0.1", {"Forwarded": "for=10.1.1.1"})
    assert c.address == "127.0.0.1" and not c.vouched
    rfc = TrustedProxies(["127.0.0.1/32"], "forwarded")
    c = rfc.client("127.0.0.1",
                   {"Forwarded": 'for=192.0.2.60;proto=https, for="[2001:db8::17]:4711"'})
    assert c.address == "2001:db8::17" and c.vouched
    assert rfc.client("::ffff:127.0.0.1", {"Forwarded": "for=unknown"}).vouched is False


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
async def test_a_proxied_legacy_call_needs_a_key(gateway: Running, header: str) -> None:
    # A reverse proxy on this host: every caller's peer is 127.0.0.1.
    assert await status_of(gateway, "POST", LEGACY, data=FORM) == 200
    value = "for=198.51.100.4" if header == "Forwarded" else "198.51.100.4"
    assert await status_of(gateway, "POST", LEGACY, data=FORM, headers={header: value}) == 401
    assert await status_of(gateway, "POST", LEGACY, data=FORM,
                           headers={header: value, **gateway.headers()}) == 200


async def test_a_trusted_proxy_names_the_client_for_open_networks(make_gateway) -> None:
    gw = await make_gateway(server={**BEHIND_PROXY, "legacy_open_networks": ["10.1.0.0/16"]})
    xff = "X-Forwarded-For"
    assert await status_of(gw, "POST", LEGACY, data=FORM, headers={xff: "10.1.2.3"}) == 200
    assert await status_of(gw, "POST", LEGACY, data=FORM, headers={xff: "203.0.113.9"}) == 401
    # A client that writes the open address itself is still itself.
    assert await status_of(gw, "POST", LEGACY, data=FORM,
                           headers={xff: "10.1.2.3, 203.0.113.9"}) == 401
    # /metrics: the proxy's own host is local, its callers are not.
    assert await status_of(gw, "GET", "/metrics") == 200
    assert await status_of(gw, "GET", "/metrics", headers={xff: "203.0.113.9"}) == 401


async def bad_logins_then_right(gw: Running, abuser: str, user: str) -> tuple[list[int], int]:
    async def login(source: str, password: str) -> int:
        async with gw.session.post(f"{gw.url}/dashboard/login",
                                   headers={"X-Forwarded-For": source},
                                   json={"user": "admin", "password": password}) as r:
            return r.status
    wrong = [await login(abuser, "nope") for _ in range(11)]
    return wrong, await login(user, PASSWORD)


async def test_one_abuser_behind_a_trusted_proxy_locks_out_only_itself(make_gateway) -> None:
    gw = await make_gateway(server=BEHIND_PROXY, dashboard=USERS)
    wrong, right = await bad_logins_then_right(gw, "203.0.113.66", "198.51.100.7")
    assert wrong[:10] == [401] * 10 and wrong[10] == 429
    assert right == 200


async def test_without_trusted_proxies_the_proxy_is_one_client(make_gateway) -> None:
    # What the setting is for: an untrusted proxy's callers share its address.
    gw = await make_gateway(dashboard=USERS)
    wrong, right = await bad_logins_then_right(gw, "203.0.113.66", "198.51.100.7")
    assert wrong[10] == 429 and right == 429


async def test_short_link_misses_are_limited_per_client_behind_a_proxy(make_gateway) -> None:
    gw = await make_gateway(server=BEHIND_PROXY)
    guess = [await status_of(gw, "GET", f"/r/nosuchcode{i}", allow_redirects=False,
                             headers={"X-Forwarded-For": "203.0.113.66"}) for i in range(31)]
    assert guess[:30] == [404] * 30 and guess[30] == 429
    assert await status_of(gw, "GET", "/r/nosuchcode", allow_redirects=False,
                           headers={"X-Forwarded-For": "198.51.100.7"}) == 404


# -- Host, Server, /readyz ------------------------------------------------------


async def test_a_foreign_host_name_cannot_reach_loopback_doors(gateway: Running) -> None:
    evil = {"Host": "rebind.evil.example"}
    for method, path, kw in [("POST", LEGACY, {"data": FORM}), ("GET", "/metrics", {}),
                             ("GET", "/api/v1/stats", {}), ("GET", "/", {}),
                             ("GET", "/readyz", {})]:
        async with gateway.session.request(method, gateway.url + path, headers=evil,
                                           **kw) as r:
            assert r.status == 421, path
            assert (await r.json())["field"] == "Host"
    port = gateway.url.rsplit(":", 1)[1]
    for good in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST.", f"[::1]:{port}",
                 "192.0.2.10"):
        assert await status_of(gateway, "GET", "/metrics", headers={"Host": good}) == 200, good
    # Short links are public: reached under any name, even a retired one.
    assert await status_of(gateway, "GET", "/r/nosuchcode", headers=evil) == 404


async def test_allowed_hosts_adds_names_or_lets_any_through(make_gateway) -> None:
    gw = await make_gateway(server={"allowed_hosts": ["sms.example.com", "*.corp.example"],
                                    "public_base_url": "https://links.example.net"})
    for host, status in [("sms.example.com", 200), ("a.corp.example:8080", 200),
                         ("corp.example", 421), ("localhost", 421)]:
        assert await status_of(gw, "GET", "/metrics", headers={"Host": host}) == status, host
    anyone = await make_gateway(server={"allowed_hosts": ["*"]})
    assert await status_of(anyone, "GET", "/metrics",
                           headers={"Host": "whatever.example"}) == 200


async def test_public_base_url_host_is_served_by_default(make_gateway) -> None:
    gw = await make_gateway(server={"public_base_url": "https://sms.example.com/base"})
    assert await status_of(gw, "GET", "/healthz", headers={"Host": "sms.example.com"}) == 200


async def test_server_header_names_no_versions(gateway: Running) -> None:
    for path in ("/healthz", "/no/such/route", "/api/v1/messages/1"):
        async with gateway.session.get(gateway.url + path) as r:
            assert r.headers["Server"] == "smsgw", path
    head, _ = await raw(gateway, b"GARBAGE\r\n\r\n")
    assert b"\r\nServer: smsgw\r\n" in head and b"aiohttp" not in head


async def test_readyz_details_only_for_operators(make_gateway) -> None:
    gw = await make_gateway(server={"metrics_token": "t0ken"})
    async with gw.session.get(gw.url + "/readyz") as r:
        assert r.status == 200 and "channels_up" in await r.json()
    outside = {"X-Forwarded-For": "198.51.100.4"}
    async with gw.session.get(gw.url + "/readyz", headers=outside) as r:
        assert r.status == 200 and await r.json() == {"ready": True}
    async with gw.session.get(gw.url + "/readyz",
                              headers={**outside, "Authorization": "Bearer t0ken"}) as r:
        assert "problems" in await r.json()


# -- no HTML 500 ----------------------------------------------------------------


async def raw(gw: Running, request: bytes) -> tuple[bytes, bytes]:
    host, port = gw.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
    b"POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n",
], ids=["request-line", "header-too-long", "bad-header-name", "bad-length"])
async def test_requests_aiohttp_refuses_answer_json(gateway: Running,
                                                    request_bytes: bytes) -> None:
    head, body = await raw(gateway, request_bytes)
    assert head.split(b" ")[1] in (b"400", b"413", b"431"), head
    assert b"application/json" in head
    assert b'"error"' in body and b"Traceback" not in body


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_an_unexpected_exception_is_a_json_500_with_an_id(gateway: Running) -> None:
    # The daemon's own application and middlewares, plus one route that fails
    # the way a bug would; served the way the daemon serves.
    async def broken(request: web.Request) -> web.Response:
        raise KeyError("a bug")

    assert gateway.app.services is not None
    app = build_app(gateway.app.services, extra_routes=[web.get("/boom", broken)])
    runner, bound = await serve(app, gateway.app.settings.server.model_copy(
        update={"port": 0}), shutdown_timeout_s=1)
    try:
        host, port = bound[0]
        with structlog.testing.capture_logs() as logs:
            async with aiohttp.ClientSession() as s, \
                    s.get(f"http://{host}:{port}/boom", headers={"Accept": "text/html"}) as r:
                assert r.status == 500 and r.content_type == "application/json"
                body = await r.json()
        assert body["error"] == "internal error" and len(body["id"]) == 16
        assert "KeyError" not in str(body)
        lines = [e for e in logs if e["event"] == "http.internal_error"]
        assert len(lines) == 1 and lines[0]["id"] == body["id"]
        assert lines[0]["path"] == "/boom" and lines[0]["method"] == "GET"
    finally:
        await runner.cleanup()

