"""delayed v1's scripts as adelayed runs them: enqueue, fetch (with release), requeue, bury,
the sweep's requeue-lost, and requeueing dead letters. Keys in ``adelayed._protocol``."""

from __future__ import annotations

from .script import Script

# KEYS: queue, noti; with a length limit also ready and scheduled (counted as waiting too).
# ARGV[1]: the queue's length limit (0: none); ARGV[2]: how many tasks to admit against it
# (the whole enqueue_many call in its first group, 0 in later ones); ARGV[3..]: the tasks.
# Returns how many were pushed, or -1 (nothing pushed) when the limit would be passed.
# Tasks and their tokens are pushed together: no reader ever sees a token without its task.
# The first RPUSH is the script's first write: under maxmemory Redis refuses it, so a refused
# call writes nothing.
ENQUEUE = Script(
    "enqueue",
    """
local queue, noti = KEYS[1], KEYS[2]
local limit, admitted = tonumber(ARGV[1]), tonumber(ARGV[2])
if limit > 0 then
    local waiting = redis.call('llen', queue)
    if #KEYS > 2 then
        waiting = waiting + redis.call('llen', KEYS[3]) + redis.call('zcard', KEYS[4])
    end
    if waiting + admitted > limit then return -1 end
end
if #ARGV == 3 then
    redis.call('rpush', queue, ARGV[3])
    redis.call('rpush', noti, '1')
    return 1
end
for first = 3, #ARGV, 1000 do
    local last = math.min(first + 999, #ARGV)
    local tokens = {}
    for i = 1, last - first + 1 do tokens[i] = '1' end
    redis.call('rpush', queue, unpack(ARGV, first, last))
    redis.call('rpush', noti, unpack(tokens))
end
return #ARGV - 2
""",
)

# Shared by FETCH and FETCH_MANY, for one queue's keys ``k`` (queue, noti, processing, ready,
# active, jobs), the fields to fill being ARGV[first ..]; ``q``: the queue's index, put in
# ``out`` before each task when given (FETCH_MANY), else ``out`` holds (index, task) pairs.
# An enveloped task's index is -(index + 1): a v1 payload may begin as an envelope does (any
# bytes can be pushed onto NAME), so where a task came from is said, never guessed.
# release(): HDELs ``v1`` fields and, of ``enveloped`` (field, id) pairs, those whose slot
# still holds the id, from ARGV[at ..]; returns where the next arguments start.
# filled(): what the fields to fill already hold (a re-sent call). take(): takes ``tokens``
# tasks, ids of ready first, then v1 tasks, into the fields from ARGV[first + taken]; an id
# whose envelope is gone is a spent token; when fewer tasks than tokens came out, the surplus
# of tokens over the queue's and ready's tasks is trimmed (phantoms). Returns the new count.
TAKE = """
local function release(k, at, v1, enveloped)
    if v1 > 0 then redis.call('hdel', k.processing, unpack(ARGV, at, at + v1 - 1)) end
    at = at + v1
    for i = at, at + 2 * enveloped - 1, 2 do
        if redis.call('hget', k.active, ARGV[i]) == ARGV[i + 1] then
            redis.call('hdel', k.active, ARGV[i])
            redis.call('hdel', k.jobs, ARGV[i + 1])
        end
    end
    return at + 2 * enveloped
end
local function filled(k, first, slots, out, q)
    local v1 = redis.call('hmget', k.processing, unpack(ARGV, first))
    local enveloped = {}
    if redis.call('exists', k.active) == 1 then  -- a queue of v1 tasks only: skipped
        enveloped = redis.call('hmget', k.active, unpack(ARGV, first))
    end
    for i = 1, slots do
        local task, index = v1[i], i - 1
        if not task and enveloped[i] then
            task, index = redis.call('hget', k.jobs, enveloped[i]), -i
        end
        if task then
            out[#out + 1] = index
            if q then out[#out + 1] = q end
            out[#out + 1] = task
        end
    end
end
local function take(k, tokens, first, taken, out, q)
    local got = 0
    local function put(field, name, task, fields, index)
        fields[#fields + 1] = field
        fields[#fields + 1] = name
        out[#out + 1] = index
        if q then out[#out + 1] = q end
        out[#out + 1] = task
        taken, got = taken + 1, got + 1
    end
    local ids = redis.call('lpop', k.ready, tokens)
    if ids then
        local fields, envelopes = {}, redis.call('hmget', k.jobs, unpack(ids))
        for i = 1, #ids do
            local envelope = envelopes[i]
            if envelope then put(ARGV[first + taken], ids[i], envelope, fields, -taken - 1) end
        end
        if #fields > 0 then redis.call('hset', k.active, unpack(fields)) end
    end
    local spent = ids and #ids or 0
    local tasks = false
    if tokens > spent then tasks = redis.call('lpop', k.queue, tokens - spent) end
    if tasks then
        local fields = {}
        for i = 1, #tasks do put(ARGV[first + taken], tasks[i], tasks[i], fields, taken) end
        redis.call('hset', k.processing, unpack(fields))
    end
    if got < tokens then
        local surplus = redis.call('llen', k.noti) - redis.call('llen', k.queue) -
            redis.call('llen', k.ready)
        if surplus > 0 then redis.call('ltrim', k.noti, 0, -surplus - 1) end
    end
    return taken
end
"""

