"""One typed, frozen settings tree, built once at start from TOML plus
`SMSGW_<SECTION>__<KEY>` environment overrides.

Unknown keys are errors; every error names the dotted key, e.g.
`channels[2].baudrate: Input should be a valid integer, got 'fast'`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from drivers.registry import DRIVERS
from gateway.logging import is_secret_key

ENV_PREFIX = "SMSGW_"


class ConfigError(Exception):
    """The configuration cannot be used; `key` is the dotted path at fault."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_base_url: str = "http://127.0.0.1:8080"
    legacy_open_networks: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    max_body_bytes: int = Field(1_048_576, ge=1024)
    api_keys_cache_s: float = Field(30.0, ge=0)
    # Per tenant, every authenticated call (a batch counts once per message).
    # 0 turns the limit off.
    rate_limit_per_s: float = Field(10_000.0, ge=0)
    rate_limit_burst: float = Field(20_000.0, ge=1)
    # /metrics and key-less /api/v1/stats: loopback callers, or this bearer token.
    metrics_token: str | None = None
    max_upload_bytes: int = Field(64 * 1_048_576, ge=1024)  # CSV uploads (streamed to disk)
    # Reverse proxies whose forwarding header is believed (CIDRs); from any
    # other peer a forwarding header makes the caller unknown, never local.
    trusted_proxies: tuple[str, ...] = ()
    forwarded_header: Literal["x-forwarded-for", "forwarded", "x-real-ip"] = "x-forwarded-for"
    # Host names a request may name (IP literals always pass: DNS rebinding
    # needs a name). Empty: localhost, `host`, this machine's name and
    # public_base_url's host. ["*"]: any.
    allowed_hosts: tuple[str, ...] = ()
    # Slow or idle clients: a request's headers must arrive within
    # header_timeout_s of its first byte, its body within body_timeout_s of
    # its headers; an idle keep-alive connection is closed after
    # keepalive_timeout_s. At max_connections the oldest connection that is
    # idle or still sending its request makes room for a new one.
    header_timeout_s: float = Field(10.0, gt=0, le=3600)
    body_timeout_s: float = Field(60.0, gt=0, le=3600)
    keepalive_timeout_s: float = Field(15.0, gt=0, le=3600)
    max_connections: int = Field(1000, ge=4)

    @field_validator("legacy_open_networks", "trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for net in value:
            ipaddress.ip_network(net, strict=False)  # ValueError names the bad one
        return value


class StorageSettings(_Section):
    url: str = "sqlite:///var/spool.db"
    # "full" survives power loss; "normal" survives a process crash (WAL).
    synchronous: Literal["full", "normal"] = "full"
    pool_size: int = Field(10, ge=1, le=200)
    busy_timeout_ms: int = Field(5000, ge=0)

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("expected sqlite:///PATH or postgresql://...")
        return value


class DispatcherSettings(_Section):
    batch_size: int = Field(50, ge=1, le=1000)
    max_attempts: int = Field(5, ge=1)
    node_name: str = Field(default_factory=socket.gethostname)
    claim_lease_s: float = Field(60.0, gt=0)
    poll_interval_ms: int = Field(200, ge=1)
    retry_base_s: float = Field(5.0, gt=0)
    retry_max_s: float = Field(900.0, gt=0)
    shutdown_grace_s: float = Field(10.0, ge=0)
    flush_interval_ms: int = Field(1, ge=0)
    max_in_flight: int = Field(1000, ge=1)


class IntakeSettings(_Section):
    max_segments: int = Field(10, ge=1, le=255)
    max_batch: int = Field(1000, ge=1)
    # Intake stops accepting (503) when this many rows wait in the spool.
    max_pending: int = Field(10_000_000, ge=1)
    default_campaign: str = "default"


class SpoolFolderSettings(_Section):
    path: Path = Path("var/spool")
    enabled: bool = True
    poll_interval_s: float = Field(1.0, gt=0)
    # A file is read once its size and mtime have not changed for this long.
    stable_s: float = Field(1.0, ge=0)
    tenant: str = "default"
    batch_rows: int = Field(2000, ge=1)


class PhoneSettings(_Section):
    default_region: str = "UY"

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        import phonenumbers

        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r} (ISO 3166 code like UY, AR, US)")
        return value.upper()


