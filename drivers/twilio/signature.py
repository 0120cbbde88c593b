"""`X-Twilio-Signature`, computed and checked without I/O.

The documented algorithm (twilio-python `request_validator.py`): take the
full URL Twilio requested, append `name + value` for every POST parameter
with names sorted and each name's values sorted, HMAC it, base64. Twilio is
inconsistent about default ports, so the URL is checked with and without
`:443`/`:80`.

The key: the account's auth token with HMAC-SHA1, unless a Webhook Rule
applies a Setting that signs with a SharedKey. Then Twilio adds
`X-Twilio-Webhooks-Signature-Settings: key=<SharedKey id>,algorithm=<alg>`
and signs with that SharedKey's secret and that algorithm (HMAC_SHA1 or
HMAC_SHA256); the signed string is the same. A Rule may split traffic
between two Settings (key rotation), so the header's key id says which.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from drivers.webio import same_secret

HEADER = "X-Twilio-Signature"
SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
_HASHES = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}


def compute(token: str, url: str, params: Iterable[tuple[str, str]],
            algorithm: str = "HMAC_SHA1") -> str:
    grouped: dict[str, set[str]] = {}
    for name, value in params:
        grouped.setdefault(name, set()).add(value)
    signed = url + "".join(name + value for name in sorted(grouped)
                           for value in sorted(grouped[name]))
    mac = hmac.new(token.encode(), signed.encode(), _HASHES[algorithm.upper()])
    return base64.b64encode(mac.digest()).decode()


def _setting(settings_header: str | None, wanted: str) -> str | None:
    for part in (settings_header or "").split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == wanted and value.strip():
            return value.strip()
    return None


def algorithm_of(settings_header: str | None) -> str:
    """`key=...,algorithm=HMAC_SHA256` -> HMAC_SHA256; absent -> the legacy HMAC_SHA1."""
    return (_setting(settings_header, "algorithm") or "HMAC_SHA1").upper()


def key_id_of(settings_header: str | None) -> str | None:
    """`key=webhooks_sharedkey_...,algorithm=...` -> the SharedKey's id."""
    return _setting(settings_header, "key")


def valid(token: str, url: str, params: Iterable[tuple[str, str]], signature: str | None,
          algorithm: str = "HMAC_SHA1") -> bool:
    if not signature or algorithm.upper() not in _HASHES:
        return False
    pairs = list(params)
    return any(same_secret(signature, compute(token, candidate, pairs, algorithm))
               for candidate in _port_variants(url))


def _port_variants(url: str) -> list[str]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    default = 443 if parts.scheme == "https" else 80
    with_port = f"{prefix}{host}:{parts.port or default}"
    bare = f"{prefix}{host}"
    variants = [url]
    for netloc in (bare, with_port):
        candidate = urlunsplit(parts._replace(netloc=netloc))
        if candidate not in variants:
            variants.append(candidate)
    return variants
