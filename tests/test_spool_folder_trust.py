"""The spool folder is shared with whoever drops files, and reports are opened
in spreadsheets: links planted in the folder are never written through,
every row that will not go is listed in NAME.errors.csv, and no cell of a
CSV the gateway writes starts a formula."""

from __future__ import annotations

import asyncio
import csv
import io
import os
from pathlib import Path

from spool.base import ListFilter, State
from tests.conftest import Running
from tests.test_reports import get_csv
from tests.test_spool_folder import ProcessDied, drop, moved
from tests.test_stats import create

VICTIM_TEXT = "precious: the daemon must never write here\n"

ROWS = (
    "default;098344484;fine;\n"            # line 1: imported
    "default;098000000;listed number;\n"   # line 2: BLOCKED
    "default;12;not a number;\n"           # line 3: INVALID
    "nosuch;098344486;unknown campaign;\n"  # line 4: REJECTED
    "default;098344487;=1+2;\n"            # line 5: imported (a formula as text)
    "=cmd|' /C calc'!A0;098344488;x;\n"    # line 6: REJECTED, its raw a formula
)


def report(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh, delimiter=";"))


async def test_every_row_that_will_not_go_is_listed_with_its_state(gateway: Running) -> None:
    await gateway.store.blacklist_add([("+59898000000", None)])
    await drop(gateway, "mixed.csv", ROWS)
    await moved(gateway, "processed", "mixed.csv")
    rows = report(gateway.app.settings.spool_folder.path / "processed" / "mixed.errors.csv")
    assert rows[0] == ["line", "state", "reason", "raw"]
    listed = {int(r[0]): r[1:] for r in rows[1:]}
    assert sorted(listed) == [2, 3, 4, 6] and len(rows) == 5  # in line order, once each
    assert listed[2][:2] == ["BLOCKED", "destination is on the blacklist"]
    assert listed[2][2] == "default;098000000;listed number;"
    assert listed[3][0] == "INVALID" and listed[3][1].startswith("destination:")
    assert listed[4][:2] == ["REJECTED", "unknown campaign 'nosuch'"]
    # OWASP: a cell that would start a formula is shown as text.
    assert listed[6][0] == "REJECTED" and listed[6][2] == "'=cmd|' /C calc'!A0;098344488;x;"
    stored = {m.message: m.state for m in await gateway.store.list_messages(ListFilter(tenant=1))}
    assert set(stored) == {"fine", "listed number", "not a number", "=1+2"}
    assert (stored["listed number"], stored["not a number"]) == (State.BLOCKED, State.INVALID)


async def test_links_planted_in_the_folder_are_never_written_through(
        gateway: Running, tmp_path: Path) -> None:
    spool = gateway.app.settings.spool_folder.path
    victims = [tmp_path / "spool.db.copy", tmp_path / "other-victim"]
    for victim in victims:
        victim.write_text(VICTIM_TEXT)
    # Where the report is collected, and where it would land.
    (spool / "incoming" / ".planted.csv.errors.part").symlink_to(victims[0])
    (spool / "processed" / "planted.errors.csv").symlink_to(victims[1])
    await drop(gateway, "planted.csv", ROWS)
    # The report's usual name is a link: the pair goes beside it, under a free name.
    await moved(gateway, "processed", "planted.1.csv")
    assert [v.read_text() for v in victims] == [VICTIM_TEXT, VICTIM_TEXT]
    assert (spool / "processed" / "planted.errors.csv").is_symlink()
    listed = report(spool / "processed" / "planted.1.errors.csv")
    assert [int(r[0]) for r in listed[1:]] == [3, 4, 6]  # no blacklist here: 2 goes
    assert not (spool / "incoming" / ".planted.csv.errors.part").exists()


