"""AUDIT: the counts ``adelayed doctor`` checks the queue's invariants against, read in one
step so that no script runs between them (read-only)."""

from __future__ import annotations

from .script import Script

# KEYS: NAME, noti, ready, scheduled, active, processing, jobs.
# Returns {Redis ms, LLEN NAME, LLEN ready, LLEN noti, ZCARD scheduled, HLEN active,
# HLEN processing, HLEN jobs, the earliest due ms (false: none), HKEYS processing,
# HKEYS active}. The hashes hold one field per task in flight (bounded by the workers'
# concurrency), never the queue's length.
AUDIT = Script(
    "audit",
    """
local clock = redis.call('time')
local earliest = redis.call('zrange', KEYS[4], 0, 0, 'withscores')
return {clock[1] * 1000 + math.floor(clock[2] / 1000), redis.call('llen', KEYS[1]),
    redis.call('llen', KEYS[3]), redis.call('llen', KEYS[2]), redis.call('zcard', KEYS[4]),
    redis.call('hlen', KEYS[5]), redis.call('hlen', KEYS[6]), redis.call('hlen', KEYS[7]),
    earliest[2] or false, redis.call('hkeys', KEYS[6]), redis.call('hkeys', KEYS[5])}
""",
)