# KEYS: queue, noti, processing, the worker's hand (see hand_key), ready, active, jobs.
# ARGV[1]: 1 when sent behind a BLMOVE into the hand, else 0.
# ARGV[2]: r, how many slot fields of v1 tasks follow to release (their tasks are done).
# ARGV[3]: e, how many (slot field, task id) pairs of enveloped tasks follow to release.
# ARGV[4 .. r+3]: the v1 slot fields; then e pairs; then the free slot fields to fill.
# Returns a flat list: slot index (0-based, among the fields to fill), task, index, task, ...
# where a task is a v1 payload, or an envelope (adelayed._envelope) whose index is given as
# -(index + 1).
#
# One round trip per cycle of a busy worker: it releases what finished and takes new work.
# Takes tokens and their tasks in one step, so no sweep can see a task without its token.
# A token stands for a task of the queue (v1) or an id in ready (an enveloped task that is due):
# ready goes first, then the queue.
# An idle worker sends ``BLMOVE noti hand`` with this script right behind it, in one write:
# Redis runs the script right after it serves the BLMOVE, and the token in between sits in a
# key, not in a client (a worker dying there loses no token, and a pickup costs one round
# trip). PROTOCOL.md hole 3 is narrowed, not closed: another client's command may run between
# the two, and a sweep there adds a phantom token, which fetches consume and sweeps trim.
# A token in the hand counts as held; one left there by a call that failed is used by the
# next. An empty hand behind a BLMOVE means it timed out: nothing to do, unless ready holds a
# task while noti holds no token (a delayed 1.2 worker took a ready task's token: it reads
# only the queue); then that task is taken.
# An empty LPOP is false in Lua, not nil (hole 1): checked as such.
# Safe to run twice: releasing is idempotent (an enveloped task's id only while its slot still
# holds it), and the caller never asks to fill a field it is releasing, so a re-sent call
# finds its fields to fill already filled and returns what they hold, taking nothing more (a
# token in the hand goes back to noti).
# Tokens with no task behind them (phantoms left by a sweep, hole 3; the id of a task removed
# meanwhile) are consumed here; when any were, the surplus of tokens over tasks is trimmed.
FETCH = Script(
    "fetch",
    TAKE
    + """
local queue, noti, processing, hand = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ready, active, jobs = KEYS[5], KEYS[6], KEYS[7]
local k = {queue = queue, noti = noti, processing = processing, ready = ready, active = active,
    jobs = jobs}
local waited, released, ended = ARGV[1] == '1', tonumber(ARGV[2]), tonumber(ARGV[3])
local first = release(k, 4, released, ended)
local slots = #ARGV - first + 1
local held, borrowed = 0, false
if redis.call('lpop', hand) then
    held = 1
elseif waited then
    if redis.call('llen', noti) > 0 or redis.call('llen', ready) == 0 then return {} end
    held, borrowed = 1, true
end
local out = {}
if slots > 0 then filled(k, first, slots, out) end
if slots == 0 or #out > 0 then
    if held > 0 and not borrowed then redis.call('rpush', noti, '1') end
    return out
end
local tokens = held
if slots > held then
    local popped = redis.call('lpop', noti, slots - held)
    if popped then tokens = tokens + #popped end
end
if tokens > 0 then take(k, tokens, first, 0, out) end
return out
""",
)

