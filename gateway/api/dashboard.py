"""The dashboard at `/`: a static page (no assets from the internet) that logs
an admin in and then uses the JSON API as the operator's tenant.

A valid session cookie stands in for the operator's X-Api-Key on
`/api/v1/...`; a request that changes something must also carry the
session's CSRF token in `X-CSRF-Token` and, when the browser says where it
comes from (`Origin`), come from this host.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from gateway.api.http import ACTING_TENANT, SERVICES, Handler, client_address, json_body
from gateway.dashboard_auth import (
    COOKIE,
    LoginThrottle,
    Session,
    Sessions,
    SessionSigner,
    hash_password,
    verify_password,
)
from gateway.intake import IntakeError
from spool.base import Tenant

routes = web.RouteTableDef()
STATIC = Path(__file__).resolve().parent.parent / "static"
SESSIONS = web.AppKey("dashboard_sessions", Sessions)
THROTTLE = web.AppKey("dashboard_throttle", LoginThrottle)
SESSION: Any = (web.RequestKey("dashboard_session", Session)  # aiohttp >= 3.14
                if hasattr(web, "RequestKey") else "smsgw.dashboard_session")
OPERATOR = Tenant(id=1, name="default")  # created by the first migration
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
# Compared against when the user is unknown, so a miss costs as long as a hit.
_DUMMY_HASH = hash_password("smsgw-no-such-user")
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
}


def setup(app: web.Application) -> None:
    services = app[SERVICES]
    cfg = services.settings.dashboard
    app[SESSIONS] = Sessions(SessionSigner(cfg.session_secret, cfg.session_ttl_s),
                             services.store, [u.name for u in cfg.users])
    app[THROTTLE] = LoginThrottle()
    app.on_startup.append(_forget_removed_users)
    if cfg.enabled:
        app.add_routes(routes)
        app.router.add_static("/static/", STATIC, append_version=False)


@web.middleware
async def session(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Integrations carry an API key and no cookie: this costs them one lookup.
    if COOKIE in request.cookies and not request.headers.get("X-Api-Key") \
            and request.path.startswith(("/api/v1/", "/dashboard/")) and SESSIONS in request.app:
        found = await request.app[SESSIONS].check(request.cookies.get(COOKIE))
        if found is not None:
            if request.method not in _SAFE:
                _check_csrf(request, found)
            request[SESSION] = found
            request[ACTING_TENANT] = OPERATOR
    return await handler(request)


def _check_csrf(request: web.Request, found: Session) -> None:
    if not _same_origin(request):
        raise web.HTTPForbidden(reason="cross-site request refused")
    if request.headers.get("X-CSRF-Token") != found.csrf:
        raise web.HTTPForbidden(reason="missing or wrong X-CSRF-Token")


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    # Compare hosts only: behind a TLS proxy the scheme differs on each side.
    return origin is None or urlsplit(origin).netloc == request.host


@routes.get("/")
async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)


@routes.get("/dashboard/session")
async def whoami(request: web.Request) -> web.Response:
    found = request.get(SESSION)
    if not isinstance(found, Session):
        users = bool(request.app[SERVICES].settings.dashboard.users)
        return web.json_response({"error": "not logged in", "users_configured": users},
                                 status=401, headers={"Cache-Control": "no-store"})
    return web.json_response({"user": found.user, "csrf": found.csrf,
                              "expires_in_s": int(found.expires_at - time.time())},
                             headers={"Cache-Control": "no-store"})


@routes.post("/dashboard/login")
async def login(request: web.Request) -> web.Response:
    # JSON only: a foreign page cannot send it without a CORS preflight we never grant.
    if request.content_type != "application/json" or not _same_origin(request):
        raise web.HTTPForbidden(reason="login must be posted as JSON from this page")
    body = await json_body(request)
    user, password = (body.get("user"), body.get("password")) if isinstance(body, dict) \
        else (None, None)
    if not isinstance(user, str) or not isinstance(password, str):
        raise IntakeError("user and password are required", field="user")
    source = login_source(request)
    # Counted before the slow check, in the same loop step as the limit test.
    attempt = request.app[THROTTLE].attempt(source)
    if attempt is None:
        raise web.HTTPTooManyRequests(reason="too many failed logins; wait a few minutes",
                                      headers={"Retry-After": "300"})
    if not await _verify(request, user, password):
        raise web.HTTPUnauthorized(reason="wrong user or password")
    request.app[THROTTLE].succeeded(source, attempt)
    cookie, issued = await request.app[SESSIONS].start(user)
    response = web.json_response({"user": user, "csrf": issued.csrf})
    cfg = request.app[SERVICES].settings.dashboard
    response.set_cookie(COOKIE, cookie, max_age=int(cfg.session_ttl_s), path="/",
                        httponly=True, samesite="Strict", secure=cfg.secure_cookie)
    return response


def login_source(request: web.Request) -> str:
    """Whom the login throttle counts: the one place that says so."""
    return client_address(request) or "?"


async def _forget_removed_users(app: web.Application) -> None:
    await app[SESSIONS].forget_removed_users()


async def _verify(request: web.Request, user: str, password: str) -> bool:
    users = {u.name: u.password_hash for u in request.app[SERVICES].settings.dashboard.users}
    stored = users.get(user, _DUMMY_HASH)
    # scrypt takes tens of milliseconds of CPU: off the event loop.
    ok = await asyncio.to_thread(verify_password, password, stored)
    return ok and user in users


@routes.post("/dashboard/logout")
async def logout(request: web.Request) -> web.Response:
    found = request.get(SESSION)
    if isinstance(found, Session):
        await request.app[SESSIONS].end(found)  # a copy of the cookie is now refused
    response = web.json_response({"logged_out": True})
    response.del_cookie(COOKIE, path="/")
    return response
