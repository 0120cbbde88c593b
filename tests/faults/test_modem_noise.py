"""Modems that misbehave in ways tests/test_serial_failures.py does not cover:
garbage bytes on the line (between answers, inside them, right behind the
AT+CMGS prompt), and the only modem of a campaign hanging, or unplugged and
replugged, in the middle of a burst (there, a second modem takes over).

The modem is the pty simulator; the noise is added on its side of the line,
so the driver reads it from a real serial device like line noise or a
firmware printing junk after a brown-out. Status reports are off except
where a test is about them, so that no test depends on when a report
happens to arrive. Bounded: seconds each.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from drivers.simulators.modem import ModemSimulator
from spool.base import State
from tests.faults.common import settle
from tests.test_serial_gateway import DONE, channel, serial_channel, settled, submit, wait_up

pytestmark = [pytest.mark.timeout(60), pytest.mark.parametrize("backend", ["sqlite"])]

# Bytes a noisy line produces; CR and LF are left out so that a burst never
# forms or ends a line by itself, and Ctrl-Z/ESC because the driver strips them.
NOISE = bytes(b for b in range(1, 256) if b not in b"\r\n\x1a\x1b")


@dataclass
class NoisyModem(ModemSimulator):
    seed: int = 0
    between_rate: float = 0.0  # chance of a junk line before any answer
    garble_cmgs_ok: int = 0  # this many AT+CMGS answers lose their final OK to noise
    garble_cmgs_ref: int = 0  # this many lose their +CMGS: <mr> line (OK intact)
    junk_lines: int = 0
    garbled: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._rng = random.Random(self.seed)

    def _junk(self) -> str:
        return bytes(self._rng.choice(NOISE) for _ in range(self._rng.randint(3, 12))
                     ).decode("latin-1")

    def _lines(self, *lines: str) -> None:
        out = list(lines)
        if out[:1] and out[0].startswith("+CMGS:"):
            if self.garble_cmgs_ok and out[-1:] == ["OK"]:
                self.garble_cmgs_ok -= 1
                self.garbled.append(f"OK of {out[0]}")
                out[-1] = "O" + self._junk() + "K"
            elif self.garble_cmgs_ref:
                self.garble_cmgs_ref -= 1
                self.garbled.append(out[0])
                out[0] = out[0][:3] + self._junk() + out[0][3:]
        if self._rng.random() < self.between_rate:
            self.junk_lines += 1
            out.insert(0, self._junk())
        super()._lines(*out)


@dataclass
class ChattyAfterPrompt(ModemSimulator):
    """Says something unsolicited right behind every AT+CMGS prompt, in the
    same burst of bytes: a modem reporting signal (^RSSI) or a new SMS at
    that moment."""

    def _write(self, text: str) -> None:
        if text == "\r\n> ":
            text += "\r\n^RSSI: 18\r\n"
        super()._write(text)


@pytest.fixture
async def noisy(tmp_path):
    made: list[ModemSimulator] = []

    async def make(name: str, kind: type[ModemSimulator] = NoisyModem, **options):
        sim = await kind(tmp_path / f"tty{name}", **options).start()
        made.append(sim)
        return sim

    yield make
    for sim in made:
        await sim.close()


def numbers(n: int, start: int) -> list[str]:
    return [f"+5989834{start + i:04d}" for i in range(n)]


def inits(sim: ModemSimulator) -> int:
    """How many times the driver ran its init sequence (opened the port)."""
    return sum(c == "ATZ" for c in sim.commands)


async def test_junk_lines_between_answers_are_ignored(noisy, make_gateway) -> None:
    sim = await noisy("m1", seed=7, between_rate=0.4, auto_reports=False)
    gw = await make_gateway(channels=[serial_channel("m1", sim)])
    await wait_up(gw, "m1")
    dests = numbers(30, 100)
    ids = await submit(gw, [(n, f"noise {i}") for i, n in enumerate(dests)])
    done = await settled(gw, ids, DONE)
    went = Counter(s.destination for s in sim.sent)
    print(f"\n{sim.junk_lines} junk lines among {len(sim.commands)} commands; "
          f"sent {sum(went.values())} for {len(dests)} messages; inits {inits(sim)}")
    assert sim.junk_lines >= 10, "the noise was not injected"
    assert {m.channel for m in done} == {"m1"}
    assert went == Counter(dests), "each message reached the modem exactly once"
    assert inits(sim) == 1, "the port was never dropped for noise it can read past"
    assert channel(gw, "m1").health().up


async def test_noise_inside_an_answer_resets_the_port_and_it_recovers(
        noisy, make_gateway) -> None:
    sim = await noisy("m1", seed=11, between_rate=0.2, garble_cmgs_ok=2, auto_reports=False)
    gw = await make_gateway(channels=[serial_channel("m1", sim, block_after=100)],
                            dispatcher={"max_attempts": 10})
    await wait_up(gw, "m1")
    dests = numbers(20, 200)
    ids = await submit(gw, [(n, f"garbled {i}") for i, n in enumerate(dests)])
    done = await settled(gw, ids, DONE, timeout=30)
    went = Counter(s.destination for s in sim.sent)
    twice = {d: n for d, n in went.items() if n > 1}
    print(f"\ngarbled: {sim.garbled}; inits {inits(sim)}; sent {sum(went.values())} for "
          f"{len(dests)} messages; twice: {twice}")
    assert len(sim.garbled) == 2
    assert set(went) == set(dests) and all(m.state in DONE for m in done)
    # An unreadable answer to AT+CMGS leaves that message in doubt: the modem
    # may have sent it. Only those may go out twice.
    assert sum(went.values()) - len(dests) <= len(sim.garbled)
    assert inits(sim) > 1, "a garbled final result fails the command: the port is reopened"
    await wait_up(gw, "m1")


async def test_an_unsolicited_line_right_after_the_prompt_does_not_lose_it(
        noisy, make_gateway) -> None:
    sim = await noisy("m1", kind=ChattyAfterPrompt)
    gw = await make_gateway(channels=[serial_channel("m1", sim)])
    await wait_up(gw, "m1")
    dests = numbers(3, 500)
    ids = await submit(gw, [(n, f"prompt {i}") for i, n in enumerate(dests)])

    async def all_sent() -> bool:
        return all([(await gw.store.get_message(None, i)).state in DONE for i in ids])
    done = await settle(all_sent, 10)
    errors = {(await gw.store.get_message(None, i)).error for i in ids}
    print(f"\nsent {len(sim.sent)} of {len(dests)} in 10 s; inits {inits(sim)}; "
          f"errors {errors}")
    assert done and Counter(s.destination for s in sim.sent) == Counter(dests), \
        f"the prompt was taken for an answer line: {errors}"
    assert inits(sim) == 1, "no command timed out, the port was never reopened"


async def test_an_unreadable_reference_is_not_a_reason_to_send_again(
        noisy, make_gateway) -> None:
    # "+C<noise>MGS: 17" then "OK": the modem accepted the message; only the
    # reference (used to match delivery reports) is lost.
    sim = await noisy("m1", seed=5, garble_cmgs_ref=1, auto_reports=False)
    gw = await make_gateway(channels=[serial_channel("m1", sim)],
                            dispatcher={"max_attempts": 5})
    await wait_up(gw, "m1")
    dests = numbers(5, 300)
    ids = await submit(gw, [(n, f"ref {i}") for i, n in enumerate(dests)])
    done = await settled(gw, ids, DONE | {State.FAILED})
    went = Counter(s.destination for s in sim.sent)
    print(f"\ngarbled: {sim.garbled}; sent {dict(went)}; "
          f"states {[m.state.name for m in done]}")
    assert sim.garbled
    assert went == Counter(dests), "a message the modem answered OK to went out once"


async def test_unplugged_and_replugged_mid_burst_on_the_only_modem(
        noisy, make_gateway) -> None:
    sim = await noisy("m1", cmgs_delay_s=0.01, auto_reports=False)
    sim.vanish_after_sends = 8
    gw = await make_gateway(channels=[serial_channel("m1", sim)],
                            dispatcher={"max_attempts": 10})
    await wait_up(gw, "m1")
    dests = numbers(40, 400)
    ids = await submit(gw, [(n, f"burst {i}") for i, n in enumerate(dests)])

    async def unplugged() -> bool:
        return not sim.link.exists() and not channel(gw, "m1").health().up
    await gw.wait_for(unplugged)
    before = len(sim.sent)
    await asyncio.sleep(1.0)  # unplugged for a second, with the burst waiting
    assert len(sim.sent) == before, "nothing can go out through an unplugged modem"
    states = Counter([(await gw.store.get_message(None, i)).state.name for i in ids])
    assert states["FAILED"] == 0, f"a missing modem must not fail messages: {states}"
    await sim.come_back()
    done = await settled(gw, ids, DONE, timeout=30)
    went = Counter(s.destination for s in sim.sent)
    print(f"\nunplugged after {before} sends, states meanwhile {dict(states)}; "
          f"after replug: sent {sum(went.values())} for {len(dests)}, inits {inits(sim)}")
    assert {m.channel for m in done} == {"m1"}
    assert set(went) == set(dests), "every message went out after the replug"
    assert sum(went.values()) - len(dests) <= 1, "at most the one in flight, twice"
    assert inits(sim) == 2, "the same device came back and was initialised again"


async def test_the_only_modem_hangs_mid_burst_and_the_queue_waits_for_it(
        noisy, make_gateway) -> None:
    sim = await noisy("m1", cmgs_delay_s=0.01, auto_reports=False)
    gw = await make_gateway(channels=[serial_channel("m1", sim)])
    await wait_up(gw, "m1")
    dests = numbers(30, 600)
    ids = await submit(gw, [(n, f"hang {i}") for i, n in enumerate(dests)])

    async def some_sent() -> bool:
        return len(sim.sent) >= 5
    await gw.wait_for(some_sent)
    sim.hang_on_cmgs = True  # mute from the next AT+CMGS on

    async def down() -> bool:
        return sim.hung and not channel(gw, "m1").health().up
    await gw.wait_for(down)
    before = len(sim.sent)
    await asyncio.sleep(1.0)  # hung for a second, resets unanswered, the burst waiting
    states = Counter([(await gw.store.get_message(None, i)).state.name for i in ids])
    assert len(sim.sent) == before
    assert states["FAILED"] == 0, f"a hung modem must not fail messages: {states}"
    sim.unhang()
    done = await settled(gw, ids, DONE, timeout=30)
    went = Counter(s.destination for s in sim.sent)
    print(f"\nhung after {before} sends, states meanwhile {dict(states)}; after it answered "
          f"again: sent {sum(went.values())} for {len(dests)}, inits {inits(sim)}")
    assert {m.channel for m in done} == {"m1"}
    assert went == Counter(dests), "each message went out once: the hung one never had"
    assert inits(sim) >= 2, "the port was reset and initialised again"
