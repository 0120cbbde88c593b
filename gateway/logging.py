"""Structured logging: JSON lines for the journal, a console view on a TTY.

Secrets are masked before anything is rendered: values under secret-looking
keys, and any string registered with `register_secret` wherever it appears
(event text, fields, tracebacks, stdlib records).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

MASK = "***"
SECRET_KEY_PARTS = (
    "api_key", "apikey", "secret", "token", "password", "authorization", "auth", "signature",
)
# "pin" only as a word of its own: as a bare substring it would also hide
# "ping", "mapping", "shipping", "typing", ...
_SECRET_KEY = re.compile(
    "|".join(map(re.escape, SECRET_KEY_PARTS)) + r"|(?<![a-z])pin(?![a-z])", re.IGNORECASE
)
_MAX_DEPTH = 8
_HEADLINE = ("event", "level", "timestamp", "logger")

_secrets: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Mask `value` wherever it appears inside any logged string.

    For configured passwords and tokens, so a URL, header or error message
    that embeds one never reaches the journal. Short values (a 4-digit PIN)
    also mask the same digits in unrelated text such as phone numbers.
    """
    global _secret_pattern
    if not value or value in _secrets:
        return
    _secrets.add(value)
    # Longest first, so a secret that contains another is masked whole.
    ordered = sorted(_secrets, key=len, reverse=True)
    _secret_pattern = re.compile("|".join(map(re.escape, ordered)))


def is_secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None


def _mask(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return _secret_pattern.sub(MASK, value) if _secret_pattern else value
    if value is None or isinstance(value, bool | int | float) or depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {
            k: MASK if isinstance(k, str) and is_secret_key(k) else _mask(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        items = [_mask(v, depth + 1) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    return _mask_repr(value)


def _mask_repr(value: Any) -> Any:
    # Other objects (an exception carrying a DSN, say) are rendered with
    # repr(); check that text, and keep the object when nothing matched.
    if _secret_pattern is None:
        return value
    text = repr(value)
    masked = _secret_pattern.sub(MASK, text)
    return value if masked == text else masked


def redact(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: mask secret-named keys (nested too) and registered secrets.

    Builds new containers rather than editing them, since nested values are
    the caller's own objects.
    """
    return {
        key: value if key.startswith("_") else (MASK if is_secret_key(key) else _mask(value))
        for key, value in event_dict.items()
    }


class _NamedWriteLogger(structlog.WriteLogger):
    """A WriteLogger that remembers the name given to `structlog.get_logger`."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriteLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        name = args[0] if args and isinstance(args[0], str) else "smsgw"
        return _NamedWriteLogger(self._file, name)


class _Handler(logging.StreamHandler[TextIO]):
    """Marks the root handler this module installed, so reconfiguring replaces it."""


def _level(name: str) -> int:
    value = logging.getLevelNamesMapping().get(name.upper())
    if value is None:
        raise ValueError(f"unknown log level {name!r} (debug, info, warning, error, critical)")
    return value


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty(), or already closed
        return False


def _headline_first(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    """Processor: put event, level and timestamp first, for people reading the journal."""
    head = {k: event_dict[k] for k in _HEADLINE if k in event_dict}
    head.update(event_dict)
    return head


def _renderers(fmt: str, stream: TextIO) -> list[Processor]:
    if fmt == "json" or (fmt == "auto" and not _is_tty(stream)):
        return [_headline_first, structlog.processors.JSONRenderer()]
    if fmt in ("console", "auto"):
        return [structlog.dev.ConsoleRenderer(colors=_is_tty(stream))]
    raise ValueError(f"unknown log format {fmt!r} (auto, json, console)")


def _common() -> list[Processor]:
    return [
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _tail(render: list[Processor]) -> list[Processor]:
    # Tracebacks are turned into text before masking (a connection string
    # in an exception message is the classic leak); the console view gives
    # up its pretty tracebacks for that.
    return [
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact,
        *render,
    ]


def _route_stdlib(stream: TextIO, render: list[Processor], level: int) -> None:
    handler = _Handler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_common(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *_tail(render)],
    ))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def configure_logging(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
    *,
    stdlib_level: str = "warning",
) -> None:
    """Configure structlog and route stdlib `logging` through the same renderer.

    `stdlib_level` applies to libraries (aiohttp's access log is INFO and
    would otherwise log every request); our own events use `level`.
    """
    stream = sys.stderr if stream is None else stream
    # Validate everything before touching global state.
    own_level, library_level = _level(level), _level(stdlib_level)
    render = _renderers(fmt, stream)
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *_common(), *_tail(render)],
        wrapper_class=structlog.make_filtering_bound_logger(own_level),
        logger_factory=_NamedWriteLoggerFactory(stream),
        # Module-level loggers exist before configuration; caching would pin
        # them to whichever configuration they first met.
        cache_logger_on_first_use=False,
    )
    _route_stdlib(stream, render, library_level)



def register_settings_secrets(settings: Any) -> None:
    """Mask every configured secret: the database password, and each driver
    option whose name says it is one (password, token, secret, pin, ...)."""
    from urllib.parse import urlsplit

    password = urlsplit(settings.storage.url).password
    if password:
        register_secret(password)
    for options in settings.driver_options:
        for name, value in options.model_dump().items():
            # Short values (a SIM PIN) are masked by key only: by value they
            # would also blank the same digits inside phone numbers.
            if isinstance(value, str) and len(value) >= 6 and is_secret_key(name):
                register_secret(value)
    for user in getattr(getattr(settings, "dashboard", None), "users", ()) or ():
        register_secret(user.password_hash)
