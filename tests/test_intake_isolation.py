"""One bad request never fails its neighbours.

Requests are stored in shared transactions (group commit). Text no backend
can store (a lone UTF-16 surrogate, NUL) is refused at every door with the
field named; and whatever still makes the database refuse a row fails only
the request that carried it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.importer import FileImporter
from gateway.intake import Submission
from spool.base import NewMessage, RowRejected, State, StoreError
from tests.conftest import Running
from tests.proc import ROOT, smsgw, write_config

API = "/api/v1/messages"
LEGACY = "/Integra/resources/SMS/SendSMS"
GOOD = {"destination": "098344484", "message": "hola"}
# One poison per text a request carries; the field the 400 must name.
POISONS: list[tuple[dict[str, Any], str]] = [
    ({"message": "a\ud800b"}, "message"),
    ({"message": "a\x00b"}, "message"),
    ({"agent": "ana\udfff"}, "agent"),
    ({"idempotency_key": "k\ud800"}, "idempotency_key"),
    ({"campaign": "promo\udc80"}, "campaign"),
    ({"destination": "0983\ud80044484"}, "destination"),
    ({"data": {"order": ["x", "y\ud800"]}}, "data.order[1]"),
    ({"data": {"note": "x\x00"}}, "data.note"),
    ({"data": {"k\ud800": 1}}, "data"),
    ({"smart": {"retry_templates": ["again \ud800 {link}"]}}, "smart.retry_templates[0]"),
]


async def post(gw: Running, body: dict[str, Any], key: str | None = None
               ) -> tuple[int, dict[str, Any]]:
    async with gw.session.post(gw.url + API, json=body, headers=gw.headers(key)) as r:
        return r.status, await r.json()


async def test_poisoned_posts_never_fail_another_tenants(gateway: Running) -> None:
    """300 good posts from tenant B and 30 poisoned ones from tenant A, all at
    once: every one of B's is 202 and stored; each of A's is a 400 naming
    its field."""
    good = [post(gateway, {"destination": f"09834{i:04d}", "message": f"b {i}"},
                 gateway.other_key) for i in range(300)]
    bad = [post(gateway, {**GOOD, **POISONS[i % len(POISONS)][0]}) for i in range(30)]
    answers = await asyncio.gather(*good, *bad)
    assert [status for status, _ in answers[:300]] == [202] * 300
    for i, (status, body) in enumerate(answers[300:]):
        assert (status, body["field"]) == (400, POISONS[i % len(POISONS)][1]), body
    other = await gateway.store.tenant_by_name("other")
    for _, body in answers[:300]:
        assert (await gateway.store.get_message(other.id, body["id"])).tenant == other.id
    counts = await gateway.store.counts()
    assert sum(sum(c.by_state.values()) for c in counts) == 300


async def test_a_row_the_store_refuses_fails_only_its_request(gateway: Running) -> None:
    """Past the doors' checks (an internal caller, or a check not yet
    written): the group's transaction fails, is retried in halves, and only
    the culprits' requests get the error."""
    intake = gateway.app.services.intake
    other = await gateway.store.tenant_by_name("other")
    culprit = Submission(destination="098344484", message="x",
                         data={"at": object()})  # json cannot write it: fails mid-insert
    calls = [intake.submit(other.id, [Submission(destination=f"09834{i:04d}",
                                                  message=f"g {i}")]) for i in range(150)]
    for at in (3, 70, 71, 149):  # queued in the same tick: one group with the good ones
        calls.insert(at, intake.submit(1, [culprit]))
    answers = await asyncio.gather(*calls, return_exceptions=True)
    refused = [i for i, a in enumerate(answers) if isinstance(a, BaseException)]
    assert refused == [3, 70, 71, 149] and all(isinstance(answers[i], TypeError)
                                               for i in refused)
    counts = await gateway.store.counts()
    assert sum(sum(c.by_state.values()) for c in counts) == 150
    # And the HTTP door's requests meanwhile were never involved.
    assert (await post(gateway, GOOD))[0] == 202


