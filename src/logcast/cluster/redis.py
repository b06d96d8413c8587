"""The cluster's own Redis connection (the history store keeps its own), claiming names
and a host id, and the fence that keeps an agent that was away from writing over the one
that took them (`renew`, `fence_of`; applied by `store.redis_streams.fenced`)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, cast

import psutil
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from logcast.cluster.keys import LOST_AFTER, Keys
from logcast.errors import FencedOff, LogcastError
from logcast.jsonobj import json_object
from logcast.store.redis_streams import Fence

CONNECT_TIMEOUT = 5.0
SOCKET_TIMEOUT = 30.0  # above any blocking read issued here


class NameTaken(LogcastError):
    """A process name of this agent is run by another live agent."""

    def __init__(self, name: str, holder: str) -> None:
        super().__init__(f"process {name!r} is already run by host {holder!r} (its agent is alive)")
        self.name = name
        self.holder = holder


class HostIdTaken(LogcastError):
    """Another live agent runs under this host id."""

    def __init__(self, host: str, holder: Mapping[str, Any]) -> None:
        pid, machine = holder.get("pid"), holder.get("machine")
        where = f"pid {pid}" + (f" on {str(machine).split('/')[0]}" if isinstance(machine, str) else "")
        super().__init__(
            f"host id {host!r} is used by another live agent ({where}): give this one its own"
            " --host-id, or stop that one first"
        )
        self.host = host


@cache
def machine() -> str:
    """This machine as it runs now (its name and boot): a pid means the same process only
    on the same boot of the same machine."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def alive_value(at: float) -> dict[str, Any]:
    """What an agent's liveness key holds: who it is, and when it last said so."""
    return {"pid": os.getpid(), "machine": machine(), "at": at}


def _gone(holder: Mapping[str, Any]) -> bool:
    """Whether the agent `holder` describes ran here and its process has ended (a crash: its
    liveness key has not expired yet, but no one is behind it)."""
    pid = holder.get("pid")
    if holder.get("machine") != machine() or type(pid) is not int or pid <= 0 or pid == os.getpid():
        return False
    return not psutil.pid_exists(pid)


def connect(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        encoding_errors="replace",  # what another writer put there is text, never a UnicodeDecodeError
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), 2),
    )


# Atomically: refuse if the host id is run by another live agent (unless `takeover`: that
# one is known to have ended) or a name is held by another host whose agent is alive; else
# take the host id (this run's token) and the names, and mark this agent alive (so that a
# second agent starting at the same moment sees it).
_CLAIM = """
local prefix, host, ttl, alive, token, takeover = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local agent = prefix .. ':agent:' .. host
local running = redis.call('GET', prefix .. ':instance:' .. host)
if takeover ~= '1' and running and running ~= token and redis.call('EXISTS', agent) == 1 then
  return {0, host}
end
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder and holder ~= host and redis.call('EXISTS', prefix .. ':agent:' .. holder) == 1 then
    return {i, holder}
  end
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, host)
end
redis.call('SET', prefix .. ':instance:' .. host, token)
redis.call('SET', agent, alive, 'PX', ttl)
return false
"""

# A heartbeat: fenced off (the host id's token or a name is another's) or alive again. What
# is missing (Redis lost its data) is taken back; nothing another run took is.
_RENEW = """
local prefix, host, ttl, alive, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local instance = prefix .. ':instance:' .. host
local running = redis.call('GET', instance)
if running and running ~= token then
  return {0, running}
end
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder and holder ~= host then
    return {i, holder}
  end
end
redis.call('SET', instance, token, 'NX')
for i, key in ipairs(KEYS) do
  redis.call('SET', key, host, 'NX')
end
redis.call('SET', prefix .. ':agent:' .. host, alive, 'PX', ttl)
return false
"""


async def _script(
    client: aioredis.Redis, script: str, keys: Keys, host: str, names: Sequence[str], alive: str, *args: str
) -> tuple[int, str] | None:
    """Run `_CLAIM` or `_RENEW` over the names' owner keys: None, or what was in the way,
    (0, …) the host id or (i, its holder) the i-th name (from 1)."""
    found = await client.eval(
        script,
        len(names),
        *[keys.owner(name) for name in names],
        keys.prefix,
        host,
        str(int(LOST_AFTER * 1000)),
        alive,
        *args,
    )
    if not found:
        return None
    index, holder = cast(list[object], found)
    return int(cast(int, index)), str(holder)


async def claim(
    client: aioredis.Redis, keys: Keys, host: str, names: Sequence[str], alive: str, token: str
) -> None:
    """Take host id `host` (for the run `token`) and `names`, or raise HostIdTaken or
    NameTaken naming the live agent that holds one."""
    holder = json_object(await client.get(keys.agent(host))) or {}
    takeover = "1" if _gone(holder) else "0"
    found = await _script(client, _CLAIM, keys, host, names, alive, token, takeover)
    if found is None:
        return
    index, holder_host = found
    if index == 0:
        raise HostIdTaken(host, json_object(await client.get(keys.agent(host))) or holder)
    raise NameTaken(names[index - 1], holder_host)


async def renew(
    client: aioredis.Redis, keys: Keys, host: str, names: Sequence[str], alive: str, token: str
) -> None:
    """This agent is alive and still holds its host id and `names`; FencedOff if another
    agent took one while it was away."""
    found = await _script(client, _RENEW, keys, host, names, alive, token)
    if found is None:
        return
    index, holder = found
    if index == 0:
        raise FencedOff(f"another agent took host id {host!r} while this one was away")
    raise FencedOff(f"host {holder!r} took process {names[index - 1]!r} while this agent was away")


def fence_of(keys: Keys, host: str, token: str) -> Fence:
    """The fence of an agent's writes about `names`: its run still holds the host id, and
    the host each name."""

    def fence(names: Iterable[str]) -> dict[str, str]:
        return {keys.instance(host): token, **{keys.owner(name): host for name in names}}

    return fence
