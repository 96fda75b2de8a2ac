"""FETCH_MANY: one fetch over several queues of one worker, in priority order.

A worker given several queues (``Worker([high, default, low])``) fetches with this script
while it is busy: one call releases the finished slots of every queue and fills the free slots
from the highest queue that has tasks, then the next. While every queue is empty it waits on
each queue's tokens with that queue's own FETCH (``BLMOVE`` into the queue's hand, FETCH
behind it, one slot each), as a worker of one queue does.
"""

from __future__ import annotations

from .script import Script

KEYS_PER_QUEUE = 6  # queue, noti, processing, ready, active, jobs

# KEYS: per queue, in priority order: queue, noti, processing, ready, active, jobs.
# ARGV[1]: n, the number of queues; then per queue: cap (how many tasks it may give at most),
# r (v1 slot fields to release), e ((field, id) pairs to release); then, per queue in order,
# its r fields and e pairs; then the free slot fields to fill.
# Returns a flat list of triples: slot index (0-based, among the fields to fill), queue index
# (0-based), task (v1 payload or envelope).
#
# Each queue's tasks are taken as FETCH takes them (its tokens first, each for an id of ready
# or a task of the queue; phantoms consumed and the surplus trimmed). Safe to run twice: the
# releases are idempotent, and a re-sent call finds its fields filled (in any queue's
# processing or active hash) and returns what they hold, taking nothing.
FETCH_MANY = Script(
    "fetch_many",
    """
local n = tonumber(ARGV[1])
local caps, released, ended = {}, {}, {}
for q = 1, n do
    caps[q] = tonumber(ARGV[3 * q - 1])
    released[q] = tonumber(ARGV[3 * q])
    ended[q] = tonumber(ARGV[3 * q + 1])
end
local at = 3 * n + 2
for q = 1, n do
    local processing, active, jobs = KEYS[6 * q - 3], KEYS[6 * q - 1], KEYS[6 * q]
    if released[q] > 0 then
        redis.call('hdel', processing, unpack(ARGV, at, at + released[q] - 1))
        at = at + released[q]
    end
    for i = at, at + 2 * ended[q] - 1, 2 do
        if redis.call('hget', active, ARGV[i]) == ARGV[i + 1] then
            redis.call('hdel', active, ARGV[i])
            redis.call('hdel', jobs, ARGV[i + 1])
        end
    end
    at = at + 2 * ended[q]
end
local first, slots = at, #ARGV - at + 1
local out = {}
if slots == 0 then return out end
for q = 1, n do
    local filled = redis.call('hmget', KEYS[6 * q - 3], unpack(ARGV, first))
    local enveloped = redis.call('hmget', KEYS[6 * q - 1], unpack(ARGV, first))
    for i = 1, slots do
        local task = filled[i]
        if not task and enveloped[i] then task = redis.call('hget', KEYS[6 * q], enveloped[i]) end
        if task then
            out[#out + 1] = i - 1
            out[#out + 1] = q - 1
            out[#out + 1] = task
        end
    end
end
if #out > 0 then return out end
local taken = 0
for q = 1, n do
    local want = math.min(slots - taken, caps[q])
    if want <= 0 then
        if taken == slots then break end
    else
        local queue, noti, processing = KEYS[6 * q - 5], KEYS[6 * q - 4], KEYS[6 * q - 3]
        local ready, active, jobs = KEYS[6 * q - 2], KEYS[6 * q - 1], KEYS[6 * q]
        local popped = redis.call('lpop', noti, want)
        local tokens = popped and #popped or 0
        local got = 0
        if tokens > 0 then
            local ids = redis.call('lpop', ready, tokens)
            local spent = ids and #ids or 0
            if ids then
                local fields = {}
                for i = 1, #ids do
                    local envelope = redis.call('hget', jobs, ids[i])
                    if envelope then
                        fields[#fields + 1] = ARGV[first + taken]
                        fields[#fields + 1] = ids[i]
                        out[#out + 1] = taken
                        out[#out + 1] = q - 1
                        out[#out + 1] = envelope
                        taken, got = taken + 1, got + 1
                    end
                end
                if #fields > 0 then redis.call('hset', active, unpack(fields)) end
            end
            local tasks = false
            if tokens > spent then tasks = redis.call('lpop', queue, tokens - spent) end
            if tasks then
                local fields = {}
                for i = 1, #tasks do
                    fields[#fields + 1] = ARGV[first + taken]
                    fields[#fields + 1] = tasks[i]
                    out[#out + 1] = taken
                    out[#out + 1] = q - 1
                    out[#out + 1] = tasks[i]
                    taken, got = taken + 1, got + 1
                end
                redis.call('hset', processing, unpack(fields))
            end
            if got < tokens then
                local surplus = redis.call('llen', noti) - redis.call('llen', queue) -
                    redis.call('llen', ready)
                if surplus > 0 then redis.call('ltrim', noti, 0, -surplus - 1) end
            end
        end
    end
end
return out
""",
)
