"""FETCH_MANY: one fetch over several queues of one worker, in priority order.

A worker given several queues (``Worker([high, default, low])``) fetches with this script
while it is busy: one call releases the finished slots of every queue and fills the free slots
from the highest queue that has tasks, then the next. While every queue is empty it waits on
each queue's tokens with that queue's own FETCH (``BLMOVE`` into the queue's hand, FETCH
behind it, one slot each), as a worker of one queue does.
"""

from __future__ import annotations

from .script import Script
from .v1 import TAKE

KEYS_PER_QUEUE = 6  # queue, noti, processing, ready, active, jobs

# KEYS: per queue, in priority order: queue, noti, processing, ready, active, jobs.
# ARGV[1]: n, the number of queues; ARGV[2]: 1 to check first whether the fields to fill hold
# tasks already (after a call whose reply was lost), else 0; then per queue: cap (how many tasks
# it may give at most),
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
    TAKE
    + """
local n, check = tonumber(ARGV[1]), ARGV[2] == '1'
local caps, released, ended = {}, {}, {}
for q = 1, n do
    caps[q] = tonumber(ARGV[3 * q])
    released[q] = tonumber(ARGV[3 * q + 1])
    ended[q] = tonumber(ARGV[3 * q + 2])
end
local keys = {}
for q = 1, n do
    keys[q] = {queue = KEYS[6 * q - 5], noti = KEYS[6 * q - 4], processing = KEYS[6 * q - 3],
        ready = KEYS[6 * q - 2], active = KEYS[6 * q - 1], jobs = KEYS[6 * q]}
end
local at = 3 * n + 3
for q = 1, n do at = release(keys[q], at, released[q], ended[q]) end
local first, slots = at, #ARGV - at + 1
local out = {}
if slots == 0 then return out end
if check then
    for q = 1, n do filled(keys[q], first, slots, out, q - 1) end
    if #out > 0 then return out end
end
local taken = 0
for q = 1, n do
    if taken == slots then break end
    local want = math.min(slots - taken, caps[q])
    if want > 0 then
        local popped = redis.call('lpop', keys[q].noti, want)
        if popped then taken = take(keys[q], #popped, first, taken, out, q - 1) end
    end
end
return out
""",
)
