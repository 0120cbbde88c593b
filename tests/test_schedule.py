"""Campaign sending windows across time zones, DST changes, midnight and holidays."""

from __future__ import annotations

import datetime
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.schedule import Schedule, Window, is_open, parse_schedule, schedule_to_dict

UTC = datetime.UTC
MINUTE = 60.0


def local(
    tz: str, year: int, month: int, day: int, hour: int, minute: int, second: int = 0, *,
    fold: int = 0,
) -> float:
    """Unix time of a local wall-clock reading."""
    wall = datetime.datetime(year, month, day, hour, minute, second, fold=fold)
    return wall.replace(tzinfo=ZoneInfo(tz)).timestamp()


def utc(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return datetime.datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def every_day(tz: str, start: str, end: str, exceptions: tuple[str, ...] = ()) -> Schedule:
    return parse_schedule(
        {
            "timezone": tz,
            "windows": [{"days": "*", "start": start, "end": end}],
            "exceptions": list(exceptions),
        }
    )


def open_minutes(schedule: Schedule, start: float, hours: int) -> int:
    return sum(is_open(schedule, start + m * MINUTE) for m in range(hours * 60))


OFFICE = parse_schedule(
    {
        "timezone": "America/Montevideo",
        "windows": [
            {"days": "mon-fri", "start": "09:00", "end": "18:00"},
            {"days": ["sat"], "start": "10:00", "end": "13:00"},
        ],
        "exceptions": ["2026-12-25"],
    }
)


# -- parsing ------------------------------------------------------------------


def test_parse_the_documented_example() -> None:
    assert OFFICE == Schedule(
        timezone="America/Montevideo",
        windows=(
            Window(frozenset({0, 1, 2, 3, 4}), datetime.time(9), datetime.time(18)),
            Window(frozenset({5}), datetime.time(10), datetime.time(13)),
        ),
        exceptions=frozenset({datetime.date(2026, 12, 25)}),
    )


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        ("*", {0, 1, 2, 3, 4, 5, 6}),
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("fri-mon", {4, 5, 6, 0}),
        ("sun", {6}),
        ("Mon, wed ,FRI", {0, 2, 4}),
        (["sat"], {5}),
        (["monday", "thu-sat"], {0, 3, 4, 5}),
        ("sun-sun", {6}),
    ],
)
def test_day_forms(days: Any, expected: set[int]) -> None:
    window = {"days": days, "start": "08:00", "end": "20:00"}
    schedule = parse_schedule({"timezone": "UTC", "windows": [window]})
    assert schedule.windows[0].days == expected
    assert schedule.exceptions == frozenset()


