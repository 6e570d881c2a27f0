"""Domain layer: Connections' refresh schedules: validating cron strings and deciding which connection is due.

Cron strings are read in UTC. The Dagster schedule ticks every minute and asks `due_refreshes`
which connections have a fire time within that minute; a fire time therefore belongs to exactly
one tick, and its run key (connection + fire time) makes a retried tick harmless.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from croniter import CroniterBadDateError, croniter

from tdsync.domain.errors import ValidationFailed
from tdsync.domain.models import DatabaseConnection

TICK = timedelta(minutes=1)
_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def cron_problem(expression: str) -> str | None:
    """Why a refresh_schedule is not usable, or None when it is a valid five-field cron string."""
    text = expression.strip()
    if not text:
        return "a refresh_schedule must not be empty (use null for no schedule)"
    if text.startswith("@"):
        if text.lower() not in _MACROS:
            return f"unknown cron macro {text!r}; use one of {', '.join(sorted(_MACROS))}"
    elif len(text.split()) != 5:
        return (
            f"{text!r} has {len(text.split())} fields; a cron string has five: "
            "minute hour day-of-month month day-of-week (e.g. '0 * * * *')"
        )
    if not croniter.is_valid(text):
        return f"{text!r} is not a valid cron string (fields: minute hour day-of-month month day-of-week)"
    try:
        croniter(text, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        return f"{text!r} never fires"
    return None


def validate_refresh_schedule(
    expression: str | None, field: str = "refresh_schedule"
) -> str | None:
    """The schedule (`field`: refresh_schedule or scan_schedule), trimmed; raises
    ValidationFailed (422) for a cron string that cannot run."""
    if expression is None:
        return None
    if not isinstance(expression, str):
        raise ValidationFailed(
            f"{field} must be a cron string or null", {"field": field, "value": repr(expression)}
        )
    problem = cron_problem(expression)
    if problem:
        raise ValidationFailed(f"invalid {field}: {problem}", {"field": field, "value": expression})
    return expression.strip()


def last_fire_at_or_before(expression: str, moment: datetime) -> datetime:
    """The latest fire time of a cron string that is not after `moment` (UTC)."""
    # croniter's get_prev is strict, so start just after `moment` to include it.
    start = moment.astimezone(UTC) + timedelta(seconds=1)
    return croniter(expression.strip(), start).get_prev(datetime).astimezone(UTC)


def next_fire_after(expression: str, moment: datetime) -> datetime:
    return croniter(expression.strip(), moment.astimezone(UTC)).get_next(datetime).astimezone(UTC)


SHOWN_SCHEDULES = 20


def moment(at: datetime) -> str:
    """A fire time as the schedule's messages and tags show it."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class DueRefresh:
    connection_id: str
    fire_time: datetime
    refresh_schedule: str = ""
    next_fire: datetime | None = None

    @property
    def run_key(self) -> str:
        return f"{self.connection_id}@{self.fire_time.strftime('%Y-%m-%dT%H:%MZ')}"


@dataclass(frozen=True)
class ScheduleCheck:
    """What one schedule tick found: the refreshes due now, the next one, and unusable crons."""

    due: list[DueRefresh] = field(default_factory=list)
    scheduled: int = 0
    next_fire: datetime | None = None
    invalid: dict[str, str] = field(default_factory=dict)  # alias -> problem
    # alias -> (cron, next fire): what each scheduled connection does, for the tick's message.
    upcoming: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    schedule_field: str = "refresh_schedule"

    def skip_reason(self) -> str:
        """Why this tick requests nothing, in a sentence for the Dagster UI."""
        if self.scheduled == 0 and not self.invalid:
            return f"no connection has a {self.schedule_field}"
        parts = []
        if self.scheduled:
            plural = "connection" if self.scheduled == 1 else "connections"
            until = f"none due until {moment(self.next_fire)}" if self.next_fire else "none due"
            parts.append(f"{self.scheduled} {plural} scheduled, {until} ({self.schedules()})")
        if self.invalid:
            bad = "; ".join(f"{alias}: {problem}" for alias, problem in self.invalid.items())
            parts.append(f"{len(self.invalid)} with an invalid {self.schedule_field} ({bad})")
        return "; ".join(parts)

    def schedules(self) -> str:
        """Each scheduled connection's cron and next refresh: the UI shows one schedule ticking
        every minute, which must not read as every connection refreshing every minute."""
        shown = [
            f"{alias}: {cron}, next {moment(upcoming)}"
            for alias, (cron, upcoming) in sorted(self.upcoming.items(), key=lambda i: i[1][1])
        ]
        more = len(shown) - SHOWN_SCHEDULES
        return "; ".join(shown[:SHOWN_SCHEDULES]) + (f"; … and {more} more" if more > 0 else "")


def due_refreshes(
    connections: Iterable[DatabaseConnection],
    tick: datetime,
    schedule_field: str = "refresh_schedule",
) -> ScheduleCheck:
    """Which connections have a cron fire time in the minute ending at `tick` (inclusive), by
    their `schedule_field` (refresh_schedule, or scan_schedule for scheduled scans)."""
    tick = tick.astimezone(UTC)
    window_start = tick - TICK
    due: list[DueRefresh] = []
    invalid: dict[str, str] = {}
    scheduled = 0
    next_fire: datetime | None = None
    upcoming: dict[str, tuple[str, datetime]] = {}
    for conn in connections:
        cron = getattr(conn, schedule_field)
        if cron is None:
            continue
        problem = cron_problem(cron)
        if problem:
            invalid[conn.alias] = problem
            continue
        scheduled += 1
        fired = last_fire_at_or_before(cron, tick)
        following = next_fire_after(cron, tick)
        if fired > window_start:
            due.append(DueRefresh(conn.id, fired, cron, following))
        upcoming[conn.alias] = (cron, following)
        next_fire = following if next_fire is None else min(next_fire, following)
    return ScheduleCheck(
        due=due,
        scheduled=scheduled,
        next_fire=next_fire,
        invalid=invalid,
        upcoming=upcoming,
        schedule_field=schedule_field,
    )
