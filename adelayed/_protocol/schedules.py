"""Periodic tasks' protocol: the schedules hash and the TICK script (see adelayed.schedules).

Key of a queue named NAME:

- ``NAME_schedules``  adelayed only: hash, field = a schedule's name, value = its next tick as
                      ``"<ms since the epoch, Redis's clock> <zone> <description>"`` (zone: a
                      zoneinfo key, ``UTC`` or ``UTC+HH:MM``, only to show the next run in the
                      schedule's time zone). delayed and go-delayed never read it; a tick's task
                      reaches the queue as its plain v1 payload with its token, so any worker of
                      the queue may run it.

Exactly once per tick: every worker that runs a schedule calls TICK at the tick it expects, and
the call compares-and-sets the field from that tick's value to the next tick's; only the call
that moves it enqueues. A re-sent call (its reply lost) finds the field moved and does nothing.
"""

from __future__ import annotations

from .script import Script

SCHEDULES_SUFFIX = "_schedules"

# TICK's reply codes.
MOVED = 0  # the field did not hold the expected value: nothing done; the reply carries it
EARLY = 1  # the tick is not due yet on Redis's clock: nothing done
RAN = 2  # the field moved to the next tick and the task was enqueued
SKIPPED = 3  # the field moved to the next tick; the tick was more than grace late: not enqueued
SET = 4  # the field was written (added, or replaced), no tick due: nothing enqueued

# Expected value that matches no field: a TICK that only reads the field and Redis's time.
READ_ONLY = "?"

# KEYS: queue, noti, schedules.
# ARGV[1]: the schedule's field; ARGV[2]: the value the caller expects the field to hold ('':
# absent; READ_ONLY: matches nothing); ARGV[3]: the value to set; ARGV[4]: the tick being run,
# ms on Redis's clock (0: no tick, only set the field); ARGV[5]: grace, ms; ARGV[6]: the payload.
# Returns {code, Redis's time in ms, the field's value after the call ('' when absent)}.
# The field moves only from the value the caller saw: of any number of workers calling at the
# same tick one moves it and enqueues, the others get MOVED and the value to wait for. A tick
# is never run before it is due on Redis's clock (EARLY: the caller's estimate of Redis's time
# ran ahead). TIME before a write is fine: scripts replicate their effects (Redis 5+).
TICK = Script(
    "tick",
    """
local queue, noti, schedules = KEYS[1], KEYS[2], KEYS[3]
local field, expected, new = ARGV[1], ARGV[2], ARGV[3]
local due, grace = tonumber(ARGV[4]), tonumber(ARGV[5])
local time = redis.call('time')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local stored = redis.call('hget', schedules, field) or ''
if stored ~= expected then return {0, now, stored} end
if due > 0 and now < due then return {1, now, stored} end
redis.call('hset', schedules, field, new)
if due == 0 then return {4, now, new} end
if now - due > grace then return {3, now, new} end
redis.call('rpush', queue, ARGV[6])
redis.call('rpush', noti, '1')
return {2, now, new}
""",
)


def encode_value(tick_ms: int, zone: str, description: str) -> str:
    """A schedules field's value: the next tick, the zone it is shown in, what it is."""
    return f"{tick_ms} {zone} {description}"


def decode_value(value: str) -> tuple[int, str, str] | None:
    """(tick ms, zone, description) of a field's value; None when it is not one."""
    tick, _, rest = value.partition(" ")
    zone, _, description = rest.partition(" ")
    if not (tick.isascii() and tick.isdigit()) or not zone:
        return None
    return int(tick), zone, description