# KEYS: queue, noti, processing.  ARGV: slot field, serialized task, 'head' or 'tail'.
# Releases the slot and pushes the task back (the worker sends 'head': a task cancelled or
# waiting to be retried at shutdown goes first) in one step (PROTOCOL.md hole 2). Only a slot
# that still holds a task pushes one: a re-sent call, or a slot the sweeper already emptied,
# changes nothing.
REQUEUE = Script(
    "requeue",
    """
local queue, noti, processing = KEYS[1], KEYS[2], KEYS[3]
if redis.call('hdel', processing, ARGV[1]) == 0 then return 0 end
if ARGV[3] == 'head' then
    redis.call('lpush', queue, ARGV[2])
else
    redis.call('rpush', queue, ARGV[2])
end
redis.call('rpush', noti, '1')
return 1
""",
)

# The dead-letter record, dated by Redis's clock: ARGV[first ..]: payload, reason, worker, the
# last error's traceback ('' for none). Shared by BURY and BURY_ENVELOPED.
DEAD_RECORD = """
local function dead_record(first)
    local clock = redis.call('time')
    local record = {payload = ARGV[first], reason = ARGV[first + 1], worker = ARGV[first + 2],
        failed_at = tonumber(clock[1]) + tonumber(clock[2]) / 1e6}
    if ARGV[first + 3] ~= '' then record.traceback = ARGV[first + 3] end
    return cmsgpack.pack(record)
end
"""

# KEYS: processing, dead.  ARGV: slot field, cap of the dead list, then the record's fields
# (see DEAD_RECORD). Moves the task out of its slot into the dead-letter list in one step;
# guarded like REQUEUE.
BURY = Script(
    "bury",
    DEAD_RECORD
    + """
local processing, dead = KEYS[1], KEYS[2]
if redis.call('hdel', processing, ARGV[1]) == 0 then return 0 end
redis.call('lpush', dead, dead_record(3))
redis.call('ltrim', dead, 0, tonumber(ARGV[2]) - 1)
return 1
""",
)

