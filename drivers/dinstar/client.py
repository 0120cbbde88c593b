"""HTTP to one Dinstar gateway: JSON in and out, authentication, and the
three ways a call can fail, named for what the caller does next."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from drivers.dinstar.auth import AnyAuth
from drivers.dinstar.wire import ApiError


class DeviceUnreachable(Exception):
    """No usable answer (refused, timed out, HTTP 5xx): the device is down."""


class AuthRejected(Exception):
    """The device refused our credentials: nothing works until they change."""


class DinstarClient:
    def __init__(self, base_url: str, username: str, password: str, *, timeout_s: float,
                 verify_tls: bool = False) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._auth = AnyAuth(username, password)
        self._timeout_s = timeout_s
        self._verify_tls = verify_tls
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"DinstarClient({self.base_url!r}, username={self.username!r})"

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                connector=aiohttp.TCPConnector(ssl=self._verify_tls))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, path: str, body: Any) -> Any:
        return await self._request("POST", path, body=body)

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        # Commas stay literal: `port=0,1,2` is how the device reads a list.
        query = "?" + urlencode(params, safe=",") if params else ""
        return await self._request("GET", path + query)

    async def _request(self, method: str, uri: str, *, body: Any = None) -> Any:
        await self.open()
        assert self._session is not None
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        for attempt in (1, 2):
            headers = {"Content-Type": "application/json"} if data is not None else {}
            answer = self._auth.header(method, uri)
            if answer:
                headers["Authorization"] = answer
            try:
                async with self._session.request(method, URL(self.base_url + uri, encoded=True),
                                                 data=data, headers=headers) as resp:
                    if resp.status == 401:
                        challenges = resp.headers.getall("WWW-Authenticate", [])
                        if attempt == 1 and self._auth.learn(challenges):
                            continue
                        raise AuthRejected(f"the device refused the credentials of user "
                                           f"{self.username!r} (check username/password)")
                    return await self._read(resp, uri)
            except (aiohttp.ClientError, TimeoutError) as err:
                raise DeviceUnreachable(f"{self.base_url} unreachable: "
                                        f"{err.__class__.__name__} {err}".strip()) from err
        raise AuthRejected("authentication did not settle")

    async def _read(self, resp: aiohttp.ClientResponse, uri: str) -> Any:
        path = uri.split("?", 1)[0]
        if resp.status >= 500:
            raise DeviceUnreachable(f"{self.base_url} answered HTTP {resp.status}")
        if resp.status != 200:
            raise ApiError(resp.status, path)
        try:
            return json.loads(await resp.read())
        except ValueError:
            # The old API (or a login page) answers HTML: the new API is off.
            raise ApiError(None, path) from None
