"""PostgreSQL figures: ingest and dispatch on a shared spool, with 1, 2 and 3
daemons on one database, each beside the SQLite figure of the same run.

    .venv/bin/python bench/postgres.py [--quick] [--pg-url URL]

The server is the one `.ci/postgres-up` prepares (or `--pg-url`, or
$SMSGW_TEST_PG_URL); every run works in a schema of its own and drops it.
Daemons of one run share the schema and differ in port, node name and
channel names. Intake: the default campaigns are stopped, so the figure is
intake alone, and the load is split evenly over the daemons. Dispatch: N
rows are written straight into the spool (its triggers keep history and
counters as intake would), the campaign is started, and the clock runs
until every row is SENT. The scale factor is a run's figure over the
one-daemon PostgreSQL figure; all daemons share this machine's CPUs, so
it says how well they share the database, not what more hosts would add.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg  # noqa: E402
import dispatch  # noqa: E402
from harness import (  # noqa: E402
    ROOT,
    BenchError,
    Daemon,
    Figure,
    Workdir,
    _toml,
    log,
    table,
)
from ingest import TARGET_RPS  # noqa: E402
from loadgen import LoadGen, LoadResult  # noqa: E402

TARGET_MSGS = dispatch.TARGET_MSGS
_DONE = ("SELECT coalesce(sum(n), 0) FROM (SELECT n FROM spool_counts WHERE state IN (4, 5) "
         "UNION ALL SELECT n FROM spool_deltas WHERE state IN (4, 5)) c")


def pg(url: str, sql: str, *args: Any) -> Any:
    """One statement on the bench's schema; the value of the first column."""
    async def go() -> Any:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()
    return asyncio.run(go())


@dataclass
class PgWork(Workdir):
    """One daemon's directory and config, on a PostgreSQL spool."""

    storage_url: str = ""
    node: str = "bench"

    @classmethod
    def on(cls, base: Path, url: str, node: str) -> PgWork:
        work = cls(Path(tempfile.mkdtemp(prefix=f"pg-{node}-", dir=base)), "full",
                   storage_url=url, node=node)
        work.write_config()
        return work

    def write_config(self) -> None:
        raw: dict[str, Any] = {
            "server": {"host": "127.0.0.1", "port": self.port, "public_base_url": self.url},
            "storage": {"url": self.storage_url, "synchronous": "full", "pool_size": 10},
            "dispatcher": {"batch_size": 50, "node_name": self.node, "shutdown_grace_s": 2},
            "spool_folder": {"path": str(self.path / "incoming")},
            "logging": {"level": "warning"},
        }
        lines = []
        for section, values in raw.items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {_toml(v)}" for k, v in values.items()] + [""]
        for suffix in ("a", "b"):
            lines.append("[[channels]]")
            lines += [f"{k} = {_toml(v)}" for k, v in {
                "name": f"{self.node}-{suffix}", "driver": "loopback", "cost": 0.15,
                "latency_ms": 0, "delivery_reports": False, "concurrency": 64}.items()] + [""]
        self.config.write_text("\n".join(lines))


