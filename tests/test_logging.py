"""Rendered log output: JSON lines for the journal, and no secrets in it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from gateway import logging as gwlog
from gateway.logging import configure_logging, register_secret


@pytest.fixture(autouse=True)
def _isolated_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Registered secrets and logging config are process-wide; each test
    # starts clean and leaves nothing pointing at its StringIO.
    monkeypatch.setattr(gwlog, "_secrets", set())
    monkeypatch.setattr(gwlog, "_secret_pattern", None)
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if isinstance(h, gwlog._Handler)]:
        root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()


def _configure(**kwargs: Any) -> io.StringIO:
    out = io.StringIO()
    configure_logging(stream=out, **kwargs)
    return out


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_events_are_json_lines_with_level_and_utc_timestamp() -> None:
    out = _configure()
    log = structlog.get_logger("smsgw.test")
    log.info("message.sent", id=7, channel="modem1", elapsed_ms=12.5)
    log.warning("channel.down", channel="modem2")

    first, second = _lines(out)
    assert list(first)[:3] == ["event", "level", "timestamp"]
    assert first["event"] == "message.sent"
    assert first["level"] == "info"
    assert first["logger"] == "smsgw.test"
    assert (first["id"], first["channel"], first["elapsed_ms"]) == (7, "modem1", 12.5)
    stamp = datetime.fromisoformat(first["timestamp"])
    assert stamp.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    assert second["level"] == "warning"


def test_level_filters_our_events() -> None:
    out = _configure(level="warning")
    log = structlog.get_logger("smsgw.test")
    log.info("quiet")
    log.error("loud")
    assert [e["event"] for e in _lines(out)] == ["loud"]


def test_newlines_stay_inside_one_line() -> None:
    out = _configure()
    structlog.get_logger().info("inbound.received", message="line one\nline two")
    assert len(out.getvalue().splitlines()) == 1
    assert _lines(out)[0]["message"] == "line one\nline two"


@pytest.mark.parametrize(
    "key",
    ["api_key", "X-ApiKey", "webhook_secret", "auth_token", "password", "Authorization",
     "basic_auth", "signature", "pin", "sim_PIN", "pin2"],
)
def test_secret_named_keys_are_masked(key: str) -> None:
    out = _configure()
    structlog.get_logger().info("config.loaded", **{key: "s3cr3t-value"})
    assert _lines(out)[0][key] == "***"
    assert "s3cr3t-value" not in out.getvalue()


def test_words_that_merely_contain_pin_are_not_masked() -> None:
    out = _configure()
    structlog.get_logger().info("modem.probe", ping_ms=40, mapping="a", shipping="b")
    event = _lines(out)[0]
    assert (event["ping_ms"], event["mapping"], event["shipping"]) == (40, "a", "b")


def test_secret_keys_are_masked_inside_nested_values_without_touching_them() -> None:
    out = _configure()
    headers = {"Authorization": "Bearer abc", "Content-Type": "text/plain"}
    structlog.get_logger().info("webhook.sent", request={"headers": headers, "tries": [1, 2]})
    event = _lines(out)[0]
    assert event["request"] == {
        "headers": {"Authorization": "***", "Content-Type": "text/plain"},
        "tries": [1, 2],
    }
    assert headers["Authorization"] == "Bearer abc"


def test_registered_secrets_are_masked_anywhere_in_strings() -> None:
    register_secret("hunter2-long")
    register_secret("hunter2")
    out = _configure()
    log = structlog.get_logger()
    log.info("storage.connecting to postgresql://u:hunter2@db/smsgw")
    log.info("channel.error", detail="login hunter2-long refused", seen=["x", "hunter2"])
    text = out.getvalue()
    assert "hunter2" not in text
    first, second = _lines(out)
    assert first["event"] == "storage.connecting to postgresql://u:***@db/smsgw"
    assert second["detail"] == "login *** refused"
    assert second["seen"] == ["x", "***"]


def test_registered_secrets_are_masked_in_tracebacks_and_objects() -> None:
    register_secret("tok-123456")
    out = _configure()
    log = structlog.get_logger()
    try:
        raise ConnectionError("rejected token tok-123456")
    except ConnectionError as err:
        log.exception("provider.failed", error=err)
    event = _lines(out)[0]
    assert "tok-123456" not in out.getvalue()
    assert "ConnectionError: rejected token ***" in event["exception"]
    assert event["error"] == "ConnectionError('rejected token ***')"


def test_stdlib_records_use_the_same_renderer_at_warning() -> None:
    register_secret("pa55word!")
    out = _configure(level="debug")
    logging.getLogger("aiohttp.access").info("GET / 200")
    logging.getLogger("aiohttp.server").error("handler failed for %s", "pa55word!")
    (event,) = _lines(out)
    assert event["event"] == "handler failed for ***"
    assert event["level"] == "error"
    assert event["logger"] == "aiohttp.server"
    datetime.fromisoformat(event["timestamp"])


def test_stdlib_level_can_be_lowered() -> None:
    out = _configure(stdlib_level="info")
    logging.getLogger("aiohttp.access").info("GET / 200")
    assert [e["event"] for e in _lines(out)] == ["GET / 200"]


def test_reconfiguring_replaces_the_stdlib_handler() -> None:
    _configure()
    out = _configure()
    logging.getLogger("aiohttp.server").warning("once")
    assert len(out.getvalue().splitlines()) == 1


def test_auto_picks_the_console_renderer_on_a_tty() -> None:
    out = _Tty()
    configure_logging(stream=out)
    structlog.get_logger().info("app.started", port=8080)
    text = out.getvalue()
    assert "app.started" in text and "port" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_json_can_be_forced_on_a_tty_and_console_off_one() -> None:
    tty = _Tty()
    configure_logging(fmt="json", stream=tty)
    structlog.get_logger().info("a", password="x")
    assert _lines(tty)[0]["password"] == "***"

    out = _configure(fmt="console")
    structlog.get_logger().info("b", password="hunter3")
    assert "hunter3" not in out.getvalue()
    assert "\x1b[" not in out.getvalue()  # no colours off a terminal


@pytest.mark.parametrize("kwargs", [{"level": "loud"}, {"stdlib_level": "x"}, {"fmt": "xml"}])
def test_bad_arguments_raise_before_anything_changes(kwargs: dict[str, Any]) -> None:
    out = _configure()
    with pytest.raises(ValueError):
        configure_logging(stream=io.StringIO(), **kwargs)
    structlog.get_logger().info("still.here")
    assert _lines(out)[0]["event"] == "still.here"


def test_configured_secrets_are_masked_wherever_they_appear() -> None:
    import io
    import json as _json

    import structlog

    from gateway.logging import configure_logging, register_settings_secrets
    from gateway.settings import settings_from_dict

    settings = settings_from_dict({"storage": {"url": "postgresql://smsgw:pg-Secr3t-pw@db/x"}})
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    register_settings_secrets(settings)
    structlog.get_logger("t").error("db.failed", detail="could not connect with pg-Secr3t-pw")
    line = _json.loads(out.getvalue().splitlines()[-1])
    assert "pg-Secr3t-pw" not in out.getvalue() and "***" in line["detail"]
