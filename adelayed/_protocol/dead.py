"""One dead letter at a time, chosen by its exact record (``adelayed dead requeue/purge`` with
filters): REQUEUE_DEAD_RECORD and DROP_DEAD_RECORD. Both remove the record with LREM, from
the oldest end, and act only when it was there: a re-sent call finds nothing and changes
nothing. LREM scans the list, from its oldest end, where a page of the oldest records lies."""

from __future__ import annotations

from .script import Script

# KEYS: queue, noti, dead.  ARGV: the record (as LRANGE read it).
# Moves its payload back to the queue, with its token; returns 1, or 0 when it was not there
# (or is no record with a payload: then it stays).
REQUEUE_DEAD_RECORD = Script(
    "requeue_dead_record",
    """
local ok, fields = pcall(cmsgpack.unpack, ARGV[1])
if not (ok and type(fields) == 'table' and type(fields.payload) == 'string') then return 0 end
if redis.call('lrem', KEYS[3], -1, ARGV[1]) == 0 then return 0 end
redis.call('rpush', KEYS[1], fields.payload)
redis.call('rpush', KEYS[2], '1')
return 1
""",
)

# KEYS: dead.  ARGV: the record.  Deletes it; returns 1, or 0 when it was not there.
DROP_DEAD_RECORD = Script(
    "drop_dead_record",
    """
return redis.call('lrem', KEYS[1], -1, ARGV[1])
""",
)
