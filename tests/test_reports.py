"""Reports and CSV uploads through the running daemon."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time

import aiohttp

from spool.base import State
from tests.conftest import Running
from tests.test_stats import create, send


async def get_csv(gw: Running, path: str, key: str | None = None,
                  **query: str) -> list[list[str]]:
    async with gw.session.get(f"{gw.url}{path}", headers=gw.headers(key), params=query) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/csv")
        return list(csv.reader(io.StringIO(await r.text()), delimiter=";"))


async def test_messages_csv_filters_and_streams_every_page(make_gateway) -> None:
    gw = await make_gateway()
    await create(gw, "bulk", enabled=False)
    for chunk in range(3):  # more than one keyset page of 1000
        await send(gw, "bulk", 900, start=chunk * 900)
    await send(gw, "default", 2, start=5000)
    async with gw.session.get(f"{gw.url}/api/v1/reports/messages.csv",
                              headers=gw.headers()) as r:
        assert r.headers.get("Transfer-Encoding") == "chunked"
        rows = list(csv.reader(io.StringIO(await r.text()), delimiter=";"))
    assert rows[0][:3] == ["id", "campaign", "destination"] and len(rows) == 1 + 2702
    bulk = await get_csv(gw, "/api/v1/reports/messages.csv", campaign="bulk", state="1")
    assert len(bulk) == 1 + 2700 and {r[1] for r in bulk[1:]} == {"bulk"}
    assert {r[4] for r in bulk[1:]} == {"TO_PROCESS"}
    ids = [int(r[0]) for r in bulk[1:]]
    assert ids == sorted(ids) and len(set(ids)) == 2700
    future = await get_csv(gw, "/api/v1/reports/messages.csv", **{"from": "2999-01-01"})
    past = await get_csv(gw, "/api/v1/reports/messages.csv", to="2000-01-01T00:00:00Z")
    assert len(future) == len(past) == 1


async def test_reports_are_tenant_scoped(make_gateway) -> None:
    gw = await make_gateway()
    await send(gw, "default", 3)
    theirs = await get_csv(gw, "/api/v1/reports/messages.csv", key=gw.other_key)
    assert len(theirs) == 1
    await create(gw, "secret")
    async with gw.session.get(f"{gw.url}/api/v1/reports/messages.csv",
                              headers=gw.headers(gw.other_key),
                              params={"campaign": "secret"}) as r:
        assert r.status == 422
    async with gw.session.get(f"{gw.url}/api/v1/reports/daily") as r:
        assert r.status == 401


async def test_daily_summary_counts_and_cost(make_gateway) -> None:
    gw = await make_gateway()
    await create(gw, "later", enabled=False)
    await send(gw, "default", 4)
    await send(gw, "later", 2, start=50)

    async def sent() -> bool:
        found = await gw.store.counts()
        return sum(c.by_state.get(int(State.SENT), 0) + c.by_state.get(int(State.DELIVERED), 0)
                   for c in found) == 4
    await gw.wait_for(sent)
    async with gw.session.get(f"{gw.url}/api/v1/reports/daily", headers=gw.headers()) as r:
        assert r.status == 200
        body = await r.json()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    days = {d["campaign"]: d for d in body["days"]}
    assert days["default"]["date"] == today and days["default"]["total"] == 4
    assert days["default"]["processed"] == 4 and abs(days["default"]["cost"] - 0.6) < 1e-9
    assert days["later"]["not_processed"] == 2 and days["later"]["cost"] == 0
    rows = await get_csv(gw, "/api/v1/reports/daily.csv", tz="America/Montevideo")
    assert rows[0][:3] == ["date", "campaign", "total"] and len(rows) == 3
    async with gw.session.get(f"{gw.url}/api/v1/reports/daily", headers=gw.headers(),
                              params={"from": str(time.time() - 200 * 86400)}) as r:
        assert r.status == 400 and (await r.json())["field"] == "from"


async def post_csv(gw: Running, path: str, text: str, key: str | None = None,
                   multipart: bool = False) -> tuple[int, dict]:
    if multipart:
        form = aiohttp.FormData()
        form.add_field("file", text.encode(), filename="up.csv", content_type="text/csv")
        data: object = form
        headers = gw.headers(key)
    else:
        data = text.encode()
        headers = {**gw.headers(key), "Content-Type": "text/csv"}
    async with gw.session.post(f"{gw.url}{path}", data=data, headers=headers) as r:
        return r.status, await r.json()


async def test_dncr_upload_follows_the_cli_rules(make_gateway) -> None:
    gw = await make_gateway()
    await create(gw, "promo", enabled=False)
    text = "phone;campaign\n098344484;\n+59898344485;promo\nnot-a-number;\n099111222;nope\n"
    status, body = await post_csv(gw, "/api/v1/blacklist/import", text, multipart=True)
    assert status == 200, body
    assert (body["added"], body["valid"], body["rejected"]) == (2, 2, 2)
    assert [e["line"] for e in body["errors"]] == [4, 5]
    status, again = await post_csv(gw, "/api/v1/blacklist/import", text)
    assert again["added"] == 0 and again["valid"] == 2
    # Another tenant may not write the global list.
    await create(gw, "theirs", key=gw.other_key)
    status, theirs = await post_csv(gw, "/api/v1/blacklist/import",
                                    "098000111;\n098000112;theirs\n", key=gw.other_key)
    assert theirs["added"] == 1 and "operator" in theirs["errors"][0]["reason"]
    await send_blocked_check(gw)


async def send_blocked_check(gw: Running) -> None:
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(), json={
            "destination": "098344484", "message": "hi", "campaign": "promo"}) as r:
        assert (await r.json())["state"] == State.BLOCKED


async def test_messages_upload_imports_like_the_spool_folder(make_gateway) -> None:
    gw = await make_gateway()
    await create(gw, "promo", enabled=False)
    text = ("campign;destiny;menssage;priority\npromo;098344484;hola;5\n"
            "promo;12;bad number;\nnope;098344485;x;\npromo;098344486;chau;\n")
    status, body = await post_csv(gw, "/api/v1/messages/import", text, multipart=True)
    assert status == 200, body
    assert (body["imported"], body["invalid"], body["rejected"]) == (2, 1, 1)
    assert body["errors"][0]["line"] == 4 and "nope" in body["errors"][0]["reason"]
    status, empty = await post_csv(gw, "/api/v1/messages/import", "")
    assert status == 400 and empty["field"] == "file"


async def test_uploads_have_a_size_limit(make_gateway) -> None:
    gw = await make_gateway(server={"max_upload_bytes": 2048})
    status, body = await post_csv(gw, "/api/v1/blacklist/import", "098344484;\n" * 400)
    assert status == 413 and "max_upload_bytes" in body["error"]
