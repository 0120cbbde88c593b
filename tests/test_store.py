"""Store behaviour that the HTTP tests do not reach: parts, inbound, counts."""

from __future__ import annotations

import time

import pytest

from spool.base import InboundFilter, InboundRecord, NewMessage, Report, Sent, State


async def sent_message(store, destination: str, refs: tuple[str, ...]) -> int:
    [ins] = await store.insert_messages([NewMessage(1, 1, destination, "x" * 400)])
    now = time.time()
    await store.claim("n", 1, now, now + 60, [1])
    await store.record([Sent(ins.id, "modem1", f"m-{ins.id}", 0.45, now,
                             part_refs=refs, destination=destination)], now)
    return ins.id


async def test_multipart_is_delivered_when_every_part_is(store) -> None:
    mid = await sent_message(store, "+59898344484", ("17", "18", "19"))

    def report(ref: str) -> Report:
        return Report("modem1", ref, True, None, time.time(), "+59898344484")
    assert await store.record_reports([report("17"), report("18")]) == []
    assert (await store.get_message(None, mid)).state == State.SENT
    assert await store.record_reports([report("19")]) == []
    m = await store.get_message(None, mid)
    assert m.state == State.DELIVERED and m.delivered_at
    assert "all 3 parts" in (await store.message_events(mid))[-1].note


async def test_wrapped_reference_matches_the_newest_send_to_that_number(store) -> None:
    old = await sent_message(store, "+59898344484", ("5",))
    other = await sent_message(store, "+59899111222", ("5",))
    new = await sent_message(store, "+59898344484", ("5",))
    unmatched = await store.record_reports(
        [Report("modem1", "5", False, "undeliverable", time.time(), "+59898344484")])
    assert unmatched == []
    assert (await store.get_message(None, new)).state == State.FAILED
    assert (await store.get_message(None, old)).state == State.SENT
    assert (await store.get_message(None, other)).state == State.SENT


async def test_unknown_reports_are_returned_for_a_later_try(store) -> None:
    r = Report("modem1", "99", True, None, time.time(), "+59898344484")
    assert await store.record_reports([r]) == [r]


async def test_inbound_is_stored_once_per_reference(store) -> None:
    rec = InboundRecord("modem1", "+59898344484", "+59899000000", "STOP", time.time(),
                        provider_ref="pdu-sha-1", tenant=1)
    first, dup1 = await store.store_inbound(rec)
    again, dup2 = await store.store_inbound(rec)
    assert (dup1, dup2) == (False, True) and first == again
    no_ref = InboundRecord("modem1", "+59898344484", "x", "hi", time.time(), tenant=1)
    a, _ = await store.store_inbound(no_ref)
    b, _ = await store.store_inbound(no_ref)
    assert a != b  # without a reference nothing can be recognised as a repeat
    assert [i.text for i in await store.list_inbound(InboundFilter(tenant=1))] == [
        "STOP", "hi", "hi"]


async def test_counts_follow_every_state_change(store) -> None:
    await store.insert_messages([NewMessage(1, 1, "+59898344484", "a"),
                                 NewMessage(1, 1, "+59898344485", "b", state=State.INVALID,
                                            error="bad")])
    now = time.time()
    [c] = await store.claim("n", 5, now, now + 60, [1])
    await store.record([Sent(c.id, "x", "r", 0.2, now)], now)
    [counts] = await store.counts()
    assert counts.by_state == {State.SENT: 1, State.INVALID: 1}  # zero rows are left out
    assert counts.cost == pytest.approx(0.2)
    assert await store.pending_count() == 0


async def test_a_read_report_settles_a_message_never_reported_delivered(store) -> None:
    from drivers.base import DeliveryReport
    from gateway.recorder import Recorder

    [ins] = await store.insert_messages([NewMessage(1, 1, "+59898344484", "x",
                                                    kind="whatsapp")])
    now = time.time()
    await store.claim("n", 1, now, now + 60, [1])
    await store.record([Sent(ins.id, "wa", "wamid.1", 0.5, now)], now)
    recorder = Recorder(store)
    await recorder.report(DeliveryReport("wa", "wamid.1", True, final=False,
                                         detail={"status": "sending"}))
    await recorder.flush()
    assert (await store.get_message(None, ins.id)).state == State.SENT
    await recorder.report(DeliveryReport("wa", "wamid.1", True, final=False,
                                         detail={"status": "read"}))
    await recorder.flush()
    assert (await store.get_message(None, ins.id)).state == State.DELIVERED
