"""API keys: random, shown once, stored as SHA-256, cached briefly in memory."""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import time
from collections.abc import Callable, Sequence

from spool.base import Store, Tenant

KEY_PREFIX = "sgw_"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # The key carries 256 bits of entropy, so a plain hash is enough (no
    # salt or KDF needed) and the lookup stays an index probe on the hash,
    # which does not leak timing about the key itself.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class Authenticator:
    def __init__(self, store: Store, *, cache_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._cache_s = cache_s
        self._clock = clock
        self._cache: dict[str, tuple[Tenant | None, float]] = {}

    async def tenant(self, key: str | None) -> Tenant | None:
        if not key or len(key) > 200:
            return None
        digest = hash_key(key)
        hit = self._cache.get(digest)
        now = self._clock()
        if hit is not None and hit[1] > now:
            return hit[0]
        tenant = await self._store.tenant_by_key_hash(digest)
        if len(self._cache) > 10_000:
            self._cache.clear()  # bounded: a key-guessing flood must not grow memory
        self._cache[digest] = (tenant, now + self._cache_s)
        return tenant


class OpenNetworks:
    """Where key-less legacy calls are accepted from (default: loopback only)."""

    def __init__(self, networks: Sequence[str]) -> None:
        self._nets = [ipaddress.ip_network(n, strict=False) for n in networks]

    def __contains__(self, address: str | None) -> bool:
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self._nets)


class RateLimiter:
    """A token bucket per tenant: `rate_per_s` sustained, `burst` at once.

    Returns how long to wait when a call is refused, for `Retry-After`."""

    def __init__(self, rate_per_s: float, burst: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}  # tenant -> (tokens, at)

    def check(self, tenant: int, cost: float = 1.0) -> float:
        """0 when allowed (and charged); else the seconds until it would be."""
        if self._rate <= 0:
            return 0.0
        now = self._clock()
        tokens, at = self._buckets.get(tenant, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < cost:
            self._buckets[tenant] = (tokens, now)
            return (cost - tokens) / self._rate
        self._buckets[tenant] = (tokens - cost, now)
        return 0.0
