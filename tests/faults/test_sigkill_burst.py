"""kill -9 at random points of a 5,000-message burst, five times in a row.

One daemon process, restarted after each kill. The client submits in
batches with idempotency keys and resubmits whatever was not acknowledged,
as a real integrator would. The loopback channels append a line per
accepted send to a record file, the independent account of what went out;
the spool is read with plain SQL, not with smsgw's code.

Proves: nothing acknowledged is lost, every message ends SENT/DELIVERED and
is stored once; a message goes out twice only if the crash left it in doubt
(state 9 in its history), and each kill leaves in doubt at most what the
channels had in flight (their total concurrency). The seed is printed;
`SMSGW_FAULT_SEED=<n>` replays a run. Bounded: about 15 s per backend.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests import pgdb
from tests.faults.common import sent_ids
from tests.proc import Daemon, free_port, write_config
from tests.test_crash import api_key

pytestmark = pytest.mark.timeout(240)

TOTAL, PER_BATCH, KILLS = 5000, 100, 5
CONCURRENCY = 4  # per channel; two channels
IN_FLIGHT_BOUND = 2 * CONCURRENCY


def daemon_config(tmp: Path, url: str, record: Path) -> tuple[Path, int]:
    port = free_port()
    channels = [{"name": name, "driver": "loopback", "cost": 0.15, "latency_ms": 2,
                 "latency_jitter_ms": 4, "concurrency": CONCURRENCY, "report_delay_ms": 50,
                 "record_path": str(record)} for name in ("loop-a", "loop-b")]
    raw = {
        "server": {"port": port},
        "storage": {"url": url, "synchronous": "full"},
        "dispatcher": {"node_name": "kill-node", "poll_interval_ms": 20, "claim_lease_s": 30,
                       "shutdown_grace_s": 5},
        "spool_folder": {"path": str(tmp / "spool"), "enabled": False},
        "logging": {"format": "json", "level": "warning"},
        "channels": channels,
    }
    return write_config(tmp / "smsgw.toml", raw), port


class Client:
    """Submits every batch until acknowledged, one each 50 ms (the burst spans
    the kills); a dead daemon means: try again once it answers."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.batches = [[{"destination": f"+59899{b:02d}{i:04d}", "message": f"burst {b}/{i}",
                          "idempotency_key": f"k{b}-{i}"} for i in range(PER_BATCH)]
                        for b in range(TOTAL // PER_BATCH)]
        self.acked: dict[int, list[int]] = {}
        self.requests = 0
        self.failed = 0  # requests the daemon died under (or refused while starting)
        self.replayed = 0  # messages answered `duplicate`: stored by a request that died
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the client never got every batch acknowledged"

    def _run(self) -> None:
        deadline = time.monotonic() + 150
        while len(self.acked) < len(self.batches) and time.monotonic() < deadline:
            n = min(set(range(len(self.batches))) - set(self.acked))
            self.requests += 1
            answer = post(self.url, self.key, self.batches[n])
            if answer is None:
                self.failed += 1
                time.sleep(0.05)
                continue
            self.acked[n] = [m["id"] for m in answer]
            self.replayed += sum(bool(m["duplicate"]) for m in answer)
            time.sleep(0.05)


def post(url: str, key: str, batch: list[dict]) -> list[dict] | None:
    """One API call; None when the daemon died under it or is not up."""
    req = urllib.request.Request(
        url + "/api/v1/messages", data=json.dumps({"messages": batch}).encode(),
        headers={"X-Api-Key": key, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return list(json.loads(r.read())["messages"])
    except (OSError, urllib.error.URLError):
        return None


def wait_until(check, timeout_s: float, what: str, db: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            states = dict(pgdb.query(db, "SELECT state, count(*) FROM sms_spool GROUP BY state"))
            raise AssertionError(f"timed out waiting for {what}; spool states: {states}")
        time.sleep(0.005)


def test_sigkill_five_times_during_a_burst(tmp_path: Path, storage_url: str) -> None:
    seed = int(os.environ.get("SMSGW_FAULT_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    print(f"\nseed {seed} (SMSGW_FAULT_SEED={seed} replays it)")
    db, record = storage_url, tmp_path / "sent.jsonl"
    config, port = daemon_config(tmp_path, db, record)
    key = api_key(config)
    daemon = Daemon(config, port, tmp_path / "daemon.log").start()
    client = Client(daemon.url, key)
    client.start()
    # Kill when this many distinct messages have gone out, plus up to 30 ms.
    targets = sorted(rng.sample(range(300, TOTAL - 300), KILLS))
    kills = []
    try:
        for target in targets:
            wait_until(lambda t=target: len(sent_ids(record)) >= t, 60, f"{target} sends", db)
            time.sleep(rng.uniform(0, 0.03))
            assert daemon.kill(signal.SIGKILL) == -signal.SIGKILL
            kills.append(after_kill(db, record, client, target))
            daemon.start()
            kills[-1]["doubted"] = {r[0] for r in pgdb.query(
                db, "SELECT DISTINCT message_id FROM message_events WHERE state = 9 AND id > ?",
                kills[-1]["last_event"])}
        client.join(120)

        def all_sent() -> bool:
            return pgdb.query(db, "SELECT count(*) FROM sms_spool WHERE state NOT IN (4, 5)"
                              )[0][0] == 0
        wait_until(all_sent, 60, "every message sent", db)
    finally:
        daemon.stop()
    report(kills, db, record, client)


def after_kill(db: str, record: Path, client: Client, target: int) -> dict:
    """What the spool holds right after a kill, before the restart recovers it."""
    acked = {i for ids in list(client.acked.values()) for i in ids}
    stored = {r[0] for r in pgdb.query(db, "SELECT id FROM sms_spool")}
    assert acked <= stored, f"{len(acked - stored)} acknowledged messages lost at a kill"
    return {
        "target": target, "sent": sum(sent_ids(record).values()), "stored": len(stored),
        "in_flight": {r[0] for r in pgdb.query(
            db, "SELECT id FROM sms_spool WHERE state = 2 AND started_at IS NOT NULL")},
        "last_event": pgdb.query(db, "SELECT coalesce(max(id), 0) FROM message_events")[0][0],
    }


def report(kills: list[dict], db: str, record: Path, client: Client) -> None:
    for n, k in enumerate(kills, start=1):
        print(f"kill {n}: after {k['sent']} sends ({k['stored']} stored); "
              f"started and unrecorded: {len(k['in_flight'])}; in doubt: {len(k['doubted'])}")
    states = Counter(r[0] for r in pgdb.query(db, "SELECT state FROM sms_spool"))
    sends = sent_ids(record)
    twice = {mid for mid, n in sends.items() if n > 1}
    doubted = set().union(*(k["doubted"] for k in kills))
    extra = sum(sends.values()) - len(sends)
    print(f"states {dict(states)}; sends {sum(sends.values())} for {len(sends)} messages; "
          f"sent twice: {len(twice)} ({extra} extra sends); in doubt over {len(kills)} kills: "
          f"{len(doubted)}; client: {client.requests} requests, {client.failed} died or "
          f"refused, {client.replayed} messages answered as duplicates of a lost answer")
    stored = {r[0] for r in pgdb.query(db, "SELECT id FROM sms_spool")}
    acked = {i for ids in client.acked.values() for i in ids}
    assert sum(states.values()) == TOTAL == len(acked), "each message stored exactly once"
    assert acked == stored
    assert set(states) <= {4, 5}, f"not all sent: {states}"
    assert set(sends) == stored, "none lost: every stored message went out"
    assert twice <= doubted, f"sent twice without being in doubt: {sorted(twice - doubted)}"
    for n, k in enumerate(kills, start=1):
        assert k["doubted"] <= k["in_flight"], f"kill {n}: in doubt but not in flight"
        assert len(k["doubted"]) <= IN_FLIGHT_BOUND, \
            f"kill {n}: {len(k['doubted'])} in doubt, more than the channels' concurrency"
    assert extra <= sum(len(k["doubted"]) for k in kills)
