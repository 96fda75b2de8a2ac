"""The scripts of enveloped tasks: tasks with an option delayed 1.2 has no field for (a delay,
a retry policy, a timeout, an attempt count), kept where only adelayed reads them.

Keys of queue NAME (see docs/protocol.md):

- ``NAME_jobs``       hash: task id -> envelope (adelayed._envelope: due time, options, the v1
                      payload). Present while the task waits, is due or runs.
- ``NAME_scheduled``  sorted set: task id, scored by its due time (ms, Redis's clock).
- ``NAME_ready``      list of the ids that are due, each with a token in ``NAME_noti``.
- ``NAME_active``     hash: slot field -> id of the enveloped task that slot runs.
- ``NAME_wake``       list of the last few wakes (``due:id``): pushed when a schedule becomes
                      the earliest; each worker's promoter pops one, passes it on (pushes it
                      back) the first time it sees it, and plans again: every promoter hears
                      of it, one after the other.

Due times are read from Redis (``TIME``) inside the scripts, never from a client: the due time
of an envelope is written into its first bytes by the script that schedules it.
"""

from __future__ import annotations

from .script import Script
from .v1 import DEAD_RECORD

JOBS_SUFFIX = "_jobs"
SCHEDULED_SUFFIX = "_scheduled"
READY_SUFFIX = "_ready"
ACTIVE_SUFFIX = "_active"
WAKE_SUFFIX = "_wake"

# How many due tasks one PROMOTE call moves: bounds the time one call holds Redis.
PROMOTE_BATCH = 1000

# Shared by the scripts that schedule: ``due`` (ms) from now and the delay ARGV, the envelope
# with its due time written in, then into scheduled (publishing a new earliest) or, when due
# already, into ready with its token.
_PLACE = """
local clock = redis.call('time')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local function place(id, envelope, due_spec)
    local due
    if string.sub(due_spec, 1, 1) == '@' then
        due = tonumber(string.sub(due_spec, 2))
    else
        due = now + tonumber(due_spec)
    end
    redis.call('hset', jobs, id, string.sub(envelope, 1, 3) .. struct.pack('>d', due) ..
        string.sub(envelope, 12))
    if due <= now then
        redis.call('rpush', ready, id)
        redis.call('rpush', noti, '1')
        return
    end
    local earliest = redis.call('zrange', scheduled, 0, 0, 'withscores')
    redis.call('zadd', scheduled, due, id)
    if not earliest[2] or due < tonumber(earliest[2]) then
        redis.call('rpush', wake, due .. ':' .. id)
        redis.call('ltrim', wake, -16, -1)
    end
end
"""

# KEYS: queue, noti, jobs, scheduled, ready, wake.
# ARGV[1]: the queue's length limit (0: none), counting waiting, due and scheduled tasks (as
# ENQUEUE does); then triples: id, envelope, due (ms from now, or '@' and an absolute time in
# ms). Returns how many were added, or -1 (nothing added) when the limit would be passed. An id
# still in NAME_jobs is skipped, so a re-sent call adds nothing while its tasks wait or run (the
# Queue never re-sends it; a task that already ran and was released would be added again).
SCHEDULE = Script(
    "schedule",
    """
local queue, noti, jobs, scheduled, ready = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local wake, limit = KEYS[6], tonumber(ARGV[1])
if limit > 0 then
    local waiting = redis.call('llen', queue) + redis.call('llen', ready) +
        redis.call('zcard', scheduled)
    if waiting + (#ARGV - 1) / 3 > limit then return -1 end
end
"""
    + _PLACE
    + """
local added = 0
for i = 2, #ARGV, 3 do
    if redis.call('hexists', jobs, ARGV[i]) == 0 then
        place(ARGV[i], ARGV[i + 1], ARGV[i + 2])
        added = added + 1
    end
end
return added
""",
)

# KEYS: scheduled, ready, noti.  ARGV: how many due tasks to move at most.
# Moves the ids due by Redis's clock, earliest first, into ready with one token each, in one
# step; returns {moved, the next due time in ms or -1, Redis's time in ms}. Safe to run twice,
# and by any number of workers and sweepers at once: an id moves only while it is scheduled.
PROMOTE = Script(
    "promote",
    """
local scheduled, ready, noti = KEYS[1], KEYS[2], KEYS[3]
local clock = redis.call('time')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local due = redis.call('zrangebyscore', scheduled, '-inf', now, 'limit', 0, tonumber(ARGV[1]))
if #due > 0 then
    redis.call('zrem', scheduled, unpack(due))
    redis.call('rpush', ready, unpack(due))
    local tokens = {}
    for i = 1, #due do tokens[i] = '1' end
    redis.call('rpush', noti, unpack(tokens))
end
local nearest = redis.call('zrange', scheduled, 0, 0, 'withscores')
return {#due, nearest[2] or '-1', string.format('%.3f', now)}
""",
)

# KEYS: noti, jobs, scheduled, ready, processing, active, wake.
# ARGV: slot field, id, the envelope of the next attempt, due (as SCHEDULE's), 'v1' when the
# slot holds a v1 task (in processing) or 'enveloped' (in active).
# A retry: releases the slot and schedules the next attempt in one step. Only a slot that still
# holds the task moves it: a re-sent call, or a slot a sweep emptied, changes nothing.
RESCHEDULE = Script(
    "reschedule",
    """
local noti, jobs, scheduled, ready = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local processing, active, wake = KEYS[5], KEYS[6], KEYS[7]
local field, id = ARGV[1], ARGV[2]
if ARGV[5] == 'v1' then
    if redis.call('hdel', processing, field) == 0 then return 0 end
else
    if redis.call('hget', active, field) ~= id then return 0 end
    redis.call('hdel', active, field)
end
"""
    + _PLACE
    + """
place(id, ARGV[3], ARGV[4])
return 1
""",
)

# KEYS: active, jobs, dead.  ARGV: slot field, id, cap of the dead list, then the record's
# fields (v1.DEAD_RECORD). An enveloped task out of its slot into the dead-letter list, in one
# step; guarded as RESCHEDULE is. An empty id stands for whatever id the slot holds (a worker
# that could not read the envelope cannot know it).
BURY_ENVELOPED = Script(
    "bury_enveloped",
    DEAD_RECORD
    + """
local active, jobs, dead = KEYS[1], KEYS[2], KEYS[3]
local id = redis.call('hget', active, ARGV[1])
if not id or (ARGV[2] ~= '' and id ~= ARGV[2]) then return 0 end
redis.call('hdel', active, ARGV[1])
redis.call('hdel', jobs, id)
redis.call('lpush', dead, dead_record(4))
redis.call('ltrim', dead, 0, tonumber(ARGV[3]) - 1)
return 1
""",
)

# KEYS: noti, ready, active.  ARGV: slot field, id.
# An enveloped task back to the head of ready with its token (a stop cancelled it, or it never
# started); guarded as RESCHEDULE is.
REQUEUE_ENVELOPED = Script(
    "requeue_enveloped",
    """
local noti, ready, active = KEYS[1], KEYS[2], KEYS[3]
if redis.call('hget', active, ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('hdel', active, ARGV[1])
redis.call('lpush', ready, ARGV[2])
redis.call('rpush', noti, '1')
return 1
""",
)
