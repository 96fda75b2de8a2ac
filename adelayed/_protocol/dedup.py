"""Deduplication keys: ``enqueue(task, key=..., key_lifetime=...)`` (adelayed._dedup).

Keys of queue NAME: ``NAME_keys``, a hash from a dedup key to the id of the task that holds
it; ``NAME_keys_until``, a sorted set of the keys held for a time (a throttle), scored by
when they free (ms, Redis's clock). A key held for its task's life counts only while that
task is in ``NAME_jobs`` (it waits, is due, runs or waits for a retry): a task that is gone
(a crashed worker's poison task dead-lettered by a sweep, an aborted one) holds nothing,
whatever is left in the hash.
"""

from __future__ import annotations

from .scheduled import _PLACE
from .script import Script

KEYS_SUFFIX = "_keys"
KEYS_UNTIL_SUFFIX = "_keys_until"

# KEYS: queue, noti, jobs, scheduled, ready, wake, keys, keys until.
# ARGV: length limit (0: none, as SCHEDULE's), id, envelope, due (as SCHEDULE's), the dedup
# key, 'ttl' and the ms to hold it (a throttle) or 'task' and 0 (held while its task lives),
# '1' to debounce.
# Returns {id, outcome}: 'added'; 'duplicate' (the id is the holder's: nothing added);
# 'replaced' (debounce: the holder was still scheduled or due and not taken, and is replaced
# by this task, which holds the key now); 'full' (the length limit: nothing added).
# Not re-sent by the Queue (an enqueue never is); a second run finds the key held by its id.
ENQUEUE_KEYED = Script(
    "enqueue_keyed",
    """
local queue, noti, jobs, scheduled, ready, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5],
    KEYS[6]
local keys, held_until = KEYS[7], KEYS[8]
local limit, id, envelope, due_spec, key = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5]
"""
    + _PLACE
    + """
local expired = redis.call('zrangebyscore', held_until, '-inf', now, 'limit', 0, 100)
for i = 1, #expired do
    redis.call('zrem', held_until, expired[i])
    redis.call('hdel', keys, expired[i])
end
local outcome = 'added'
local holder = redis.call('hget', keys, key)
local throttled = holder and redis.call('zscore', held_until, key)
if holder and (throttled or redis.call('hexists', jobs, holder) == 1) then
    if ARGV[8] ~= '1' then return {holder, 'duplicate'} end
    if redis.call('zrem', scheduled, holder) == 1 then
        outcome = 'replaced'
    elseif redis.call('lrem', ready, 1, holder) == 1 then
        redis.call('lpop', noti)  -- its token
        outcome = 'replaced'
    end
    if outcome == 'replaced' then redis.call('hdel', jobs, holder) end
end
if limit > 0 and outcome == 'added' then
    local waiting = redis.call('llen', queue) + redis.call('llen', ready) +
        redis.call('zcard', scheduled)
    if waiting + 1 > limit then return {'', 'full'} end
end
place(id, envelope, due_spec)
redis.call('hset', keys, key, id)
if ARGV[6] == 'ttl' then
    redis.call('zadd', held_until, now + tonumber(ARGV[7]), key)
else
    redis.call('zrem', held_until, key)
end
return {id, outcome}
""",
)

# KEYS: keys.  ARGV: the dedup key, id.  Frees the key if that task still holds it (a task
# whose key is held only while it waits: its worker took it). Safe to run twice.
RELEASE_KEY = Script(
    "release_key",
    """
if redis.call('hget', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('hdel', KEYS[1], ARGV[1]) end
return 1
""",
)
