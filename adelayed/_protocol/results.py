"""Results of enveloped tasks enqueued with ``keep_result``: FINISH stores one as the task
leaves its slot, STATUS reads where a task is.

Keys of queue NAME: ``NAME_result:<id>``, a string, the task's result record: the msgpack
array ``[state, data, attempt, worker, finished]`` (state: done, failed, dead or aborted;
data: the return value, the ``[type, message, traceback]`` of the error, or nil; attempt;
worker: its liveness key; finished: Redis's time in ms, a float64), expiring ``keep_result``
after the task ended. The worker packs all of it but ``finished``, which the script appends;
one SET with PX stores it (a hash took an HSET and a PEXPIRE, and its packing a Lua table).
Channel ``NAME_results`` (pub/sub, not a key) gets each finished task's id, with its record
when FINISH_MANY stored it.
``NAME_progress:<id>``: a hash (``fraction``, ``message``, ``at``: Redis ms) of the latest
progress a running task reported, expiring a while after its last report; FINISH deletes it.
"""

from __future__ import annotations

from .script import Script
from .v1 import DEAD_RECORD

RESULT_INFIX = "_result:"
PROGRESS_INFIX = "_progress:"
RESULTS_CHANNEL_SUFFIX = "_results"
PUBLISHED_DATA = 1024  # bytes of a result record FINISH_MANY publishes with its id, at most

# Lua: the last item of a result record, ``finished``: a msgpack float64 (0xcb, decimal 203,
# then 8 bytes) of Redis's time in ms.
FINISHED = """
local function finished()
    local clock = redis.call('time')
    return '\\203' .. struct.pack('>d', clock[1] * 1000 + math.floor(clock[2] / 1000))
end
"""

# KEYS: active, jobs, the task's result key, dead, the task's progress key, keys (dedup).
# ARGV: slot field, id, state (done, failed, dead, aborted), its result record but for
# ``finished`` (as FINISH_MANY's), milliseconds to keep the result (0: none is kept), the
# results channel, the task's dedup key held while it lives ('' for none); with state dead,
# then the cap of the dead list and the dead record's fields (v1.DEAD_RECORD).
# Releases the slot of an enveloped task, stores its result and publishes its id, and frees
# its dedup key, in one step; with state dead, also dead-letters it (as BURY_ENVELOPED does).
# Only while the slot still holds the task: a re-sent call, or a slot a sweep emptied (the
# task runs again elsewhere, and that run's result is the one kept), changes nothing and
# returns 0.
FINISH = Script(
    "finish",
    DEAD_RECORD
    + FINISHED
    + """
local active, jobs, result, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local field, id, state = ARGV[1], ARGV[2], ARGV[3]
if redis.call('hget', active, field) ~= id then return 0 end
redis.call('hdel', active, field)
redis.call('hdel', jobs, id)
redis.call('del', KEYS[5])
if ARGV[7] ~= '' and redis.call('hget', KEYS[6], ARGV[7]) == id then
    redis.call('hdel', KEYS[6], ARGV[7])
end
if state == 'dead' then
    redis.call('lpush', dead, dead_record(9))
    redis.call('ltrim', dead, 0, tonumber(ARGV[8]) - 1)
end
if ARGV[5] == '0' then return 1 end
redis.call('set', result, ARGV[4] .. finished(), 'px', ARGV[5])
redis.call('publish', ARGV[6], id)
return 1
""",
)

# KEYS: the task's result key, jobs, scheduled, active, the task's progress key.  ARGV: id.
# Read-only. Returns {where, detail, extra, progress}, progress a flat HGETALL (or empty):
# - {'result', its result record} once it ended (and until keep_result passed);
# - {'scheduled', envelope, due ms} while it waits for its due time;
# - {'running', envelope, slot field} while a worker runs it;
# - {'queued', envelope} while it is due and waits for a worker (or its token moves);
# - {'unknown'}: never enqueued with keep_result here, or ended and expired.
# Finding the running slot scans NAME_active (one entry per task in flight).
STATUS = Script(
    "status",
    """
local result, jobs, scheduled, active = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id = ARGV[1]
local stored = redis.call('get', result)
if stored then return {'result', stored} end
local envelope = redis.call('hget', jobs, id)
if not envelope then return {'unknown'} end
local due = redis.call('zscore', scheduled, id)
if due then return {'scheduled', envelope, due} end
local slots = redis.call('hgetall', active)
for i = 2, #slots, 2 do
    if slots[i] == id then
        return {'running', envelope, slots[i - 1], redis.call('hgetall', KEYS[5])}
    end
end
return {'queued', envelope}
""",
)

# KEYS: the task's progress key.  ARGV: fraction, message, milliseconds to keep it.
# A running task's latest progress, dated by Redis's clock; one write.
PROGRESS = Script(
    "progress",
    """
local clock = redis.call('time')
redis.call('hset', KEYS[1], 'fraction', ARGV[1], 'message', ARGV[2],
    'at', clock[1] * 1000 + math.floor(clock[2] / 1000))
redis.call('pexpire', KEYS[1], ARGV[3])
return 1
""",
)

