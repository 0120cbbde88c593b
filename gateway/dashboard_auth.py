"""Dashboard logins: password hashes, signed session cookies, CSRF tokens.

Users and their hashes live in the config (`[dashboard] users`), so an
operator manages them like any other secret. A session is a signed cookie
(HttpOnly, SameSite=Strict) carrying the user, its expiry, a CSRF token and
a random session id; the page learns the CSRF token from `/dashboard/session`
(which a foreign site cannot read) and sends it back on every POST, PATCH and
DELETE. The store keeps the hash of every live session id, so logout ends a
session server-side (a replayed cookie is refused), also across restarts when
`session_secret` keeps cookies valid; a user no longer in the config has no
session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from spool.base import Store

COOKIE = "smsgw_session"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_MIN_PBKDF2_ROUNDS = 100_000


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    # validate: a stray character is an error, not silently skipped.
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$hash`: memory-hard, from the standard library."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


def check_hash_format(stored: str) -> str:
    """Raise ValueError unless `stored` is a hash `verify_password` can check."""
    # Messages name what is wrong, never a piece of the hash: config errors
    # are printed and logged.
    parts = stored.split("$")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = _ints(parts[1:4], "scrypt N, r and p")
            # Bounded both ways: too weak to protect, or so costly a login exhausts memory.
            if not 2**10 <= n <= 2**20 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
                raise ValueError("weak or malformed scrypt parameters")
        elif parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            if _ints(parts[1:2], "pbkdf2 rounds")[0] < _MIN_PBKDF2_ROUNDS:
                raise ValueError(f"pbkdf2 needs at least {_MIN_PBKDF2_ROUNDS} rounds")
        else:
            raise ValueError("expected scrypt$N$r$p$salt$hash or pbkdf2_sha256$rounds$salt$hash "
                             "(make one with `smsgw dashboard hash-password`)")
        try:
            _unb64(parts[-2]), _unb64(parts[-1])
        except (ValueError, TypeError):
            raise ValueError("salt or hash is not base64") from None
    except ValueError as err:
        raise ValueError(f"unusable password hash: {err}") from None
    return stored


def _ints(texts: list[str], what: str) -> list[int]:
    if not all(t.isascii() and t.isdigit() and len(t) < 10 for t in texts):
        raise ValueError(f"{what} must be whole numbers")
    return [int(t) for t in texts]


def verify_password(password: str, stored: str) -> bool:
    parts = stored.split("$")
    raw = password.encode("utf-8")
    if parts[0] == "scrypt":
        n, r, p = (int(x) for x in parts[1:4])
        got = hashlib.scrypt(raw, salt=_unb64(parts[4]), n=n, r=r, p=p, dklen=32,
                             maxmem=2 * 128 * n * r + 1024 * 1024)
    else:
        got = hashlib.pbkdf2_hmac("sha256", raw, _unb64(parts[2]), int(parts[1]))
    return hmac.compare_digest(got, _unb64(parts[-1]))


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    expires_at: float
    csrf: str
    sid: str  # never shown to the page: the cookie is HttpOnly


class SessionSigner:
    def __init__(self, secret: str, ttl_s: float, *,
                 clock: Callable[[], float] = time.time) -> None:
        # A configured secret keeps sessions across restarts and nodes.
        self._key = hashlib.sha256(b"smsgw-dashboard:" + secret.encode()).digest() if secret \
            else secrets.token_bytes(32)
        self.ttl_s = ttl_s
        self._clock = clock

    def issue(self, user: str) -> tuple[str, Session]:
        session = Session(user, self._clock() + self.ttl_s, secrets.token_urlsafe(24),
                          secrets.token_urlsafe(24))
        body = _b64(json.dumps({"u": session.user, "e": session.expires_at,
                                "c": session.csrf, "s": session.sid}).encode())
        return f"{body}.{self._sign(body)}", session

    def verify(self, cookie: str | None) -> Session | None:
        # Ours are base64url; anything else (bytes that were not UTF-8 come
        # as lone surrogates) can't be signed text and can't be compared.
        if not cookie or "." not in cookie or len(cookie) > 1000 or not cookie.isascii():
            return None
        body, sig = cookie.rsplit(".", 1)
        if not hmac.compare_digest(sig, self._sign(body)):
            return None
        try:
            data = json.loads(_unb64(body))
            session = Session(str(data["u"]), float(data["e"]), str(data["c"]), str(data["s"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires_at > self._clock() else None

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())


def _sid_hash(session: Session) -> str:
    return hashlib.sha256(session.sid.encode()).hexdigest()


class Sessions:
    """Signed cookies that the store must also know: a session can be ended."""

    def __init__(self, signer: SessionSigner, store: Store, users: Collection[str], *,
                 clock: Callable[[], float] = time.time) -> None:
        self._signer = signer
        self._store = store
        self._users = frozenset(users)
        self._clock = clock

    async def start(self, user: str) -> tuple[str, Session]:
        cookie, session = self._signer.issue(user)
        await self._store.start_session(_sid_hash(session), user, session.expires_at)
        return cookie, session

    async def check(self, cookie: str | None) -> Session | None:
        """The session, if its signature holds, the store still has it and its
        user is still configured."""
        found = self._signer.verify(cookie)
        if found is None or found.user not in self._users:
            return None
        user = await self._store.session_user(_sid_hash(found), self._clock())
        return found if user == found.user else None

    async def end(self, session: Session) -> None:
        await self._store.end_sessions(id_hash=_sid_hash(session))

    async def forget_removed_users(self) -> int:
        """At start: the sessions of users taken out of the config end."""
        return await self._store.end_sessions(keep_users=sorted(self._users))


class LoginThrottle:
    """Slows password guessing: a source with too many recent failures waits.

    An attempt is counted when it starts, before the (slow) password check:
    checking first and counting after let a burst of concurrent guesses all
    pass the check while none had been counted yet. A success takes its own
    count back."""

    def __init__(self, *, max_failures: int = 10, window_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_failures
        self._window = window_s
        self._clock = clock
        self._failures: dict[str, list[float]] = {}

    def attempt(self, source: str) -> float | None:
        """Count an attempt from `source`; None when over the limit, else a
        token for `succeeded`."""
        now = self._clock()
        recent = [t for t in self._failures.get(source, []) if now - t < self._window]
        if len(recent) >= self._max:
            self._failures[source] = recent
            return None
        if len(self._failures) > 10_000:
            self._failures.clear()  # bounded: a flood must not grow memory
        self._failures[source] = [*recent, now]
        return now

    def succeeded(self, source: str, token: float) -> None:
        """The attempt counted at `token` was right: it is not a failure."""
        recent = self._failures.get(source, [])
        if token in recent:
            recent.remove(token)
