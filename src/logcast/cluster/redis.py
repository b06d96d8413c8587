"""The cluster's own Redis connection (the history store keeps its own), and claiming names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from logcast.cluster.keys import LOST_AFTER, Keys
from logcast.errors import LogcastError

CONNECT_TIMEOUT = 5.0
SOCKET_TIMEOUT = 30.0  # above any blocking read issued here


class NameTaken(LogcastError):
    """A process name of this agent is run by another live agent."""

    def __init__(self, name: str, holder: str) -> None:
        super().__init__(f"process {name!r} is already run by host {holder!r} (its agent is alive)")
        self.name = name
        self.holder = holder


def connect(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        encoding_errors="replace",  # what another writer put there is text, never a UnicodeDecodeError
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), 2),
    )


# Atomically: refuse if a name is held by another host whose agent is alive, else take them
# all and mark this agent alive (so that a second agent starting at the same moment sees it).
_CLAIM = """
local prefix, host, ttl, alive = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder and holder ~= host and redis.call('EXISTS', prefix .. ':agent:' .. holder) == 1 then
    return {i, holder}
  end
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, host)
end
redis.call('SET', prefix .. ':agent:' .. host, alive, 'PX', ttl)
return false
"""


async def claim(client: aioredis.Redis, keys: Keys, host: str, names: Sequence[str], alive: str) -> None:
    """Take `names` for `host`, or raise NameTaken naming the live host that holds one."""
    found = await client.eval(
        _CLAIM,
        len(names),
        *[keys.owner(name) for name in names],
        keys.prefix,
        host,
        str(int(LOST_AFTER * 1000)),
        alive,
    )
    if found:
        index, holder = cast(list[object], found)
        raise NameTaken(names[int(cast(int, index)) - 1], str(holder))
