"""API keys: random, shown once, stored as SHA-256, cached briefly in memory."""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import time
from collections.abc import Callable, Sequence

from spool.base import Store, StoreError, Tenant

KEY_PREFIX = "sgw_"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # The key carries 256 bits of entropy, so a plain hash is enough (no
    # salt or KDF needed) and the lookup stays an index probe on the hash,
    # which does not leak timing about the key itself.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class Authenticator:
    """Key -> tenant, cached for `cache_s`, yet a revocation is seen at once.

    A revocation made in this process calls `forget()`. One made elsewhere (the
    CLI, another node) bumps the store's auth generation; at most every
    `generation_check_s` a lookup reads it and drops the cache when it moved,
    so a revoked key or a disabled tenant is refused within about two checks."""

    def __init__(self, store: Store, *, cache_s: float = 30.0, generation_check_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._cache_s = cache_s
        self._check_s = generation_check_s
        self._clock = clock
        self._cache: dict[str, tuple[Tenant | None, float]] = {}
        self._generation: int | None = None
        self._next_check = 0.0

    async def tenant(self, key: str | None) -> Tenant | None:
        # Keys are ASCII; a header that is not (bytes that were not UTF-8
        # arrive as lone surrogates, which can't be hashed) is simply wrong.
        if not key or len(key) > 200 or not key.isascii():
            return None
        digest = hash_key(key)
        now = self._clock()
        await self._follow_generation(now)
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        tenant = await self._store.tenant_by_key_hash(digest)
        if len(self._cache) > 10_000:
            self._cache.clear()  # bounded: a key-guessing flood must not grow memory
        self._cache[digest] = (tenant, now + self._cache_s)
        return tenant

    def forget(self) -> None:
        """Drop every cached key: who may call has just changed here."""
        self._cache.clear()

    async def _follow_generation(self, now: float) -> None:
        if now < self._next_check:
            return
        # Set before the read: concurrent lookups in this second do not repeat it.
        self._next_check = now + self._check_s
        try:
            generation = await self._store.auth_generation()
        except StoreError:
            return  # nothing can be revoked while the store is away: keep the cache
        if generation != self._generation:
            self._cache.clear()
            self._generation = generation


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