class InboundSettings(_Section):
    # First word of an inbound message, case and accents ignored. A bare "NO"
    # is deliberately absent: it usually answers a question, not a campaign.
    opt_out_keywords: tuple[str, ...] = (
        "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT",
        "BAJA", "CANCELAR", "SALIR", "PARAR", "ALTO")
    opt_out_reply: str = "You will receive no more messages from us."
    # "campaign": the campaign the customer answered (global if unknown);
    # "global": every campaign.
    opt_out_scope: Literal["campaign", "global"] = "campaign"
    # Words that opt a number back in with a provider that keeps its own
    # unsubscribe list (Twilio's defaults): they lift smsgw's per-sender stop
    # for that channel (recorded from Twilio 21610), never the blacklist.
    opt_in_keywords: tuple[str, ...] = ("START", "UNSTOP", "YES")


class WebhookSettings(_Section):
    timeout_s: float = Field(10.0, gt=0)
    # Backoff doubles from here up to an hour; events older than
    # give_up_after_s are kept as dead and no longer retried.
    retry_base_s: float = Field(10.0, gt=0)
    retry_max_s: float = Field(3600.0, gt=0)
    give_up_after_s: float = Field(86_400.0, gt=0)
    concurrency: int = Field(16, ge=1)


class BillingSettings(_Section):
    currency: str = Field("USD", min_length=3, max_length=3)


class JourneySettings(_Section):
    tick_s: float = Field(1.0, gt=0)
    batch: int = Field(1000, ge=1)
    click_flush_s: float = Field(0.25, gt=0, le=1.0)


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class DashboardUser(_Section):
    name: str = Field(min_length=1, max_length=100)
    password_hash: str  # `smsgw dashboard hash-password`

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        from gateway.dashboard_auth import check_hash_format

        return check_hash_format(value)


class DashboardSettings(_Section):
    enabled: bool = True
    users: tuple[DashboardUser, ...] = ()
    # Signs session cookies; empty: a random one per start (sessions end on restart).
    session_secret: str = ""
    session_ttl_s: float = Field(12 * 3600.0, gt=0)
    secure_cookie: bool = False  # set behind HTTPS
    sample_interval_s: float = Field(2.0, gt=0)  # spool counts, for rates and the chart