async def test_a_linked_processed_folder_parks_the_file(gateway: Running, tmp_path: Path,
                                                       capsys) -> None:
    spool = gateway.app.settings.spool_folder.path
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "parked.csv").write_text(VICTIM_TEXT)  # would be overwritten by the move

    async def ensured() -> bool:
        return (spool / "processed").is_dir()
    await gateway.wait_for(ensured)
    os.rmdir(spool / "processed")
    (spool / "processed").symlink_to(elsewhere, target_is_directory=True)
    path = await drop(gateway, "parked.csv", "default;098344484;hola;\n")

    async def imported():
        return await gateway.store.list_messages(ListFilter(tenant=1))
    [message] = await gateway.wait_for(imported)
    assert message.message == "hola"
    await gateway.wait_for(_logged(capsys, "spool_folder.file_parked"))
    await asyncio.sleep(0.3)  # several polls: the file stays, nothing moves through the link
    assert path.exists() and sorted(os.listdir(elsewhere)) == ["parked.csv"]
    assert (elsewhere / "parked.csv").read_text() == VICTIM_TEXT
    # Made right, the folder takes the file; it is not imported twice.
    (spool / "processed").unlink()
    (spool / "processed").mkdir()
    await moved(gateway, "processed", "parked.csv")
    assert len(await gateway.store.list_messages(ListFilter(tenant=1))) == 1


def _logged(capsys, event: str):
    seen: list[str] = []

    async def check() -> bool:
        out = capsys.readouterr()
        seen.append(out.out + out.err)
        return any(event in text for text in seen)
    return check


async def test_a_report_resumed_after_a_crash_lists_each_row_once(make_gateway,
                                                                  tmp_path: Path) -> None:
    from gateway.importer import FileImporter

    gw = await make_gateway(spool_folder={"enabled": False})
    await gw.store.blacklist_add([("+59898000000", None)])
    rows, expected = [], {}
    for n in range(1, 3001):
        if n % 7 == 0:
            rows.append(f"default;12;invalid {n};\n")
            expected[n] = "INVALID"
        elif n % 11 == 0:
            rows.append(f"default;098000000;blocked {n};\n")
            expected[n] = "BLOCKED"
        elif n % 13 == 0:
            rows.append(f"default;0983{n:05d};bad priority {n};high\n")
            expected[n] = "REJECTED"
        else:
            rows.append(f"default;0983{n:05d};row {n};\n")
    path, errors = tmp_path / "big.csv", tmp_path / "big.errors.csv"
    path.write_text("".join(rows))
    calls = 0
    real_insert = gw.store.insert_messages

    async def dying_insert(batch, **kw):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ProcessDied  # the second batch's report is on disk, its rows are not
        return await real_insert(batch, **kw)

    gw.store.insert_messages = dying_insert
    try:
        await FileImporter(gw.app.services, 1, batch_rows=1000).run(path, "k", errors_to=errors)
    except ProcessDied:
        pass
    gw.store.insert_messages = real_insert
    assert max(int(r[0]) for r in report(errors)[1:]) > 1000  # past the committed line
    await FileImporter(gw.app.services, 1, batch_rows=1000).run(path, "k", errors_to=errors)
    listed = report(errors)[1:]
    assert [int(r[0]) for r in listed] == sorted(expected)  # once each, in order
    assert {int(r[0]): r[1] for r in listed} == expected


async def test_reports_show_formulas_as_text(make_gateway) -> None:
    gw = await make_gateway()
    await create(gw, "=HYPERLINK(\"http://x\")")
    body = {"destination": "098344484", "message": "@SUM(A1)", "agent": "-2+3",
            "campaign": "=HYPERLINK(\"http://x\")"}
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(),
                               json=body) as r:
        assert r.status == 202, await r.text()
    [header, row] = await get_csv(gw, "/api/v1/reports/messages.csv")
    cells = dict(zip(header, row, strict=True))
    assert cells["campaign"] == "'=HYPERLINK(\"http://x\")"
    assert cells["destination"] == "'+59898344484"  # E.164 too: text keeps the "+"
    assert (cells["message"], cells["agent"]) == ("'@SUM(A1)", "'-2+3")
    assert cells["id"].isdigit()  # the report's own numbers are left alone
    [header, row] = await get_csv(gw, "/api/v1/reports/daily.csv")
    assert row[header.index("campaign")] == "'=HYPERLINK(\"http://x\")"
    assert row[header.index("total")] == "1"


def test_every_formula_start_is_prefixed() -> None:
    from spool.csvsafe import SafeWriter

    buf = io.StringIO()
    SafeWriter(buf, delimiter=";").writerow(
        ["=a", "+1", "-1", "@a", "\ta", "\ra", "a=b", 7, -1.5, ""])
    [row] = list(csv.reader(io.StringIO(buf.getvalue(), newline=""), delimiter=";"))
    assert row == ["'=a", "'+1", "'-1", "'@a", "'\ta", "'\ra", "a=b", "7", "-1.5", ""]
