"""FETCH_MANY: one fetch over several queues of one worker, in priority order.

A worker given several queues (``Worker([high, default, low])``) fetches with this script
only: one call releases the finished slots of every queue and fills the free slots from the
highest queue that has tasks, then the next. While every queue is empty the worker waits on
each queue's tokens with a ``BLMOVE`` of that queue's ``NAME_noti`` into the queue's hand (one
connection each, no slot held); a waiter that gets a token wakes the worker, whose next
FETCH_MANY uses the token (or puts it back on ``NAME_noti`` when it has no slot for it).
"""

from __future__ import annotations

from .script import Script
from .v1 import TAKE

KEYS_PER_QUEUE = 7  # queue, noti, processing, ready, active, jobs, the worker's hand
ARGS_PER_QUEUE = 4  # cap, look, r, e

# What a worker knows of a queue's hand (ARGV ``look``): nothing there; a token may be there
# (its waiter's BLMOVE got one, failed or was cancelled); or, as well, the BLMOVE timed out.
HAND_EMPTY, HAND_MAY_HOLD, WAIT_TIMED_OUT = 0, 1, 2

# KEYS: per queue, in priority order: queue, noti, processing, ready, active, jobs, the
# worker's hand of that queue (adelayed._protocol.hand_key).
# ARGV[1]: n, the number of queues; ARGV[2]: 1 to check first whether the fields to fill hold
# tasks already (after a call whose reply was lost), else 0; then per queue: cap (how many
# tasks it may give at most), look (HAND_EMPTY, HAND_MAY_HOLD or WAIT_TIMED_OUT), r (v1 slot
# fields to release), e ((field, id) pairs to release); then, per queue in order, its r fields
# and e pairs; then the free slot fields to fill.
# Returns a flat list of triples: slot index (0-based, among the fields to fill), queue index
# (0-based), task (v1 payload or envelope, whose index is -(index + 1), as FETCH's).
#
# Each queue's tasks are taken as FETCH takes them (its tokens first, each for an id of ready
# or a task of the queue; phantoms consumed and the surplus trimmed). A token in a hand it is
# told to look in counts as one of the queue's tokens; one it has no field for goes back to the
# tail of noti. After a timed-out wait, a queue whose noti holds no token but whose ready holds
# an id gives that task without a token (a delayed 1.2 worker took its token; FETCH's borrow).
# Safe to run twice: the releases are idempotent, and a re-sent call finds its fields filled
# (in any queue's processing or active hash) and returns what they hold, taking nothing (a
# token in a hand goes back to noti).
FETCH_MANY = Script(
    "fetch_many",
    TAKE
    + """
local n, check = tonumber(ARGV[1]), ARGV[2] == '1'
local function keys_of(q)  -- built only for the queues a call touches
    local b = 7 * q - 7
    return {queue = KEYS[b + 1], noti = KEYS[b + 2], processing = KEYS[b + 3],
        ready = KEYS[b + 4], active = KEYS[b + 5], jobs = KEYS[b + 6]}
end
local at = 4 * n + 3
for q = 1, n do
    local released, ended = tonumber(ARGV[4 * q + 1]), tonumber(ARGV[4 * q + 2])
    if released + ended > 0 then at = release(keys_of(q), at, released, ended) end
end
local first, slots = at, #ARGV - at + 1
local out = {}
if check and slots > 0 then
    for q = 1, n do filled(keys_of(q), first, slots, out, q - 1) end
    if #out > 0 then slots = 0 end  -- a re-sent call: it gave these already
end
local taken = 0
for q = 1, n do
    local noti, look = KEYS[7 * q - 5], ARGV[4 * q]
    local want = math.min(slots - taken, tonumber(ARGV[4 * q - 1]))
    local tokens = 0
    if look ~= '0' and redis.call('lpop', KEYS[7 * q]) then
        if want > 0 then tokens = 1 else redis.call('rpush', noti, '1') end
    end
    if want > tokens then
        local popped = redis.call('lpop', noti, want - tokens)
        if popped then tokens = tokens + #popped end
    end
    if tokens == 0 and want > 0 and look == '2' and redis.call('llen', KEYS[7 * q - 3]) > 0 then
        tokens = 1  -- noti is empty (the LPOP above found nothing): borrowed
    end
    if tokens > 0 then taken = take(keys_of(q), tokens, first, taken, out, q - 1) end
end
return out
""",
)
