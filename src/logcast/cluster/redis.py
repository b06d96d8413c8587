"""The cluster's own Redis connection (the history store keeps its own), claiming names
and a host id, and the fence that keeps an agent that was away from writing over the one
that took them.

Each claim gets an epoch: Redis's clock in microseconds, and above every epoch already on
the host id and the names it takes. The host id (`Keys.instance`) and each name
(`Keys.epoch`) hold the epoch of the run that took them last. A run writes only while
none of its keys holds a higher epoch (`fence_of`, applied by `store.redis_streams`), and
its heartbeat (`renew`) fences it off when one does. A lower or missing epoch is Redis
having lost data (a restart from an older snapshot, or none): the heartbeat puts the run's
own back. Epochs follow the clock, so a claim made after such a loss is still above every
claim before it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from logcast.cluster.keys import LOST_AFTER, Keys
from logcast.errors import FencedOff, LogcastError
from logcast.jsonobj import json_object
from logcast.store.redis_streams import EPOCH_MAX, Fence

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


def _start_ticks(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat),
    or None (no such process, no /proc). No step of the wall clock moves it, where a start
    time on the wall clock (psutil's) moves with every step NTP makes."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()  # the name in parentheses may hold anything
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


@cache
def _started() -> int | None:
    return _start_ticks(os.getpid())


def alive_value(at: float) -> dict[str, Any]:
    """What an agent's liveness key holds: who it is (pid and start on this machine), and
    when it last said so."""
    return {"pid": os.getpid(), "started": _started(), "machine": machine(), "at": at}


def _gone(holder: Mapping[str, Any]) -> bool:
    """Whether the agent `holder` describes ran here and its process has ended (a crash: its
    liveness key has not expired yet, but no one is behind it). Its pid may be another
    process by now (a container's agent is pid 1 again): then it started at another time."""
    pid, started = holder.get("pid"), holder.get("started")
    if holder.get("machine") != machine() or type(pid) is not int or pid <= 0 or type(started) is not int:
        return False
    return _start_ticks(pid) != started


def connect(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        encoding_errors="replace",  # what another writer put there is text, never a UnicodeDecodeError
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), 2),
    )


# Both scripts take KEYS = the names' owner keys, then their epoch keys.

# An epoch as a key holds it: decimal digits below 2^53 (exact in Lua's doubles: EPOCH_MAX),
# or nil for anything else (what no agent writes: read as missing, and put right by the
# heartbeat).
_EPOCH_OF = f"""
local function epoch_of(value)
  if type(value) == 'string' and #value <= 16 and string.match(value, '^%d+$') then
    local epoch = tonumber(value)
    if epoch <= {EPOCH_MAX} then
      return epoch
    end
  end
  return nil
end
"""

# The epoch of a claim, `above` in Lua: above Redis's clock and every epoch in `keys`.
_EPOCH = (
    _EPOCH_OF
    + """
local function above(keys)
  local now = redis.call('TIME')
  local epoch = tonumber(now[1]) * 1000000 + tonumber(now[2])
  for _, key in ipairs(keys) do
    local held = epoch_of(redis.call('GET', key))
    if held and held >= epoch then
      epoch = held + 1
    end
  end
  return string.format('%.0f', epoch)
end
"""
)

# Atomically: refuse if the host id is run by another live agent (unless its liveness is
# still `takeover`, the value the caller read of an agent known to have ended) or a name is
# held by another host whose agent is alive; else take the host id and the names under a
# new epoch and mark this agent alive (a second agent starting at once sees it). Answers
# {-1, epoch}, or what was in the way: {0, host} the host id, {i, holder} the i-th name.
_CLAIM = (
    _EPOCH
    + """
local prefix, host, ttl, alive, takeover = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local n = #KEYS / 2
local agent = prefix .. ':agent:' .. host
local instance = prefix .. ':instance:' .. host
local living = redis.call('GET', agent)
if living and living ~= takeover then
  return {0, host}
end
for i = 1, n do
  local holder = redis.call('GET', KEYS[i])
  if holder and holder ~= host and redis.call('EXISTS', prefix .. ':agent:' .. holder) == 1 then
    return {i, holder}
  end
end
local held = {instance}
for i = n + 1, 2 * n do
  held[#held + 1] = KEYS[i]
end
local epoch = above(held)
for i = 1, n do
  redis.call('SET', KEYS[i], host)
  redis.call('SET', KEYS[n + i], epoch)
end
redis.call('SET', instance, epoch)
redis.call('SET', agent, alive, 'PX', ttl)
return {-1, epoch}
"""
)

