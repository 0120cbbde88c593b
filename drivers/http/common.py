"""What every HTTP-speaking driver shares: the client session, transport
failures as TransientError, `Retry-After`, and the public address of a hook.

Cloud drivers (twilio, whatsapp) and the generic `http` driver use these;
nothing here knows a provider.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict

from drivers.base import Health, TransientError


@dataclass(frozen=True, slots=True)
class Answer:
    """A provider's answer, read whole: what the sans-I/O classifiers take."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """`Retry-After` as seconds: a number, or an HTTP date (RFC 9110 §10.2.3)."""
    raw = headers.get("Retry-After")
    if not raw:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def public_hook_url(public_base_url: str, hook: str, sub: str = "") -> str:
    """Where a provider reaches hook `hook` from outside (behind any proxy)."""
    return f"{public_base_url.rstrip('/')}/hooks/{hook}{sub}"


def basic_auth(user: str, password: str) -> dict[str, str]:
    """The `Authorization` header for HTTP Basic (RFC 7617, UTF-8)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header, if well formed."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def new_session(request_timeout_s: float) -> aiohttp.ClientSession:
    # No connection limit of our own: the router already bounds concurrency.
    timeout = aiohttp.ClientTimeout(total=request_timeout_s)
    return aiohttp.ClientSession(timeout=timeout,
                                 connector=aiohttp.TCPConnector(limit=0))


@asynccontextmanager
async def transport_errors(provider: str) -> AsyncIterator[None]:
    """Turn what the network does (refused, reset, timed out) into TransientError.

    A timeout after the request left may still have been accepted by the
    provider: a retry can duplicate the message (at-least-once).
    """
    try:
        yield
    except TimeoutError as err:
        raise TransientError(f"{provider} did not answer in time", code="timeout") from err
    except aiohttp.ClientError as err:
        raise TransientError(f"{provider} unreachable: {err.__class__.__name__}: {err}",
                             code="transport") from err


async def fetch(session: aiohttp.ClientSession, provider: str, method: str, url: str,
                **kwargs: Any) -> Answer:
    """One request, read whole, with transport failures made transient."""
    async with transport_errors(provider), session.request(method, url, **kwargs) as resp:
        body = await resp.read()
        return Answer(resp.status, CIMultiDict(resp.headers), body)


class HttpChannelBase:
    """Lifecycle shared by channels that talk to a provider over HTTP: one
    client session, opened at start (or on first use), closed once."""

    name: str
    _opt: Any  # the driver's options; `request_timeout_s` is read here

    def _init_http(self, name: str) -> None:
        self.name = self.hook_name = name
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._last_error: str | None = None

    async def start(self) -> None:
        self._session = new_session(self._opt.request_timeout_s)

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    def health(self) -> Health:
        return Health(up=not self._closed, last_error=self._last_error)

    def _check_open(self) -> None:
        if self._closed:
            raise TransientError("channel closed", code="closed")

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            await self.start()
        assert self._session is not None
        return self._session