class ChannelSettings(BaseModel):
    """Keys every channel has; the driver validates its own keys (`options`)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    driver: str
    enabled: bool = True
    time_between_ms: int = Field(0, ge=0)
    jitter_ms: int = Field(0, ge=0)
    cost: float = Field(0.0, ge=0)
    daily_limit: int = Field(0, ge=0)  # 0: no cap
    block_after: int = Field(5, ge=1)  # consecutive failures before a pause
    block_for_s: float = Field(60.0, ge=0)
    concurrency: int | None = Field(None, ge=1)
    # Default: the driver's own (`default_send_timeout_s`, 180 s for a modem
    # sending several parts), else 60 s.
    send_timeout_s: float | None = Field(None, gt=0)
    # Tenant names this channel belongs to (checked against the database at
    # start): only their messages go out on it, and a reply that comes in on
    # it is theirs. Empty: every tenant's.
    tenants: tuple[str, ...] = ()
    # A hook whose caller the driver cannot verify (a Dinstar without
    # push_token, an HTTP DLR without dlr_secret) is served only with one of
    # these: callers limited to these CIDRs, or the operator's explicit leave.
    hook_networks: tuple[str, ...] = ()
    allow_unauthenticated_hooks: bool = False

    @field_validator("hook_networks")
    @classmethod
    def _hook_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for net in value:
            ipaddress.ip_network(net, strict=False)  # ValueError names the bad one
        return value


class Settings(_Section):
    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    dispatcher: DispatcherSettings = DispatcherSettings()
    intake: IntakeSettings = IntakeSettings()
    spool_folder: SpoolFolderSettings = SpoolFolderSettings()
    phone: PhoneSettings = PhoneSettings()
    inbound: InboundSettings = InboundSettings()
    webhooks: WebhookSettings = WebhookSettings()
    billing: BillingSettings = BillingSettings()
    journeys: JourneySettings = JourneySettings()
    logging: LoggingSettings = LoggingSettings()
    dashboard: DashboardSettings = DashboardSettings()
    channels: tuple[ChannelSettings, ...] = ()
    # Validated per driver after the tree is built; index matches `channels`.
    driver_options: tuple[Any, ...] = ()


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _error_line(err: ValidationError, prefix: tuple[int | str, ...] = ()) -> ConfigError:
    first = err.errors()[0]
    loc = prefix + tuple(first["loc"])
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif "input" in first and not isinstance(first["input"], dict | list) \
            and not is_secret_key(str(loc[-1]) if loc else ""):
        shown = repr(first["input"])  # never a hash, token or password
        msg = f"{msg}, got {shown[:60]}{'...' if len(shown) > 60 else ''}"
    return ConfigError(_dotted(loc), msg)


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name or name == "SMSGW_CONFIG":
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        parsed = _env_value(value)
        if path[0] == "channels":
            _apply_channel_env(raw, path, parsed, name)
            continue
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(name, "does not name a section")
        node[path[-1]] = parsed


def _env_value(value: str) -> Any:
    """A list or table when the value is JSON for one; else the text itself
    (a secret may begin with `{`), which the key's type then accepts or names."""
    if value[:1] in "[{":
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def _apply_channel_env(raw: dict[str, Any], path: list[str], value: Any, name: str) -> None:
    # SMSGW_CHANNELS__<index or name>__<KEY>
    if len(path) != 3:
        raise ConfigError(name, "expected SMSGW_CHANNELS__<index|name>__<KEY>")
    channels = raw.get("channels", [])
    ref = path[1]
    for i, channel in enumerate(channels):
        if str(i) == ref or str(channel.get("name", "")).lower() == ref:
            channel[path[2]] = value
            return
    raise ConfigError(name, f"no channel {ref!r} in the configuration")


def _validate_channels(settings: Settings) -> Settings:
    seen: set[str] = set()
    numbers: dict[str, str] = {}
    options = []
    for i, channel in enumerate(settings.channels):
        if channel.name in seen:
            raise ConfigError(f"channels[{i}].name", f"duplicate channel name {channel.name!r}")
        seen.add(channel.name)
        spec = DRIVERS.get(channel.driver)
        if spec is None:
            valid = ", ".join(sorted(DRIVERS))
            raise ConfigError(f"channels[{i}].driver",
                              f"unknown driver {channel.driver!r} (valid: {valid})")
        try:
            options.append(spec.options.model_validate(channel.model_extra or {}))
        except ValidationError as err:
            raise _error_line(err, ("channels", i)) from None
        # One business number, one channel: Meta's webhooks for it are routed
        # by phone_number_id, and a second channel would never see its reports.
        number = getattr(options[-1], "phone_number_id", None)
        if number:
            if number in numbers:
                raise ConfigError(f"channels[{i}].phone_number_id",
                                  f"{number!r} is already channel {numbers[number]!r}")
            numbers[number] = channel.name
    return settings.model_copy(update={"driver_options": tuple(options)})


def load_settings(path: str | os.PathLike[str] | None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Read TOML (if any), apply the environment, validate; raise ConfigError."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("", f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError("", f"{path}: invalid TOML: {err}") from None
    _apply_env(raw, environ)
    return settings_from_dict(raw)


def settings_from_dict(raw: dict[str, Any]) -> Settings:
    raw = {k: v for k, v in raw.items() if k != "driver_options"}
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as err:
        raise _error_line(err) from None
    return _validate_channels(settings)


def default_config_path(environ: Mapping[str, str] | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    if environ.get("SMSGW_CONFIG"):
        return environ["SMSGW_CONFIG"]
    for candidate in ("config/smsgw.toml", "/etc/smsgw/smsgw.toml"):
        if Path(candidate).is_file():
            return candidate
    return None