# A heartbeat of the run of `epoch`: fenced off if the host id or a name holds a higher
# epoch; else alive again, and what Redis lost (a lower or missing epoch, an owner) put back.
_RENEW = (
    _EPOCH_OF
    + """
local prefix, host, ttl, alive, epoch = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local mine = tonumber(epoch)
local n = #KEYS / 2
local instance = prefix .. ':instance:' .. host
local held = epoch_of(redis.call('GET', instance))
if held and held > mine then
  return {0, host}
end
for i = 1, n do
  held = epoch_of(redis.call('GET', KEYS[n + i]))
  if held and held > mine then
    return {i, redis.call('GET', KEYS[i]) or '?'}
  end
end
if epoch_of(redis.call('GET', instance)) ~= mine then
  redis.call('SET', instance, epoch)
end
for i = 1, n do
  if epoch_of(redis.call('GET', KEYS[n + i])) ~= mine then
    redis.call('SET', KEYS[n + i], epoch)
  end
  if redis.call('GET', KEYS[i]) ~= host then
    redis.call('SET', KEYS[i], host)
  end
end
redis.call('SET', prefix .. ':agent:' .. host, alive, 'PX', ttl)
return false
"""
)


async def _script(
    client: aioredis.Redis, script: str, keys: Keys, host: str, names: Sequence[str], alive: str, last: str
) -> tuple[int, str] | None:
    """Run `_CLAIM` or `_RENEW` for `names`: its answer as (index, text), or None."""
    found = await client.eval(
        script,
        2 * len(names),
        *[keys.owner(name) for name in names],
        *[keys.epoch(name) for name in names],
        keys.prefix,
        host,
        str(int(LOST_AFTER * 1000)),
        alive,
        last,
    )
    if not found:
        return None
    index, text = cast(list[object], found)
    return int(cast(int, index)), str(text)


async def claim(client: aioredis.Redis, keys: Keys, host: str, names: Sequence[str], alive: str) -> int:
    """Take host id `host` and `names` for a new run; its epoch. HostIdTaken or NameTaken
    name the live agent that holds one."""
    living = cast(str | None, await client.get(keys.agent(host)))
    holder = json_object(living) or {}
    takeover = living if living is not None and _gone(holder) else ""
    index, text = cast(tuple[int, str], await _script(client, _CLAIM, keys, host, names, alive, takeover))
    if index == -1:
        return int(text)
    if index == 0:
        raise HostIdTaken(host, json_object(await client.get(keys.agent(host))) or holder)
    raise NameTaken(names[index - 1], text)


async def renew(
    client: aioredis.Redis, keys: Keys, host: str, names: Sequence[str], alive: str, epoch: int
) -> None:
    """The run of `epoch` is alive and still holds its host id and `names`; FencedOff if
    another agent took one while it was away."""
    found = await _script(client, _RENEW, keys, host, names, alive, str(epoch))
    if found is None:
        return
    index, holder = found
    if index == 0:
        raise FencedOff(f"another agent took host id {host!r} while this one was away")
    raise FencedOff(f"host {holder!r} took process {names[index - 1]!r} while this agent was away")


def fence_of(keys: Keys, host: str, epoch: int) -> Fence:
    """The fence of the writes of the run of `epoch` about `names`: no higher epoch on its
    host id or on any of them."""

    def fence(names: Iterable[str]) -> dict[str, int]:
        return {keys.instance(host): epoch, **{keys.epoch(name): epoch for name in names}}

    return fence