# KEYS: queue, noti, processing, deliveries, dead, ready, active, jobs, sweep.
# ARGV: max deliveries (0: no limit), dead-list cap, deliveries memory (ms), the hash this call
# pages through ('processing' or 'active'), its HSCAN cursor, page size, the sweeper's id, its
# interval (ms; 0: sweep regardless, as ``Queue.requeue_lost()``).
# Returns {the next cursor ('0': that hash is done), tasks requeued, tasks dead-lettered,
# tokens added (negative: trimmed)}, or {'skip', 0, 0, 0}: another sweeper swept the queue
# less than an interval ago.
#
# A sweep is a series of calls: processing from cursor 0 until it returns '0', then active.
# Each is bounded by the page size (Redis latency stays flat however many tasks are in flight)
# and leaves the queue consistent; a call re-sent after a lost reply re-reads a page it already
# swept and finds nothing more to do. The sweep's first call (processing, cursor 0) takes the
# queue's sweep lease, the string ``sweep`` = "<Redis ms>:<sweeper id>" that lives an interval:
# while another sweeper's lease is younger than this sweeper's interval, it returns 'skip'. So
# however many workers run a sweeper, a queue is swept about once per interval.
#
# v1's requeue-lost, plus:
# - EXISTS instead of GET: a field naming an application's hash must not make the script fail;
# - enveloped tasks in flight (``active``: slot field -> id) whose slot's lease is gone go back
#   to the head of ready, their envelope's attempt number one higher (each delivery has its
#   own: the fence of TaskContext.attempt; the meta is re-packed with cmsgpack, the rest of
#   the envelope untouched), where delayed's and go-delayed's sweepers never see them (they
#   read only the processing hash);
# - poison tasks (PROTOCOL.md hole 7): each requeue of a dead worker's task counts one delivery
#   in the deliveries hash (field: SHA1 of the payload, so the v1 payload is untouched; an
#   enveloped task's id); the task whose workers died max-deliveries times goes to the
#   dead-letter list instead. The hash expires a while after its last count, so it stays small;
# - tokens pushed in bounded groups, and a surplus of tokens trimmed (tokens beyond the tasks
#   of the queue and of ready are phantoms, PROTOCOL.md hole 3);
# - the time of a dead letter is Redis's (TIME).
REQUEUE_LOST = Script(
    "requeue_lost",
    """
local queue, noti, processing, deliveries, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local ready, active, jobs, sweep = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local max_deliveries, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local which, cursor, holder, interval = ARGV[4], ARGV[5], ARGV[7], tonumber(ARGV[8])
local clock = redis.call('time')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
local now_ms = math.floor(now * 1000)
if which == 'processing' and cursor == '0' and interval > 0 then
    local last = redis.call('get', sweep)
    if last then
        local at, by = string.match(last, '^(%d+):(.*)$')
        if by ~= holder and at and now_ms - tonumber(at) < interval then
            return {'skip', 0, 0, 0}
        end
    end
    redis.call('set', sweep, now_ms .. ':' .. holder, 'px', interval)
end
local missing = redis.call('llen', queue) + redis.call('llen', ready) - redis.call('llen', noti)
local requeued, buried = 0, 0
local function redelivered(envelope)  -- the envelope, its attempt number one higher
    local size = struct.unpack('>I4', envelope, 12)
    local meta = cmsgpack.unpack(string.sub(envelope, 16, 15 + size))
    meta.attempt = meta.attempt + 1
    local packed = cmsgpack.pack(meta)
    return string.sub(envelope, 1, 11) .. struct.pack('>I4', #packed) .. packed ..
        string.sub(envelope, 16 + size)
end
local function poisoned(field, digest, payload)
    local count = redis.call('hincrby', deliveries, digest, 1)
    redis.call('pexpire', deliveries, ARGV[3])
    if max_deliveries == 0 or count < max_deliveries then return false end
    redis.call('hdel', deliveries, digest)
    local reason = 'PoisonTaskError: its worker died on each of its ' .. count .. ' deliveries'
    redis.call('lpush', dead, cmsgpack.pack(
        {payload = payload, reason = reason, failed_at = now, worker = field}))
    redis.call('ltrim', dead, 0, cap - 1)
    buried = buried + 1
    return true
end
local page = redis.call('hscan', which == 'processing' and processing or active, cursor,
    'count', ARGV[6])
local entries = page[2]
for i = 1, #entries, 2 do
    local field, value = entries[i], entries[i + 1]
    -- HSCAN may return a field twice: only the call that removes it requeues its task
    if redis.call('exists', field) == 1 then  -- its holder lives
    elseif which == 'processing' then
        if redis.call('hdel', processing, field) == 1 and
                not poisoned(field, redis.sha1hex(value), value) then
            redis.call('rpush', queue, value)
            requeued = requeued + 1
        end
    elseif redis.call('hdel', active, field) == 1 then
        local envelope = redis.call('hget', jobs, value)
        if envelope then
            local task = string.sub(envelope, 16 + struct.unpack('>I4', envelope, 12))
            if poisoned(field, value, task) then
                redis.call('hdel', jobs, value)
            else
                redis.call('hset', jobs, value, redelivered(envelope))
                redis.call('lpush', ready, value)
                requeued = requeued + 1
            end
        end
    end
end
local tokens = missing + requeued
local left = tokens
while left > 0 do
    local group = {}
    for i = 1, math.min(left, 1000) do group[i] = '1' end
    redis.call('lpush', noti, unpack(group))
    left = left - #group
end
if tokens < 0 then redis.call('ltrim', noti, 0, tokens - 1) end
return {page[1], requeued, buried, tokens}
""",
)

# KEYS: queue, noti, dead.  ARGV: how many dead letters to requeue, oldest first.
# Moves them back to the queue, each with its token; returns how many. A record is read before
# it is removed (Redis does not undo a script's writes when it fails later): one that is not a
# dead-letter record with a payload is moved to the newest end and stays, never lost.
REQUEUE_DEAD = Script(
    "requeue_dead",
    """
local queue, noti, dead = KEYS[1], KEYS[2], KEYS[3]
local moved = 0
for i = 1, tonumber(ARGV[1]) do
    local record = redis.call('lindex', dead, -1)
    if not record then break end
    local ok, fields = pcall(cmsgpack.unpack, record)
    if ok and type(fields) == 'table' and type(fields.payload) == 'string' then
        redis.call('rpop', dead)
        redis.call('rpush', queue, fields.payload)
        redis.call('rpush', noti, '1')
        moved = moved + 1
    else
        redis.call('lmove', dead, dead, 'RIGHT', 'LEFT')
    end
end
return moved
""",
)
