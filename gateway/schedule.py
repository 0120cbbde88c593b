"""Campaign sending windows: when a campaign may send, in its own local time.

Windows are wall-clock times, so "09:00-18:00" stays 09:00-18:00 across a
DST change (the day is then 23 or 25 hours long, the window is not). A
window that crosses midnight belongs to the day it starts on: "fri
22:00-02:00" is open early Saturday, not early Friday.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAYS = {name: day for names in (DAY_NAMES, _FULL_NAMES) for day, name in enumerate(names)}
_EVERY_DAY = frozenset(range(7))
_MAX_ZONE_NAME = 64  # the longest in the tz database is about 30


@dataclass(frozen=True, slots=True)
class Window:
    days: frozenset[int]  # 0 = Monday .. 6 = Sunday
    start: datetime.time
    # end <= start: the window ends on the next day (start == end: 24 hours)
    end: datetime.time

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start


@dataclass(frozen=True, slots=True)
class Schedule:
    timezone: str
    windows: tuple[Window, ...]
    exceptions: frozenset[datetime.date]  # local dates closed all day


def is_open(schedule: Schedule | None, now: float) -> bool:
    """May a campaign with `schedule` send at Unix time `now`? None: always."""
    if schedule is None:
        return True
    local = datetime.datetime.fromtimestamp(now, ZoneInfo(schedule.timezone))
    today = local.date()
    if today in schedule.exceptions:
        return False
    # An exception date also cancels the part of its own late window that
    # runs past midnight: the window belongs to the closed date.
    yesterday_counts = today - datetime.timedelta(days=1) not in schedule.exceptions
    weekday, clock = local.weekday(), local.time()
    return any(_window_open(w, weekday, clock, yesterday_counts) for w in schedule.windows)


def _window_open(
    window: Window, weekday: int, clock: datetime.time, yesterday_counts: bool
) -> bool:
    if not window.crosses_midnight:
        return weekday in window.days and window.start <= clock < window.end
    if weekday in window.days and clock >= window.start:
        return True
    return yesterday_counts and (weekday - 1) % 7 in window.days and clock < window.end


# -- dict form ----------------------------------------------------------------


def parse_schedule(obj: Mapping[str, Any]) -> Schedule:
    """Build a Schedule from its JSON form; ValueError names the bad field.

    `{"timezone": "America/Montevideo", "windows": [{"days": "mon-fri",
    "start": "09:00", "end": "18:00"}], "exceptions": ["2026-12-25"]}`
    """
    obj = _mapping(obj, "schedule", required={"timezone", "windows"}, optional={"exceptions"})
    windows = obj["windows"]
    # An empty list is allowed: it is how a campaign is held closed (the
    # campaign cache falls back to it for a stored schedule that stopped parsing).
    if not isinstance(windows, Sequence) or isinstance(windows, str):
        raise ValueError("schedule.windows: expected a list of windows")
    exceptions = obj.get("exceptions", [])
    if not isinstance(exceptions, Sequence) or isinstance(exceptions, str):
        raise ValueError("schedule.exceptions: expected a list of YYYY-MM-DD dates")
    return Schedule(
        timezone=_parse_timezone(obj["timezone"]),
        windows=tuple(_parse_window(w, f"schedule.windows[{i}]") for i, w in enumerate(windows)),
        exceptions=frozenset(
            _parse_date(d, f"schedule.exceptions[{i}]") for i, d in enumerate(exceptions)
        ),
    )


def schedule_to_dict(s: Schedule) -> dict[str, Any]:
    """The JSON form `parse_schedule` reads back to an equal Schedule."""
    return {
        "timezone": s.timezone,
        "windows": [
            {"days": _days_to_json(w.days), "start": _hhmm(w.start), "end": _hhmm(w.end)}
            for w in s.windows
        ],
        "exceptions": [d.isoformat() for d in sorted(s.exceptions)],
    }


def _mapping(
    obj: object, where: str, *, required: set[str], optional: set[str]
) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise ValueError(f"{where}: expected an object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - required - optional, key=str)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown key")
    missing = sorted(required - set(obj))
    if missing:
        raise ValueError(f"{where}.{missing[0]}: required")
    return obj


def _parse_timezone(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("schedule.timezone: expected an IANA zone name like America/Montevideo")
    try:
        zone(value)
    except ValueError as err:
        raise ValueError(f"schedule.timezone: {err}") from None
    return value


def zone(name: str) -> ZoneInfo:
    """The tz database zone `name`, or ValueError. A name is a path under the
    zoneinfo folder: "America" is a directory (IsADirectoryError), 300
    characters too long a file name (OSError), "../etc" outside it."""
    if len(name) > _MAX_ZONE_NAME:
        raise ValueError(f"unknown time zone {name[:_MAX_ZONE_NAME]!r}...")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}") from None


def _parse_window(obj: object, where: str) -> Window:
    obj = _mapping(obj, where, required={"days", "start", "end"}, optional=set())
    return Window(
        days=_parse_days(obj["days"], f"{where}.days"),
        start=_parse_time(obj["start"], f"{where}.start"),
        end=_parse_time(obj["end"], f"{where}.end"),
    )


def _parse_days(value: object, where: str) -> frozenset[int]:
    """"*", "mon-fri", "sat", "mon,wed" or a list of names and ranges."""
    if value == "*":
        return _EVERY_DAY
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, Sequence) or not items:
        raise ValueError(f"{where}: expected \"*\", a range like mon-fri, or a list of days")
    days: set[int] = set()
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{where}: expected day names, got {item!r}")
        days |= _day_range(item, where)
    return frozenset(days)


def _day_range(item: str, where: str) -> set[int]:
    ends = [name.strip() for name in item.lower().split("-")]
    if len(ends) > 2 or any(name not in _DAYS for name in ends):
        hint = "use mon..sun, a range like mon-fri, or *"
        raise ValueError(f"{where}: unknown day {item!r} ({hint})")
    start, stop = _DAYS[ends[0]], _DAYS[ends[-1]]
    # "fri-mon" wraps over the weekend.
    return {(start + i) % 7 for i in range((stop - start) % 7 + 1)}


def _parse_time(value: object, where: str) -> datetime.time:
    if isinstance(value, str) and len(value) == 5 and value[2] == ":" and value.isascii():
        hours, minutes = value[:2], value[3:]
        if hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60:
            return datetime.time(int(hours), int(minutes))
    raise ValueError(f"{where}: expected HH:MM, got {value!r}")


def _parse_date(value: object, where: str) -> datetime.date:
    # fromisoformat alone would also take "20261225" and week dates.
    if isinstance(value, str) and len(value) == 10 and value[4] == value[7] == "-":
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{where}: expected YYYY-MM-DD, got {value!r}")


def _days_to_json(days: frozenset[int]) -> str | list[str]:
    return "*" if days == _EVERY_DAY else [DAY_NAMES[d] for d in sorted(days)]


def _hhmm(t: datetime.time) -> str:
    return f"{t.hour:02d}:{t.minute:02d}"
