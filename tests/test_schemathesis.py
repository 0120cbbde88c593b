"""The running daemon against its own OpenAPI description, fuzzed by schemathesis.

Every check schemathesis has runs over every described operation (all are
on unless the config below says otherwise; `--checks all` on the command
line would override that config): no 500, no status the description does
not list, bodies and headers as described, schema-violating input refused,
schema-valid input taken. The daemon is a real process on 127.0.0.1 with loopback channels;
the calls carry the operator tenant's API key, created with `smsgw tenant`.

The seed is fixed so that `make test` is repeatable; to explore further,
`SMSGW_SCHEMATHESIS_SEED=random` (or a number) and
`SMSGW_SCHEMATHESIS_EXAMPLES=500`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.api.openapi import SPEC
from gateway.dashboard_auth import hash_password
from tests import doors, openapi_doors
from tests.proc import Daemon, free_port, smsgw, toml_value, write_config

SEED = os.environ.get("SMSGW_SCHEMATHESIS_SEED", "20261124")
EXAMPLES = int(os.environ.get("SMSGW_SCHEMATHESIS_EXAMPLES", "50"))

# What the description cannot say, told to schemathesis instead. Each entry
# widens what a schema-valid request may get back, for a reason:
#  - 422 everywhere: a campaign named in a request must exist; which ones do
#    is data, not schema.
#  - 400 for campaign settings: `channels` must name configured channels and
#    `schedule.timezone` a zone of the tz database.
#  - 400 for the daily report: at most 92 days between `from` and `to`.
#  - 400 for the blacklist: each destination must be a number of
#    phone.default_region (or carry its country code).
#  - 400 for messages: no text may hold NUL or a lone surrogate (no backend
#    can store them, and JSON Schema cannot say so of `data`), a duration
#    string ('2400h') may not pass 90 days, nor a message track more than
#    10 links.
# CSV uploads are bytes: whatever schemathesis mutates a body into is still a
# CSV text, answered row by row in the summary rather than by a status.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]

[[operations]]
include-path = ["/api/v1/campaigns", "/api/v1/campaigns/{name}"]
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "400", "401", "403", "404", "409", "422", "429"]

[[operations]]
include-path = "/api/v1/messages"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "400", "401", "403", "404", "409", "422", "429"]

[[operations]]
include-path = "/api/v1/blacklist"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "400", "401", "403", "404", "409", "422", "429"]

[[operations]]
include-path-regex = "^/api/v1/reports/daily"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "400", "401", "403", "404", "409", "422", "429"]

[[operations]]
include-path-regex = "/import$"
checks.negative_data_rejection.enabled = false
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str]]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    port = free_port()
    config = write_config(tmp / "smsgw.toml", {
        "server": {"host": "127.0.0.1", "port": port,
                   "public_base_url": f"http://127.0.0.1:{port}"},
        "storage": {"url": f"sqlite:///{tmp / 'spool.db'}", "synchronous": "normal"},
        "dispatcher": {"node_name": "schemathesis", "poll_interval_ms": 20},
        "spool_folder": {"path": str(tmp / "spool")},
        "logging": {"format": "json", "level": "warning"},
        "channels": [{"name": "loop-a", "driver": "loopback", "cost": 0.15},
                     {"name": "loop-b", "driver": "loopback", "cost": 0.15}],
    })
    smsgw(config, "db", "migrate")
    out = smsgw(config, "tenant", "key", "default").stdout
    key = re.search(r"sgw_\S+", out)
    assert key, out
    daemon = Daemon(config, port, tmp / "daemon.log").start()
    try:
        yield daemon, key.group(0)
    finally:
        daemon.stop()


def test_the_daemon_serves_this_description(daemon: tuple[Daemon, str]) -> None:
    import json
    import urllib.request

    running, _ = daemon
    with urllib.request.urlopen(running.url + "/api/v1/openapi.json", timeout=5) as r:
        assert json.loads(r.read()) == json.loads(json.dumps(SPEC))


def test_no_server_errors_and_every_answer_as_described(
        daemon: tuple[Daemon, str], tmp_path: Path) -> None:
    running, key = daemon
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    seed = [] if SEED == "random" else ["--seed", SEED]
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--no-color", "--config-file", str(config),
         "run", running.url + "/api/v1/openapi.json", "--header", f"X-Api-Key: {key}",
         "--max-examples", str(EXAMPLES), *seed,
         "--request-timeout", "10"],
        capture_output=True, text=True, cwd=tmp_path, timeout=240,
        env={k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")})
    report = done.stdout[-20000:] + done.stderr[-3000:]
    assert done.returncode == 0, f"schemathesis found problems:\n{report}"
    crashed = _handler_crashes(running.log)
    assert not crashed, "handlers crashed:\n" + "\n".join(crashed[:5])


def _handler_crashes(log: Path) -> list[str]:
    """Tracebacks of handlers that raised (aiohttp answered 500, or the
    last-resort middleware a JSON 500). Requests aiohttp's HTTP parser
    refused (a NUL in a header) are logged too, but answered 400."""
    lines = log.read_text(errors="replace").splitlines()
    return [line[-3000:] for line in lines
            if ("Error handling request" in line and "in _handle_request" in line)
            or '"http.internal_error"' in line]


@pytest.fixture(scope="module")
def doors_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon with a hook of each kind and the dashboard (tests/doors.py)."""
    tmp = tmp_path_factory.mktemp("schemathesis-doors")
    port = free_port()
    # The HTTP channel last: TOML puts [channels.dlr] under the last [[channels]].
    channels = sorted(doors.channels(doors.NOWHERE), key=lambda c: c["driver"] == "http")
    dlr = channels[-1].pop("dlr")
    config = write_config(tmp / "smsgw.toml", {
        "server": {"host": "127.0.0.1", "port": port, "metrics_token": doors.METRICS_TOKEN,
                   "public_base_url": f"http://127.0.0.1:{port}"},
        "storage": {"url": f"sqlite:///{tmp / 'spool.db'}", "synchronous": "normal"},
        "dispatcher": {"node_name": "schemathesis-doors", "poll_interval_ms": 20},
        "spool_folder": {"path": str(tmp / "spool")},
        "logging": {"format": "json", "level": "warning"},
        "channels": channels,
    })
    # write_config has no nested tables: the DLR mapping and the dashboard user follow.
    user = {"name": "admin", "password_hash": hash_password(doors.PASSWORD)}
    with config.open("a") as fh:
        fh.write("[channels.dlr]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in dlr.items()))
        fh.write("[dashboard]\nusers = [{" + ", ".join(
            f"{k} = {toml_value(v)}" for k, v in user.items()) + "}]\n")
    smsgw(config, "db", "migrate")
    daemon = Daemon(config, port, tmp / "daemon.log").start()
    try:
        yield daemon
    finally:
        daemon.stop()


def test_no_server_errors_at_the_dashboard_hooks_and_legacy_doors(
        doors_daemon: Daemon, tmp_path: Path) -> None:
    spec = tmp_path / "doors.json"
    spec.write_text(json.dumps(openapi_doors.SPEC))
    seed = [] if SEED == "random" else ["--seed", SEED]
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--no-color", "run", str(spec),
         "--url", doors_daemon.url, "--checks", "not_a_server_error",
         "--max-examples", str(EXAMPLES), *seed, "--request-timeout", "10"],
        capture_output=True, text=True, cwd=tmp_path, timeout=240,
        env={k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")})
    report = done.stdout[-20000:] + done.stderr[-3000:]
    assert done.returncode == 0, f"schemathesis found problems:\n{report}"
    operations = sum(len(methods) for methods in openapi_doors.PATHS.values())
    assert f"Tested: {operations}" in done.stdout, report  # every door was reached
    crashed = _handler_crashes(doors_daemon.log)
    assert not crashed, "handlers crashed:\n" + "\n".join(crashed[:5])