@dataclass
class Cluster:
    """k daemons on one fresh schema."""

    base: Path
    server_url: str
    size: int
    schema: str = field(default_factory=lambda: f"bench_{os.getpid()}_{time.monotonic_ns()}")
    works: list[PgWork] = field(default_factory=list)
    daemons: list[Daemon] = field(default_factory=list)

    @property
    def url(self) -> str:
        sep = "&" if "?" in self.server_url else "?"
        return f"{self.server_url}{sep}search_path={self.schema}"

    def __enter__(self) -> Cluster:
        pg(self.server_url, f'CREATE SCHEMA "{self.schema}"')
        self.works = [PgWork.on(self.base, self.url, f"node{i + 1}") for i in range(self.size)]
        self.works[0].cli("db", "migrate")
        return self

    def start(self) -> None:
        self.daemons = [Daemon(w).start() for w in self.works]

    def __exit__(self, *exc: object) -> None:
        for d in self.daemons:
            d.stop()
        for w in self.works:
            w.remove()
        pg(self.server_url, f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


def split_load(load: LoadGen, urls: list[str], key: str, duration_s: float) -> LoadResult:
    """The same total concurrency, shared evenly by the daemons, at the same time."""
    parts = [LoadGen(load.wrk, max(1, load.connections // len(urls))) for _ in urls]
    with ThreadPoolExecutor(len(urls)) as pool:
        runs = [pool.submit(p.run, u, "json", key, duration_s, offset=i * 200_000)
                for i, (p, u) in enumerate(zip(parts, urls, strict=True))]
        results = [r.result() for r in runs]
    return LoadResult(tool=f"{results[0].tool} x{len(results)}",
                      duration_s=max(r.duration_s for r in results),
                      responses=sum(r.responses for r in results),
                      ok=sum(r.ok for r in results), non_2xx=sum(r.non_2xx for r in results),
                      socket_errors=sum(r.socket_errors for r in results),
                      cut_off=sum(r.cut_off for r in results),
                      p50_ms=max((r.p50_ms or 0) for r in results),
                      p99_ms=max((r.p99_ms or 0) for r in results))


def sqlite_ingest(base: Path, load: LoadGen, duration_s: float) -> float:
    work = Workdir.create(base, "sqlite-ingest", "full")
    key = work.add_tenant("bench")
    work.campaigns("stop", ("default", "bench"))
    with Daemon(work):
        r = split_load(load, [work.url], key, duration_s)
    work.remove()
    log(f"  SQLite ingest json, 1 daemon: {r.ok_per_s:,.0f} req/s")
    return r.ok_per_s


def pg_ingest(base: Path, server: str, load: LoadGen, size: int,
              duration_s: float) -> tuple[float, int]:
    with Cluster(base, server, size) as cluster:
        key = cluster.works[0].add_tenant("bench")
        cluster.works[0].campaigns("stop", ("default", "bench"))
        cluster.start()
        r = split_load(load, [w.url for w in cluster.works], key, duration_s)
        for d in cluster.daemons:
            d.check_alive()
        stored = pg(cluster.url, "SELECT count(*) FROM sms_spool")
    log(f"  PostgreSQL ingest json, {size} daemon(s): {r.ok_per_s:,.0f} req/s "
        f"({r.ok:,} 2xx, {stored:,} rows stored)")
    if not r.ok <= stored <= r.ok + r.cut_off:
        raise BenchError(f"{stored} rows stored for {r.ok} 2xx responses")
    return r.ok_per_s, stored


def prefill(url: str, rows: int) -> None:
    """`rows` messages in state 1, through the spool's own triggers."""
    now = time.time()
    for start in range(0, rows, 50_000):
        pg(url, "INSERT INTO sms_spool (tenant, campaign, destination, message, priority, "
                "state, note, kind, segments, encoding, created_at, updated_at) "
                "SELECT 1, 1, '+59898' || lpad((g % 1000000)::text, 6, '0'), "
                "'Bench dispatch ' || g || ' your code is ' || (g % 1000000) || ' ok', 0, 1, "
                "'accepted', 'sms', 1, 'gsm7', $3, $3 "
                "FROM generate_series($1::bigint, $2::bigint) g",
           start + 1, min(rows, start + 50_000), now)
    pg(url, "ANALYZE sms_spool")


def pg_dispatch(base: Path, server: str, size: int, rows: int, max_s: float) -> float:
    with Cluster(base, server, size) as cluster:
        cluster.works[0].campaigns("stop")
        prefill(cluster.url, rows)
        cluster.start()
        cluster.works[0].campaigns("start")
        began = time.perf_counter()
        done = 0
        while done < rows and time.perf_counter() - began < max_s:
            for d in cluster.daemons:
                d.check_alive()
            time.sleep(0.2)
            done = int(pg(cluster.url, _DONE))
        elapsed = time.perf_counter() - began
        exact = pg(cluster.url, "SELECT count(*) FROM sms_spool WHERE state IN (4, 5)")
        per_node = pg(cluster.url, "SELECT string_agg(c, ', ') FROM (SELECT node || ' ' || "
                                   "count(*) AS c FROM message_events WHERE state = 2 "
                                   "GROUP BY node ORDER BY node) x")
    if exact != done:
        raise BenchError(f"counters say {done:,} sent, count(*) says {exact:,}")
    log(f"  PostgreSQL dispatch, {size} daemon(s): {done:,} of {rows:,} in {elapsed:.1f}s = "
        f"{done / elapsed:,.0f} msgs/s (claims per node: {per_node})")
    return done / elapsed


def sqlite_dispatch(base: Path, rows: int, max_s: float) -> float:
    [figure], _ = dispatch.run(base, dispatch.DispatchOptions(rows, "full", max_s, 1.0))
    if figure.value is None or figure.failed:
        raise BenchError(f"SQLite dispatch failed: {figure.failed}")
    return figure.value


def server_url(given: str | None) -> str:
    if given:
        return given
    if os.environ.get("SMSGW_TEST_PG_URL"):
        return os.environ["SMSGW_TEST_PG_URL"]
    done = subprocess.run(["bash", str(ROOT / ".ci" / "postgres-up")], capture_output=True,
                          text=True, env={**os.environ, "PG_CHECK_PYTHON": sys.executable})
    if done.returncode != 0:
        raise BenchError(f"no PostgreSQL server: {done.stderr.strip()[-400:]}")
    return done.stdout.strip()


def figures(args: argparse.Namespace, base: Path) -> list[Figure]:
    server = server_url(args.pg_url)
    load = LoadGen.pick("auto", not args.no_install, args.connections)
    log(f"postgres: load tool {load.name}, concurrency {args.connections}, "
        f"{args.duration:g}s per load; dispatch of {args.rows:,} rows; {os.cpu_count()} CPUs")
    lite_rps = sqlite_ingest(base, load, args.duration)
    lite_msgs = sqlite_dispatch(base, args.rows, args.max_s)
    out = []
    one_rps = one_msgs = None
    for size in (1, 2, 3):
        rps, _ = pg_ingest(base, server, load, size, args.duration)
        msgs = pg_dispatch(base, server, size, args.rows, args.max_s)
        one_rps, one_msgs = one_rps or rps, one_msgs or msgs
        out.append(Figure(f"PostgreSQL ingest json, {size} daemon(s)", "req/s", rps,
                          "SQLite 1 daemon", lite_rps, TARGET_RPS,
                          note=f"scale factor {rps / one_rps:.2f} vs 1 daemon"))
        out.append(Figure(f"PostgreSQL dispatch, {size} daemon(s)", "msgs/s", msgs,
                          "SQLite 1 daemon", lite_msgs, TARGET_MSGS,
                          note=f"scale factor {msgs / one_msgs:.2f} vs 1 daemon"))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short loads, small spools")
    p.add_argument("--pg-url", help="server (default: $SMSGW_TEST_PG_URL or .ci/postgres-up)")
    p.add_argument("--duration", type=float, help="seconds per HTTP load (10; quick 3)")
    p.add_argument("--rows", type=int, help="rows to dispatch (100000; quick 10000)")
    p.add_argument("--max-s", type=float, default=150.0, help="dispatch time limit")
    p.add_argument("--connections", type=int, default=48, help="HTTP concurrency in all")
    p.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    args = p.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.rows = args.rows or (10_000 if args.quick else 100_000)
    base = Path(tempfile.mkdtemp(prefix="smsgw-bench-pg-"))
    began = time.perf_counter()
    try:
        got = figures(args, base)
    except BenchError as err:
        print(f"error: {err}")
        return 1
    print()
    print(f"smsgw PostgreSQL bench ({time.perf_counter() - began:.0f}s, "
          f"concurrency {args.connections}, {os.cpu_count()} CPUs)")
    print(table(got))
    return 0


if __name__ == "__main__":
    sys.exit(main())