ABORT_CHANNEL_SUFFIX = "_abort"
ABORTING_INFIX = "_aborting:"  # NAME_aborting:<id>: an abort asked of a running task

# KEYS: jobs, scheduled, ready, noti, active, the task's result key, its progress key, its
# aborting key.
# ARGV: id, milliseconds to keep the "aborted" record, the results channel, the abort channel.
# Returns 'aborted' (it was scheduled or queued: removed with its token, in one step, and
# recorded as aborted), 'running' (a worker runs it: the abort channel tells every worker,
# and the one running it cancels it and records it), 'ended' (it has a result already), or
# 'unknown'. Safe to run twice: a removed task is 'ended' (its record) the second time.
# A running task's abort is also written down (its aborting key, for as long as the record
# would be kept), for a worker whose abort listener was reconnecting when it was published:
# once subscribed again, it reads the aborting keys of the tasks it runs.
ABORT = Script(
    "abort",
    FINISHED
    + """
local jobs, scheduled, ready, noti, active, result = KEYS[1], KEYS[2], KEYS[3], KEYS[4],
    KEYS[5], KEYS[6]
local id = ARGV[1]
if redis.call('exists', result) == 1 then return 'ended' end
if redis.call('hexists', jobs, id) == 0 then return 'unknown' end
local removed = redis.call('zrem', scheduled, id) == 1
if not removed and redis.call('lrem', ready, 1, id) == 1 then
    removed = true
    redis.call('lpop', noti)  -- its token (an empty noti: a fetch holds it, and finds none)
end
if removed then
    redis.call('hdel', jobs, id)
    redis.call('del', KEYS[7])
    -- its record: a five-item array, 'aborted', nil, attempt 0, worker '', finished
    redis.call('set', result, '\\149\\167aborted\\192\\0\\160' .. finished(), 'px', ARGV[2])
    redis.call('publish', ARGV[3], id)
    return 'aborted'
end
local slots = redis.call('hvals', active)
for i = 1, #slots do
    if slots[i] == id then
        redis.call('set', KEYS[8], '1', 'px', ARGV[2])
        redis.call('publish', ARGV[4], id)
        return 'running'
    end
end
return 'unknown'
""",
)

# KEYS: active, jobs, keys (dedup), then per task its result key, then the progress key of
# each task whose record says it may have one, in the order of the tasks.
# ARGV: the results channel, then the tasks as one msgpack array (every string as str, which
# cmsgpack reads: it cannot read bin) of [slot field, id, ms to keep the result (0: none), its
# dedup key ('' for none), its result record without ``finished``, progressed (1: a progress
# key to delete, as the task or an earlier attempt reported progress; else 0)] records: one
# argument, which a worker packs in a third of the time the arguments apart would take. The
# record without ``finished`` is the msgpack array header of five items, then state, data,
# attempt and worker, packed by the worker: the script appends ``finished`` and SETs it with
# PX, packing nothing itself.
# FINISH for n tasks in one call (the worker batches those that end together): each only
# while its slot still holds it. The tasks whose result is kept are published in one message,
# a msgpack array (cmsgpack: every string as str) of id, record, id, record, ..., a record
# false when over PUBLISHED_DATA bytes (a waiter then reads it): a waiter needs no read after
# it. Returns a list of 1 (finished) or 0 (changed nothing), one per task. Safe to run twice,
# as FINISH.
FINISH_MANY = Script(
    "finish_many",
    FINISHED
    + """
local active, jobs, dedup = KEYS[1], KEYS[2], KEYS[3]
local channel, records = ARGV[1], cmsgpack.unpack(ARGV[2])
local ended = finished()
local n = #records
local out, fields, ids, progress, published = {}, {}, {}, {}, {}
for t = 1, n do fields[t] = records[t][1] end
local holding = redis.call('hmget', active, unpack(fields))
fields = {}
local p = 3 + n
for t = 1, n do
    local field, id, keep, key, record, progressed = unpack(records[t])
    if progressed == 1 then p = p + 1 end
    out[t] = 0
    if holding[t] == id then
        out[t] = 1
        fields[#fields + 1], ids[#ids + 1] = field, id
        if progressed == 1 then progress[#progress + 1] = KEYS[p] end
        if key ~= '' and redis.call('hget', dedup, key) == id then
            redis.call('hdel', dedup, key)
        end
        if keep ~= 0 then
            record = record .. ended
            redis.call('set', KEYS[3 + t], record, 'px', keep)
            published[#published + 1] = id
            published[#published + 1] = #record <= 1024 and record
        end
    end
end
if #fields > 0 then
    redis.call('hdel', active, unpack(fields))
    redis.call('hdel', jobs, unpack(ids))
    if #progress > 0 then redis.call('del', unpack(progress)) end
end
if #published > 0 then redis.call('publish', channel, cmsgpack.pack(published)) end
return out
""",
)
