"""REFRESH: a worker's lease refresh, fenced (adelayed._lease)."""

from __future__ import annotations

from .script import Script

# KEYS: the worker key, its n slot keys, then per queue: processing, active.
# ARGV: the keys' ttl (ms), n, the number of queues, then per slot '1' when the worker runs a
# task in it, else '0'.
# Sets the worker key, and each slot key whose slot is free or whose field still holds a task
# in one of the queues' processing or active hashes. A busy slot whose field is gone was
# taken over by a sweep (the worker missed its refreshes: paused, partitioned): its key is not
# revived, so no sweep of any kind takes the slot's field for a live one. Returns the indexes
# (0-based) of those slots.
REFRESH = Script(
    "refresh",
    """
local ttl, n, queues = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('set', KEYS[1], 1, 'px', ttl)
local lost = {}
for i = 1, n do
    local key, alive = KEYS[1 + i], ARGV[3 + i] == '0'
    local j = 1
    while not alive and j <= 2 * queues do
        alive = redis.call('hexists', KEYS[1 + n + j], key) == 1
        j = j + 1
    end
    if alive then redis.call('set', key, 1, 'px', ttl) else lost[#lost + 1] = i - 1 end
end
return lost
""",
)
