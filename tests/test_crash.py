"""The daemon as a process: kill -9 mid-send, SIGTERM drain, config errors.

The loopback channels append a line per accepted send to a record file
(flushed at once), which is the test's independent account of what "went
out"; the spool is read with plain sqlite3 or asyncpg, not with smsgw's own
code. Both backends: the process tests are where a lease meets a real kill.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests import pgdb
from tests.proc import Daemon, free_port, smsgw, write_config

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(autouse=True)
def _no_daemon_left_behind(monkeypatch: pytest.MonkeyPatch):
    """A failing test must not leave its daemon running for the next one."""
    started: list[Daemon] = []
    start = Daemon.start

    def tracked(self: Daemon, *args, **kwargs) -> Daemon:
        started.append(self)
        return start(self, *args, **kwargs)
    monkeypatch.setattr(Daemon, "start", tracked)
    yield
    for daemon in started:
        daemon.stop()


def daemon_config(tmp: Path, url: str, *, latency_ms: float, concurrency: int,
                  grace_s: float = 5, record: Path) -> Path:
    channels = [{"name": name, "driver": "loopback", "cost": 0.15, "latency_ms": latency_ms,
                 "latency_jitter_ms": latency_ms, "concurrency": concurrency,
                 "report_delay_ms": 100, "record_path": str(record)}
                for name in ("loop-a", "loop-b")]
    raw = {
        "server": {"port": free_port()},
        "storage": {"url": url, "synchronous": "full"},
        "dispatcher": {"node_name": "crash-node", "poll_interval_ms": 20,
                       "shutdown_grace_s": grace_s, "claim_lease_s": 30},
        "spool_folder": {"path": str(tmp / "spool")},
        "logging": {"format": "json", "level": "info"},
        "channels": channels,
    }
    return write_config(tmp / "smsgw.toml", raw)


def post_batch(url: str, key: str, batch: list[dict]) -> list[int] | None:
    """One API call; None when the daemon died under it (the caller retries)."""
    req = urllib.request.Request(
        url + "/api/v1/messages", data=json.dumps({"messages": batch}).encode(),
        headers={"X-Api-Key": key, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return [m["id"] for m in json.loads(r.read())["messages"]]
    except (OSError, urllib.error.URLError):
        return None


def rows(url: str, sql: str, *args: object) -> list[tuple]:
    return pgdb.query(url, sql, *args)


def sent_lines(record: Path) -> Counter[int]:
    """Sends the channels recorded; a last line still being written is not one yet."""
    if not record.exists():
        return Counter()
    sent: Counter[int] = Counter()
    for line in record.read_text().splitlines():
        try:
            sent[json.loads(line)["id"]] += 1
        except ValueError:
            continue
    return sent


def api_key(config: Path) -> str:
    out = smsgw(config, "tenant", "add", "crash").stdout
    return out.split("store it now): ")[1].split()[0]


def test_sigkill_mid_send_loses_nothing_and_duplicates_only_in_flight(
        tmp_path: Path, storage_url: str) -> None:
    record = tmp_path / "sent.jsonl"
    config = daemon_config(tmp_path, storage_url, latency_ms=3, concurrency=4, record=record)
    key = api_key(config)
    daemon = Daemon(config, int(config.read_text().split("port = ")[1].split()[0]),
                    tmp_path / "daemon.log").start()
    total, per_batch = 2000, 100
    batches = [[{"destination": f"0983{b:02d}{i:03d}", "message": f"m {b}/{i}",
                 "idempotency_key": f"k{b}-{i}"} for i in range(per_batch)]
               for b in range(total // per_batch)]
    acked: dict[int, list[int]] = {}

    def client() -> None:
        for n, batch in enumerate(batches):
            ids = post_batch(daemon.url, key, batch)
            if ids is not None:
                acked[n] = ids

    feeder = threading.Thread(target=client)
    feeder.start()
    # Kill once a few hundred have gone out, with intake still running.
    deadline = time.monotonic() + 60
    while sum(sent_lines(record).values()) < 400 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert daemon.kill(signal.SIGKILL) == -signal.SIGKILL
    feeder.join()
    db = storage_url
    acked_ids = {i for ids in acked.values() for i in ids}
    # Every acknowledged message survived the kill.
    stored = {r[0] for r in rows(db, "SELECT id FROM sms_spool")}
    assert acked_ids <= stored
    in_flight_at_kill = {r[0] for r in rows(db, "SELECT id FROM sms_spool WHERE state = 2 "
                                                "AND started_at IS NOT NULL")}

    daemon.start()
    # The client retries what was not acknowledged; idempotency keys make it safe.
    for n, batch in enumerate(batches):
        if n not in acked:
            ids = post_batch(daemon.url, key, batch)
            assert ids is not None
            acked[n] = ids
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if rows(db, "SELECT count(*) FROM sms_spool WHERE state NOT IN (4, 5)")[0][0] == 0:
            break
        time.sleep(0.1)
    daemon.kill(signal.SIGTERM)

    states = Counter(r[0] for r in rows(db, "SELECT state FROM sms_spool"))
    print(f"\nafter kill -9 and restart: states={dict(states)}, "
          f"in flight at kill={len(in_flight_at_kill)}")
    assert sum(states.values()) == total, "every message stored exactly once"
    assert set(states) <= {4, 5}, f"not all sent: {states}"
    sends = sent_lines(record)
    assert set(sends) == {r[0] for r in rows(db, "SELECT id FROM sms_spool")}, "none lost"
    twice = {mid for mid, n in sends.items() if n > 1}
    doubted = {r[0] for r in rows(db, "SELECT DISTINCT message_id FROM message_events "
                                      "WHERE state = 9")}
    print(f"sent twice: {len(twice)}; in doubt after the crash: {len(doubted)}")
    assert twice <= doubted, "a duplicate that was not in flight"
    assert doubted <= in_flight_at_kill
    assert len(doubted) <= 8, "duplicates bounded by what was in flight (2 channels x 4)"


def test_sigterm_drains_in_flight_and_returns_the_rest(tmp_path: Path,
                                                       storage_url: str) -> None:
    record = tmp_path / "sent.jsonl"
    config = daemon_config(tmp_path, storage_url, latency_ms=150, concurrency=2, grace_s=5,
                           record=record)
    key = api_key(config)
    daemon = Daemon(config, int(config.read_text().split("port = ")[1].split()[0]),
                    tmp_path / "daemon.log").start()
    batch = [{"destination": f"09834{i:04d}", "message": f"m{i}"} for i in range(200)]
    assert post_batch(daemon.url, key, batch) is not None
    while sum(sent_lines(record).values()) < 10:
        time.sleep(0.02)
    started = time.monotonic()
    assert daemon.kill(signal.SIGTERM) == 0, "clean exit on SIGTERM"
    assert time.monotonic() - started < 5 + 3
    db = storage_url
    states = Counter(r[0] for r in rows(db, "SELECT state FROM sms_spool"))
    sent = rows(db, "SELECT count(*) FROM sms_spool WHERE state IN (4, 5)")[0][0]
    print(f"\nafter SIGTERM: states={dict(states)}")
    assert 2 not in states and 9 not in states, "nothing left claimed or in doubt"
    assert set(states) <= {1, 4, 5} and states[1] > 0
    assert sent == sum(sent_lines(record).values()), "every send finished was recorded"
    log = (tmp_path / "daemon.log").read_text()
    assert '"smsgw.drained"' in log and '"all_finished": true' in log


def test_bad_config_exits_78_with_one_line_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[channels]]\nname = "m1"\ndriver = "loopback"\nlatency_ms = "slow"\n')
    result = smsgw(bad, "run", check=False)
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "channels[0].latency_ms" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[server]\nprot = 8080\n")
    result = smsgw(unknown, "run", check=False)
    assert result.returncode == 78 and "server.prot: unknown key" in result.stderr
