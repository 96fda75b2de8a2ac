"""What a queue knows of its workers and of what their tasks did: REGISTER (each worker, at
each lease refresh), WITHDRAW (a worker's clean stop), and INFO (read-only: everything
``adelayed info`` shows of a queue, in one call).

Keys of queue NAME (adelayed only; delayed's and go-delayed's workers neither read nor write
them, and appear in none):

- ``NAME_workers``: sorted set, member = a worker's id (its worker key), score = when its
  lease lapses (ms, Redis's clock) unless refreshed; a member past its score is a worker that
  died or was cut off. Members an hour past their score are dropped by the next REGISTER.
- ``NAME_worker_info``: hash, field = a worker's id, value = ``"<Redis ms when written>:"``
  followed by the worker's own msgpack map (host, pid, version, concurrency, queues, running,
  clock: the worker's clock in ms when it sent it, so a reader sees its skew).
- ``NAME_stats``: hash, a ring of STATS_MINUTES minutes (of Redis's clock): for minute m,
  field ``<m % STATS_MINUTES>:at`` = m and ``<m % STATS_MINUTES>:<kind>`` = how many tasks
  the workers counted for it, kinds STAT_KINDS. A slot whose ``at`` is not the minute asked
  for holds an older minute: it counts as zero, and the next count for it resets it first.
  Bounded (5 fields a minute slot), so it needs no pruning and no expiry.
"""

from __future__ import annotations

from .script import Script

WORKERS_SUFFIX = "_workers"
WORKER_INFO_SUFFIX = "_worker_info"
STATS_SUFFIX = "_stats"
STATS_MINUTES = 64
STAT_KINDS = ("done", "failed", "retried", "dead")
FORGET_AFTER_MS = 3_600_000  # a worker an hour past its lease is forgotten

# KEYS: workers, worker_info, stats.
# ARGV: worker id, lease ms, its msgpack info, then the counts of STAT_KINDS since its last
# REGISTER. The counts go to the current minute; a lost reply re-sent counts them twice (the
# stats are a view, never used to move a task).
REGISTER = Script(
    "register",
    """
local clock = redis.call('time')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local id = ARGV[1]
redis.call('zadd', KEYS[1], now + tonumber(ARGV[2]), id)
redis.call('hset', KEYS[2], id, now .. ':' .. ARGV[3])
local minute = math.floor(now / 60000)
local ring = tostring(minute % 64) .. ':'
local kinds = {'done', 'failed', 'retried', 'dead'}
if redis.call('hget', KEYS[3], ring .. 'at') ~= tostring(minute) then
    redis.call('hset', KEYS[3], ring .. 'at', minute, ring .. 'done', 0, ring .. 'failed', 0,
        ring .. 'retried', 0, ring .. 'dead', 0)
end
for i = 1, 4 do
    local n = tonumber(ARGV[3 + i])
    if n > 0 then redis.call('hincrby', KEYS[3], ring .. kinds[i], n) end
end
local gone = redis.call('zrangebyscore', KEYS[1], '-inf', now - 3600000, 'limit', 0, 100)
if #gone > 0 then
    redis.call('zrem', KEYS[1], unpack(gone))
    redis.call('hdel', KEYS[2], unpack(gone))
end
return 1
""",
)

# KEYS: workers, worker_info.  ARGV: worker id.  A worker's clean stop: it is no longer listed.
WITHDRAW = Script(
    "withdraw",
    """
redis.call('zrem', KEYS[1], ARGV[1])
redis.call('hdel', KEYS[2], ARGV[1])
return 1
""",
)

# KEYS: NAME, noti, ready, scheduled, processing, active, dead, workers, stats.
# ARGV: how many minutes of stats (1 to STATS_MINUTES - 1), the current one included.
# Read-only, O(1) in the queue's length (LLEN, ZCARD, HLEN, ZCOUNT, one HMGET of 5 fields a
# minute). Returns
# {now ms, LLEN NAME, LLEN ready, LLEN noti, ZCARD scheduled, the earliest scheduled due ms
# (false when none), HLEN processing, HLEN active, LLEN dead, live workers, then per minute,
# oldest first, the counts of STAT_KINDS (zeros for a minute nobody counted)}.
INFO = Script(
    "info",
    """
local clock = redis.call('time')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local earliest = redis.call('zrange', KEYS[4], 0, 0, 'withscores')
local out = {now, redis.call('llen', KEYS[1]), redis.call('llen', KEYS[3]),
    redis.call('llen', KEYS[2]), redis.call('zcard', KEYS[4]), earliest[2] or false,
    redis.call('hlen', KEYS[5]), redis.call('hlen', KEYS[6]), redis.call('llen', KEYS[7]),
    redis.call('zcount', KEYS[8], now, '+inf')}
local minute, minutes = math.floor(now / 60000), tonumber(ARGV[1])
local kinds, fields = {'done', 'failed', 'retried', 'dead'}, {}
for m = minute - minutes + 1, minute do
    local ring = tostring(m % 64) .. ':'
    fields[#fields + 1] = ring .. 'at'
    for i = 1, 4 do fields[#fields + 1] = ring .. kinds[i] end
end
local values = redis.call('hmget', KEYS[9], unpack(fields))
for j = 0, minutes - 1 do
    local current = values[5 * j + 1] == tostring(minute - minutes + 1 + j)
    for i = 1, 4 do out[#out + 1] = current and tonumber(values[5 * j + 1 + i]) or 0 end
end
return out
""",
)
