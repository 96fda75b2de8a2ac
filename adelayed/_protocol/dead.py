"""Dead letters chosen by a filter (``adelayed dead requeue|purge --reason/--function``), a
page at a time: MOVE_DEAD_RECORDS."""

from __future__ import annotations

from .script import Script

MOVED = "adelayed:moved"  # a placeholder that lives only inside one MOVE_DEAD_RECORDS call

# KEYS: queue, noti, dead.  ARGV: 1 to requeue (0 to delete), then pairs of [a position counted
# from the oldest end (1: the oldest), the record found there, byte for byte as LRANGE read it].
# Each record still at its position is replaced by a placeholder, its payload (when requeued)
# pushed onto the queue with its token, then the placeholders are removed, from the oldest end:
# one pass over that end, not one per record. Producers and workers push at the newest end, so
# a position counted from the oldest end stays put between the read and this call. Returns how
# many moved. Safe to run twice: the second time the positions hold other records (or none),
# and nothing moves. A record with no payload is never requeued: it stays.
MOVE_DEAD_RECORDS = Script(
    "move_dead_records",
    """
local queue, noti, dead = KEYS[1], KEYS[2], KEYS[3]
local requeue, moved = ARGV[1] == '1', 0
for i = 2, #ARGV, 2 do
    local at, record = -tonumber(ARGV[i]), ARGV[i + 1]
    if redis.call('lindex', dead, at) == record then
        local payload = true
        if requeue then
            local ok, fields = pcall(cmsgpack.unpack, record)
            payload = ok and type(fields) == 'table' and type(fields.payload) == 'string'
                and fields.payload
            if payload then
                redis.call('rpush', queue, payload)
                redis.call('rpush', noti, '1')
            end
        end
        if payload then
            redis.call('lset', dead, at, 'adelayed:moved')
            moved = moved + 1
        end
    end
end
if moved > 0 then redis.call('lrem', dead, -moved, 'adelayed:moved') end
return moved
""",
)
