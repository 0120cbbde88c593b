"""SIGTERM while the database is unavailable (another process holds SQLite's
write lock): the daemon still stops within its grace period, cleanly, and
the next start finishes what the drain could not record.

systemd stops the service on shutdown whatever the database is doing; the
stop must not turn into a crash report. Bounded: about 10 seconds.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests import pgdb
from tests.faults.common import loop_channels, sent_ids
from tests.faults.test_db_locked import LockHolder
from tests.proc import Daemon, free_port, write_config
from tests.test_crash import api_key, post_batch

pytestmark = pytest.mark.timeout(60)

GRACE_S = 2.0


def test_sigterm_while_the_database_is_locked_stops_cleanly(tmp_path: Path) -> None:
    db, record, port = tmp_path / "spool.db", tmp_path / "sent.jsonl", free_port()
    config = write_config(tmp_path / "smsgw.toml", {
        "server": {"port": port},
        "storage": {"url": f"sqlite:///{db}", "busy_timeout_ms": 200},
        "dispatcher": {"node_name": "term-node", "shutdown_grace_s": GRACE_S},
        "spool_folder": {"path": str(tmp_path / "spool"), "enabled": False},
        "logging": {"format": "json", "level": "info"},
        "channels": loop_channels(record, time_between_ms=100, concurrency=1,
                                  delivery_reports=False),
    })
    key = api_key(config)
    log = tmp_path / "daemon.log"
    daemon = Daemon(config, port, log).start()
    ids = post_batch(daemon.url, key, [{"destination": f"+59899{i:06d}", "message": f"t {i}"}
                                       for i in range(30)])
    assert ids is not None
    while sum(sent_ids(record).values()) < 5:
        time.sleep(0.01)
    holder = LockHolder(db, 6.0)
    holder.lock()
    time.sleep(0.3)  # the dispatcher and the recorder meet the lock
    asked = time.monotonic()
    code = daemon.kill(signal.SIGTERM)
    took = time.monotonic() - asked
    crashed = "Traceback" in log.read_text()
    holder.proc.wait()
    print(f"\nSIGTERM with the database locked: exit {code} after {took:.1f} s; "
          f"traceback in the log: {crashed}")
    assert took < GRACE_S + 6
    assert not crashed and code == 0, "a stop during an outage is not a crash"

    daemon.start()  # the lock is gone; the next start recovers and sends the rest

    def left() -> int:
        return pgdb.query(f"sqlite:///{db}",
                          "SELECT count(*) FROM sms_spool WHERE state NOT IN (4, 5)")[0][0]
    deadline = time.monotonic() + 15
    while left() and time.monotonic() < deadline:
        time.sleep(0.1)
    daemon.kill(signal.SIGTERM)
    sends = sent_ids(record)
    doubted = {r[0] for r in pgdb.query(f"sqlite:///{db}", "SELECT DISTINCT message_id FROM "
                                        "message_events WHERE state = 9")}
    assert left() == 0 and set(sends) == set(ids)
    assert {i for i, n in Counter(sends).items() if n > 1} <= doubted and len(doubted) <= 2
