"""HTTP authentication the way the gateways want it.

Depending on firmware a Dinstar answers 401 with a Basic or a Digest
challenge; Dinstar's own examples use `curl --anyauth`, which reads the
challenge and answers in kind. This does the same, then answers every later
request up front (Basic) or with the learnt nonce (Digest, RFC 7616 with
qop=auth), so a request costs one round trip once the scheme is known.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # "basic" | "digest"
    params: dict[str, str]


def parse_challenges(headers: list[str]) -> list[Challenge]:
    found = []
    for header in headers:
        scheme, _, rest = header.strip().partition(" ")
        params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
                  for m in _PARAM.finditer(rest)}
        found.append(Challenge(scheme.lower(), params))
    return found


def digest_response(*, username: str, password: str, method: str, uri: str,
                    params: dict[str, str], nc: int, cnonce: str) -> str:
    """The `response` value of RFC 7616 §3.4.1 (qop=auth, or none for RFC 2069)."""
    algorithm = params.get("algorithm", "MD5").upper()
    digest = _HASHES.get(algorithm.removesuffix("-SESS"), hashlib.md5)

    def h(text: str) -> str:
        return digest(text.encode()).hexdigest()

    nonce = params.get("nonce", "")
    ha1 = h(f"{username}:{params.get('realm', '')}:{password}")
    if algorithm.endswith("-SESS"):
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    if "auth" in _qops(params):
        return h(f"{ha1}:{nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
    return h(f"{ha1}:{nonce}:{ha2}")


def _qops(params: dict[str, str]) -> list[str]:
    return [q.strip() for q in params.get("qop", "").split(",") if q.strip()]


class AnyAuth:
    """Holds what the device asked for; `header()` answers it for one request."""

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password
        self._challenge: Challenge | None = None
        self._nc = 0

    def __repr__(self) -> str:  # never the password
        scheme = self._challenge.scheme if self._challenge else "unknown"
        return f"AnyAuth(username={self._username!r}, scheme={scheme})"

    @property
    def scheme(self) -> str | None:
        return self._challenge.scheme if self._challenge else None

    def learn(self, headers: list[str]) -> bool:
        """Take the 401's challenges; True if answering them is worth a retry."""
        offered = {c.scheme: c for c in parse_challenges(headers)}
        chosen = offered.get("digest") or offered.get("basic")
        if chosen is None:
            return False
        before = self._challenge
        # The same challenge again means the credentials were refused; a new
        # nonce (stale, or the device rebooted) is worth one more try. The
        # caller retries once per request, so a refusal costs two round trips.
        worth = (before is None or before.scheme != chosen.scheme
                 or before.params.get("nonce") != chosen.params.get("nonce"))
        self._challenge, self._nc = chosen, 0
        return worth

    def header(self, method: str, uri: str) -> str | None:
        if self._challenge is None:
            return None
        if self._challenge.scheme == "basic":
            token = base64.b64encode(f"{self._username}:{self._password}".encode()).decode()
            return f"Basic {token}"
        return self._digest(method, uri, self._challenge.params)

    def _digest(self, method: str, uri: str, params: dict[str, str]) -> str:
        self._nc += 1
        cnonce = os.urandom(8).hex()
        response = digest_response(username=self._username, password=self._password,
                                   method=method, uri=uri, params=params, nc=self._nc,
                                   cnonce=cnonce)
        parts = [f'username="{self._username}"', f'realm="{params.get("realm", "")}"',
                 f'nonce="{params.get("nonce", "")}"', f'uri="{uri}"',
                 f'response="{response}"']
        if "algorithm" in params:
            parts.append(f"algorithm={params['algorithm']}")
        if "opaque" in params:
            parts.append(f'opaque="{params["opaque"]}"')
        if "auth" in _qops(params):
            parts += ["qop=auth", f"nc={self._nc:08x}", f'cnonce="{cnonce}"']
        return "Digest " + ", ".join(parts)