async def test_a_batch_is_stored_whole_or_not_at_all(gateway: Running) -> None:
    intake = gateway.app.services.intake
    batch = [Submission(destination="098344484", message=f"m {i}") for i in range(4)]
    batch[2] = Submission(destination="098344484", message="x", data={"at": object()})
    with pytest.raises(TypeError):
        await intake.submit(1, batch, batch_field="messages")
    assert await gateway.store.counts() == []


async def test_unstorable_text_is_a_400_naming_the_field(gateway: Running) -> None:
    for poison, field in POISONS:
        status, body = await post(gateway, {**GOOD, **poison})
        assert (status, body.get("field")) == (400, field), (poison, body)
    batch = [dict(GOOD) for _ in range(5)]
    batch[3]["message"] = "x\ud800"
    status, body = await post(gateway, {"messages": batch})
    assert (status, body["field"]) == (400, "messages[3].message")
    assert await gateway.store.counts() == []


async def test_legacy_form_with_nul_is_a_400(gateway: Running) -> None:
    form = {"destination": "098344484", "message": "a\x00b", "agent": "ana"}
    async with gateway.session.post(gateway.url + LEGACY, data=form) as r:
        assert r.status == 400
        assert (await r.json())["field"] == "message"
    form = {"destination": "098344484", "message": "ok", "agent": "a\x00"}
    async with gateway.session.post(gateway.url + LEGACY, data=form) as r:
        assert (r.status, (await r.json())["field"]) == (400, "agent")


async def test_a_refused_row_leaves_the_store_writable(store: Any) -> None:
    """The database refusing a row is the row's fault: the store is not
    marked unwritable (readiness stays green), and the rows after go in."""
    for text in ("a\ud800b", "a\x00b"):
        try:
            await store.insert_messages([NewMessage(1, 1, "+59898344484", text)])
        except (RowRejected, ValueError):
            pass  # SQLite takes NUL; PostgreSQL's text refuses it
        except StoreError as err:
            pytest.fail(f"{text!r} was taken for the store being away: {err}")
    await store.check_writes()
    [ok] = await store.insert_messages([NewMessage(1, 1, "+59898344484", "fine")])
    assert ok.state == State.TO_PROCESS


async def test_csv_rows_with_unstorable_text_are_rejected_alone(make_gateway,
                                                                tmp_path: Path) -> None:
    gw = await make_gateway(spool_folder={"enabled": False})
    path = tmp_path / "poison.csv"
    path.write_bytes(b"default;098344481;one\n"
                     b"default;098344482;t\xed\xa0\x80wo\n"  # a surrogate, UTF-8-encoded
                     b"default;098344483;th\x00ree\n"
                     b"default;098344484;four\n")
    errors = tmp_path / "poison.errors.csv"
    summary = await FileImporter(gw.app.services, 1).run(path, "poison", errors_to=errors)
    assert (summary.imported, summary.rejected) == (2, 2)
    lines = {line.split(";")[0]: line for line in errors.read_text(encoding="utf-8").splitlines()}
    assert "not valid UTF-8" in lines["2"] and "NUL" in lines["3"]


def test_cli_send_refuses_text_that_is_not_utf8(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "smsgw.toml", {
        "storage": {"url": f"sqlite:///{tmp_path / 'spool.db'}"},
        "spool_folder": {"path": str(tmp_path / "spool")},
        "channels": [{"name": "loop-a", "driver": "loopback", "cost": 0.15}]})
    smsgw(cfg, "db", "migrate")
    # A shell argument that is not UTF-8 reaches Python surrogate-escaped.
    done = subprocess.run([sys.executable, "-m", "gateway", "-c", str(cfg), "send", "--to",
                           "098344484", "--text", b"caf\xe9"], capture_output=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 1, done
    assert b"message" in done.stderr and b"surrogate" in done.stderr
    assert b"Traceback" not in done.stderr
    ok = smsgw(cfg, "send", "--to", "098344484", "--text", "café")
    assert '"TO_PROCESS"' in ok.stdout