GOOD_WINDOW = {"days": "*", "start": "09:00", "end": "18:00"}


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "schedule: expected an object, got list"),
        ({"windows": [GOOD_WINDOW]}, "schedule.timezone: required"),
        ({"timezone": "UTC"}, "schedule.windows: required"),
        (
            {"timezone": "UTC", "windows": [GOOD_WINDOW], "tz": "UTC"},
            "schedule.tz: unknown key",
        ),
        (
            {"timezone": "Mars/Olympus_Mons", "windows": [GOOD_WINDOW]},
            "schedule.timezone: unknown time zone 'Mars/Olympus_Mons'",
        ),
        (
            {"timezone": "../../etc/passwd", "windows": [GOOD_WINDOW]},
            "schedule.timezone: unknown time zone '../../etc/passwd'",
        ),
        ({"timezone": 3, "windows": [GOOD_WINDOW]}, "schedule.timezone: expected an IANA"),
        ({"timezone": "UTC", "windows": "mon-fri"}, "schedule.windows: expected a list"),
        ({"timezone": "UTC", "windows": {"days": "*"}}, "schedule.windows: expected a list"),
        (
            {"timezone": "UTC", "windows": ["mon-fri"]},
            "schedule.windows[0]: expected an object, got str",
        ),
        (
            {"timezone": "UTC", "windows": [GOOD_WINDOW, {**GOOD_WINDOW, "start": "9:00"}]},
            "schedule.windows[1].start: expected HH:MM, got '9:00'",
        ),
        (
            {"timezone": "UTC", "windows": [{**GOOD_WINDOW, "end": "24:00"}]},
            "schedule.windows[0].end: expected HH:MM, got '24:00'",
        ),
        (
            {"timezone": "UTC", "windows": [{**GOOD_WINDOW, "end": "１２:００"}]},
            "schedule.windows[0].end: expected HH:MM",
        ),
        (
            {"timezone": "UTC", "windows": [{**GOOD_WINDOW, "days": "lun-vie"}]},
            "schedule.windows[0].days: unknown day 'lun-vie'",
        ),
        (
            {"timezone": "UTC", "windows": [{**GOOD_WINDOW, "days": "mon-"}]},
            "schedule.windows[0].days: unknown day 'mon-'",
        ),
        (
            {"timezone": "UTC", "windows": [{**GOOD_WINDOW, "days": []}]},
            "schedule.windows[0].days: expected",
        ),
        (
            {"timezone": "UTC", "windows": [{**GOOD_WINDOW, "days": [1, 2]}]},
            "schedule.windows[0].days: expected day names, got 1",
        ),
        (
            {"timezone": "UTC", "windows": [{"days": "*", "start": "09:00"}]},
            "schedule.windows[0].end: required",
        ),
        (
            {"timezone": "UTC", "windows": [{**GOOD_WINDOW, "timezone": "UTC"}]},
            "schedule.windows[0].timezone: unknown key",
        ),
        (
            {"timezone": "UTC", "windows": [GOOD_WINDOW], "exceptions": ["25/12/2026"]},
            "schedule.exceptions[0]: expected YYYY-MM-DD, got '25/12/2026'",
        ),
        (
            {"timezone": "UTC", "windows": [GOOD_WINDOW], "exceptions": ["2026-01-01", "20261225"]},
            "schedule.exceptions[1]: expected YYYY-MM-DD",
        ),
        (
            {"timezone": "UTC", "windows": [GOOD_WINDOW], "exceptions": ["2026-02-30"]},
            "schedule.exceptions[0]: expected YYYY-MM-DD",
        ),
        (
            {"timezone": "UTC", "windows": [GOOD_WINDOW], "exceptions": "2026-12-25"},
            "schedule.exceptions: expected a list",
        ),
    ],
)
def test_errors_name_the_field(obj: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_schedule(obj)
    assert str(info.value).startswith(message)


# -- is_open ------------------------------------------------------------------


def test_no_schedule_is_always_open() -> None:
    assert is_open(None, 0.0)
    assert is_open(None, utc(2026, 12, 25, 3, 0))


def test_office_hours_in_montevideo() -> None:
    tz = "America/Montevideo"  # UTC-3 all year
    monday = (2026, 6, 15)
    assert not is_open(OFFICE, local(tz, *monday, 8, 59))
    assert is_open(OFFICE, local(tz, *monday, 9, 0))
    assert is_open(OFFICE, utc(*monday, 12, 0))  # 09:00 local
    assert is_open(OFFICE, local(tz, *monday, 17, 59, 59))
    assert not is_open(OFFICE, local(tz, *monday, 18, 0))  # end is exclusive
    saturday, sunday = (2026, 6, 20), (2026, 6, 21)
    assert not is_open(OFFICE, local(tz, *saturday, 9, 59))
    assert is_open(OFFICE, local(tz, *saturday, 10, 0))
    assert not is_open(OFFICE, local(tz, *saturday, 13, 0))
    assert not is_open(OFFICE, local(tz, *sunday, 12, 0))


def test_exception_closes_the_whole_local_date() -> None:
    tz = "America/Montevideo"
    assert open_minutes(OFFICE, local(tz, 2026, 12, 25, 0, 0), 24) == 0
    assert open_minutes(OFFICE, local(tz, 2026, 12, 24, 0, 0), 24) == 9 * 60
    # 2026-12-25 01:00 UTC is still the 24th in Montevideo: not the holiday.
    evening = every_day(tz, "21:00", "23:00", ("2026-12-25",))
    assert is_open(evening, utc(2026, 12, 25, 1, 0))


def test_window_crossing_midnight_belongs_to_its_start_day() -> None:
    tz = "Europe/Madrid"
    night = parse_schedule(
        {"timezone": tz, "windows": [{"days": "fri", "start": "22:00", "end": "02:00"}]}
    )
    thursday, friday, saturday = (2026, 6, 18), (2026, 6, 19), (2026, 6, 20)
    assert not is_open(night, local(tz, *friday, 21, 59))
    assert is_open(night, local(tz, *friday, 22, 0))
    assert is_open(night, local(tz, *saturday, 0, 0))
    assert is_open(night, local(tz, *saturday, 1, 59))
    assert not is_open(night, local(tz, *saturday, 2, 0))
    assert not is_open(night, local(tz, *friday, 1, 0))  # Thursday's night: not in days
    assert not is_open(night, local(tz, *thursday, 23, 0))
    assert open_minutes(night, local(tz, *thursday, 0, 0), 72) == 4 * 60


def test_exceptions_and_midnight_crossing() -> None:
    tz = "Europe/Madrid"
    windows = [{"days": "fri", "start": "22:00", "end": "02:00"}]
    friday, saturday = (2026, 6, 19), (2026, 6, 20)
    saturday_off = parse_schedule(
        {"timezone": tz, "windows": windows, "exceptions": ["2026-06-20"]}
    )
    assert is_open(saturday_off, local(tz, *friday, 23, 0))
    assert not is_open(saturday_off, local(tz, *saturday, 1, 0))
    friday_off = parse_schedule(
        {"timezone": tz, "windows": windows, "exceptions": ["2026-06-19"]}
    )
    assert not is_open(friday_off, local(tz, *friday, 23, 0))
    assert not is_open(friday_off, local(tz, *saturday, 1, 0))


def test_no_windows_is_never_open() -> None:
    closed = parse_schedule({"timezone": "UTC", "windows": []})
    assert closed == Schedule("UTC", (), frozenset())
    assert open_minutes(closed, utc(2026, 6, 15, 0, 0), 24 * 7) == 0
    assert parse_schedule(schedule_to_dict(closed)) == closed


def test_equal_start_and_end_is_a_whole_day() -> None:
    schedule = parse_schedule(
        {"timezone": "UTC", "windows": [{"days": "mon", "start": "00:00", "end": "00:00"}]}
    )
    monday = (2026, 6, 15)
    assert open_minutes(schedule, utc(*monday, 0, 0) - 3600, 26) == 24 * 60
    assert is_open(schedule, utc(*monday, 0, 0))
    assert not is_open(schedule, utc(2026, 6, 16, 0, 0))


def test_new_york_office_hours_follow_the_wall_clock() -> None:
    schedule = every_day("America/New_York", "09:00", "17:00")
    # EDT (UTC-4) in summer, EST (UTC-5) in winter.
    assert not is_open(schedule, utc(2026, 7, 1, 12, 59))
    assert is_open(schedule, utc(2026, 7, 1, 13, 0))
    assert not is_open(schedule, utc(2026, 1, 7, 13, 59))
    assert is_open(schedule, utc(2026, 1, 7, 14, 0))
    assert not is_open(schedule, utc(2026, 1, 7, 22, 0))


def test_new_york_spring_forward() -> None:
    tz = "America/New_York"  # 2026-03-08 02:00 EST becomes 03:00 EDT
    night = every_day(tz, "01:00", "03:30")
    assert is_open(night, utc(2026, 3, 8, 6, 59))  # 01:59 EST
    assert is_open(night, utc(2026, 3, 8, 7, 0))  # 03:00 EDT
    assert not is_open(night, utc(2026, 3, 8, 7, 30))  # 03:30 EDT
    assert open_minutes(night, local(tz, 2026, 3, 8, 0, 0), 23) == 90
    # A window inside the skipped hour never opens that day, but does the next.
    skipped = every_day(tz, "02:00", "02:30")
    assert open_minutes(skipped, local(tz, 2026, 3, 8, 0, 0), 23) == 0
    assert open_minutes(skipped, local(tz, 2026, 3, 9, 0, 0), 24) == 30


def test_new_york_fall_back_repeats_the_hour() -> None:
    tz = "America/New_York"  # 2026-11-01 02:00 EDT becomes 01:00 EST
    repeated = every_day(tz, "01:00", "02:00")
    assert is_open(repeated, local(tz, 2026, 11, 1, 1, 30, fold=0))  # EDT
    assert is_open(repeated, local(tz, 2026, 11, 1, 1, 30, fold=1))  # EST, an hour later
    assert not is_open(repeated, utc(2026, 11, 1, 7, 0))  # 02:00 EST
    assert open_minutes(repeated, local(tz, 2026, 11, 1, 0, 0), 25) == 120


def test_madrid_dst_moves_the_utc_opening() -> None:
    schedule = every_day("Europe/Madrid", "09:00", "18:00")
    # Sunday 2026-03-29: CET (UTC+1) -> CEST (UTC+2); 2026-10-25 back again.
    assert not is_open(schedule, utc(2026, 3, 28, 7, 30))
    assert is_open(schedule, utc(2026, 3, 28, 8, 0))
    assert is_open(schedule, utc(2026, 3, 29, 7, 0))
    assert not is_open(schedule, utc(2026, 10, 24, 6, 59))
    assert is_open(schedule, utc(2026, 10, 24, 7, 0))
    assert not is_open(schedule, utc(2026, 10, 25, 7, 30))
    assert is_open(schedule, utc(2026, 10, 25, 8, 0))


def test_night_window_over_fall_back_lasts_an_extra_hour() -> None:
    tz = "Europe/Madrid"
    night = parse_schedule(
        {"timezone": tz, "windows": [{"days": "sat", "start": "22:00", "end": "06:00"}]}
    )
    # Sat 2026-10-24 22:00 CEST = 20:00 UTC; Sun 06:00 CET = 05:00 UTC.
    assert open_minutes(night, utc(2026, 10, 24, 18, 0), 14) == 9 * 60
    assert open_minutes(night, utc(2026, 10, 17, 18, 0), 14) == 8 * 60


# -- properties ---------------------------------------------------------------

times = st.builds(datetime.time, st.integers(0, 23), st.integers(0, 59))
windows = st.builds(Window, st.frozensets(st.integers(0, 6), min_size=1), times, times)
zones = ["UTC", "America/Montevideo", "America/New_York", "Europe/Madrid", "Asia/Kolkata"]
schedules = st.builds(
    Schedule,
    st.sampled_from(zones),
    st.lists(windows, max_size=4).map(tuple),
    st.frozensets(st.dates(datetime.date(2020, 1, 1), datetime.date(2035, 12, 31)), max_size=5),
)
instants = st.floats(utc(2020, 1, 1, 0, 0), utc(2035, 12, 31, 0, 0))


@given(schedules)
def test_dict_form_round_trips_through_json(schedule: Schedule) -> None:
    as_json = json.loads(json.dumps(schedule_to_dict(schedule)))
    assert parse_schedule(as_json) == schedule


@given(schedules, instants)
def test_exception_dates_are_always_closed(schedule: Schedule, now: float) -> None:
    today = datetime.datetime.fromtimestamp(now, ZoneInfo(schedule.timezone)).date()
    closed = Schedule(schedule.timezone, schedule.windows, schedule.exceptions | {today})
    assert not is_open(closed, now)


@given(st.sampled_from(["UTC", "America/New_York", "Europe/Madrid"]), instants, times)
def test_whole_day_windows_are_always_open(tz: str, now: float, start: datetime.time) -> None:
    schedule = Schedule(tz, (Window(frozenset(range(7)), start, start),), frozenset())
    assert is_open(schedule, now)
