"""Which Redis errors no retry can fix: wrong or missing credentials, an unknown database, an
ACL refusal. The start-up checks, the lease, the sweeper and enqueue turn them into a
RedisConfigurationError that says what to change; everything else (refused, reset, timeouts,
LOADING) is connection trouble, worth retrying."""

from __future__ import annotations

import sys

from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    NoPermissionError,
    ResponseError,
)

from .errors import RedisConfigurationError

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

# What an ACL user of a worker and sweeper needs, as ACL SETUSER rules: the keys of each queue
# NAME and the liveness keys, and the queue's pub/sub channels; the commands the worker sends
# (the lease's SET and DEL, EVALSHA and SCRIPT LOAD, BLMOVE and LMOVE on tokens, HDEL on
# releases, SUBSCRIBE to aborts and MGET of the aborts written down) and those its scripts call
# (PUBLISH of kept results).
ACL_KEYS = "~{name} ~{name}_* ~adelayed:* &{name}_*"  # & : its channels (results, aborts)
# First: Redis 6.2 grants every channel by default (acl-pubsub-default allchannels), and refuses
# a channel pattern added after that grant.
ACL_CHANNELS_FIRST = "resetchannels"
ACL_COMMANDS = (
    "+@connection +get +set +del +exists +pexpire +evalsha +script|load +blmove +blpop +lmove "
    "+lpop +lpush +rpush +llen +ltrim +hset +hget +hexists +hdel +hmget +hgetall +hscan "
    "+hincrby +mget +zadd +zrem +zrange +zrangebyscore +zcard +time +publish +subscribe "
    "+unsubscribe"
)

_NO_PASSWORD_GIVEN = ("Authentication required", "must be called with the client already auth")
_NO_PASSWORD_SET = ("called without any password configured", "but no password is set")
_BAD_DATABASE = ("DB index is out of range", "invalid DB index", "SELECT is not allowed")
_ACL_REFUSALS = ("NOPERM", "no permissions", "The user executing the script can't")


def configuration_error(exc: BaseException, who: str) -> RedisConfigurationError | None:
    """The RedisConfigurationError that ``exc`` stands for, if retrying cannot fix it; None for
    connection trouble and other errors worth retrying. ``who``: e.g. "worker of queue 'jobs'"."""
    text = str(exc)
    if isinstance(exc, AuthenticationWrongNumberOfArgsError):
        return RedisConfigurationError(
            f"{who}: Redis refused AUTH's arguments ({text}): this Redis (before 6.0) has no "
            "ACL users; drop the username from the URL (redis://:PASSWORD@host:port/db)"
        )
    if isinstance(exc, AuthenticationError) or text.startswith(("NOAUTH", "WRONGPASS")):
        return _authentication_error(text, who)
    if not isinstance(exc, ResponseError):
        return None  # connection trouble: refused, reset, timeouts, LOADING
    if any(marker in text for marker in _BAD_DATABASE):
        return RedisConfigurationError(
            f"{who}: Redis refused the database number ({text}): the URL's /DB (or db=) must be "
            "below the server's `databases` setting (16 unless configured; Redis Cluster and "
            "some managed Redis have database 0 only)"
        )
    if isinstance(exc, NoPermissionError) or any(marker in text for marker in _ACL_REFUSALS):
        return RedisConfigurationError(
            f"{who}: Redis's ACL refuses this user a command or key adelayed needs ({text}); "
            f"give the user these rules (ACL SETUSER USER ...): {ACL_CHANNELS_FIRST}, then "
            f"{ACL_KEYS.format(name='NAME')} for each queue NAME, and {ACL_COMMANDS} "
            "(+config|get lets adelayed check maxmemory-policy)"
        )
    return None


def _authentication_error(text: str, who: str) -> RedisConfigurationError:
    if any(marker in text for marker in _NO_PASSWORD_GIVEN):
        fix = (
            "Redis requires a password and none was given: put it in the URL "
            "(redis://:PASSWORD@host:port/db, or redis://USER:PASSWORD@... for an ACL user)"
        )
    elif any(marker in text for marker in _NO_PASSWORD_SET):
        fix = "a password was given but this Redis has none set: drop it from the URL"
    else:
        fix = (
            "Redis refused the username or password: check the URL's USER and PASSWORD "
            "(redis://USER:PASSWORD@host:port/db), and that the ACL user is enabled (on)"
        )
    return RedisConfigurationError(f"{who}: {fix} ({text})")


def sole_fatal(exc: BaseException) -> RedisConfigurationError | None:
    """The first RedisConfigurationError in ``exc`` when that is all it holds (an exception
    group of them, as a worker's task groups raise when several of its tasks met the same
    refusal), else None."""
    if isinstance(exc, RedisConfigurationError):
        return exc
    if not isinstance(exc, BaseExceptionGroup):
        return None
    found = [sole_fatal(inner) for inner in exc.exceptions]
    return found[0] if found and all(found) else None
