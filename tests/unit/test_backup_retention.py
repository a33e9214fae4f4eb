"""The backup's retention (btc-usd-backup keep): of the generations, the last L
stay (at least the newest), and the newest of each of the last N days and M ISO weeks."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from harness.settings import REPO

SCRIPT = REPO / "roles/backup/files/image/btc-usd-backup"


def keep(names: list[str], daily: int, weekly: int, last: int = 0) -> list[str]:
    env = {
        **os.environ,
        "BACKUP_KEEP_LAST": str(last),
        "BACKUP_KEEP_DAILY": str(daily),
        "BACKUP_KEEP_WEEKLY": str(weekly),
    }
    result = subprocess.run(
        ["bash", str(SCRIPT), "keep"], input="\n".join(names) + "\n", env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def name(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def expected(moments: list[datetime], daily: int, weekly: int, last: int) -> list[str]:
    newest_first = sorted(moments, reverse=True)
    days, weeks, kept = [], [], {name(m) for m in newest_first[: max(last, 1)]}
    for moment in newest_first:
        day, week = moment.date(), moment.isocalendar()[:2]
        if day not in days:
            days.append(day)
            if len(days) <= daily:
                kept.add(name(moment))
        if week not in weeks:
            weeks.append(week)
            if len(weeks) <= weekly:
                kept.add(name(moment))
    return sorted(kept)


# Two backups a day (the schedule and a manual one) for 60 days, across a year's end.
MOMENTS = [
    datetime(2026, 11, 20, 3, 0, tzinfo=UTC) + timedelta(days=day, hours=hours) for day in range(60) for hours in (0, 9)
]


@pytest.mark.parametrize(("daily", "weekly", "last"), [(7, 4, 3), (14, 0, 0), (0, 8, 1), (3, 52, 5)])
def test_keeps_the_last_and_the_newest_of_each_recent_day_and_week(daily, weekly, last):
    kept = keep([name(m) for m in MOMENTS], daily, weekly, last)
    assert kept == expected(MOMENTS, daily, weekly, last)
    assert len(kept) <= max(last, 1) + daily + weekly


def test_the_newest_backup_is_always_kept():
    assert keep([name(m) for m in MOMENTS], 0, 0, 0) == [name(max(MOMENTS))]


def test_a_second_backup_the_same_day_does_not_push_out_the_first():
    morning, noon = datetime(2026, 12, 2, 3, tzinfo=UTC), datetime(2026, 12, 2, 12, tzinfo=UTC)
    assert keep([name(morning), name(noon)], 7, 4, 3) == [name(morning), name(noon)]


def test_names_that_are_not_generations_are_never_chosen():
    assert keep(["latest", "20261202T101500Z.part", "notes", "20261202T101500Z"], 7, 4) == ["20261202T101500Z"]


def test_nothing_to_keep_of_nothing():
    assert keep([], 7, 4) == []
