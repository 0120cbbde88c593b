"""Which of our WhatsApp channels takes a webhook change, without I/O.

A Meta app has one callback URL, and Meta sends there the webhooks of every
phone number of the app. So whichever channel's hook receives a POST (its
signature checked with that channel's app secret) hands each change to the
channel of the number the change names, provided that channel is of the same
app: the signature vouches for that app's numbers only. A change for a number
of another app, or for one this gateway does not run, is left out, never
handed to a wrong channel: its delivery reports would match no message (they
are matched by channel and wamid), and replies and marketing stops would land
on the wrong number.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Line(Generic[T]):
    """One configured number, as routing sees its channel."""

    channel: T
    name: str
    phone_number_id: str
    app_secret: str = field(repr=False)  # compared, never shown

    def same_app(self, other: Line[T]) -> bool:
        return hmac.compare_digest(self.app_secret.encode(), other.app_secret.encode())


class Numbers(Generic[T]):
    """The numbers one channel's hook speaks for: its own (`home`) and those
    of the other channels of the same Meta app."""

    def __init__(self, home: Line[T], others: Iterable[Line[T]] = ()) -> None:
        self.home = home
        self._ours: dict[str, Line[T]] = {home.phone_number_id: home}
        self._foreign: dict[str, str] = {}  # phone_number_id -> channel of another app
        # (phone_number_id, channel kept, channel left out): a number configured twice.
        self.clashes: list[tuple[str, str, str]] = []
        for line in others:
            self._add(line)

    def _add(self, line: Line[T]) -> None:
        number = line.phone_number_id
        if not line.same_app(self.home):
            self._foreign.setdefault(number, line.name)
        elif number in self._ours:
            # Home first, then config order: the hook that always took this
            # number's changes keeps taking them.
            self.clashes.append((number, self._ours[number].name, line.name))
        else:
            self._ours[number] = line

    def take(self, number: str | None) -> T | str:
        """The channel for changes naming `number`, or why there is none."""
        if number is None:
            if len(self._ours) == 1:  # no doubt which number it is about
                return self.home.channel
            return "no metadata.phone_number_id, and the app has several numbers here"
        if number in self._ours:
            return self._ours[number].channel
        if number in self._foreign:
            return (f"a number of another Meta app (channel {self._foreign[number]!r} has "
                    "another app secret)")
        return "no channel has this phone_number_id"
