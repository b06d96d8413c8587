"""Where the cluster keeps what it shares in Redis; every name starts with the prefix."""

from __future__ import annotations

from dataclasses import dataclass

HEARTBEAT = 2.0  # s between two heartbeats of an agent
LOST_AFTER = 10.0  # s without a heartbeat after which an agent is lost
COMMAND_TIMEOUT = 10.0  # s a replica waits for an agent to act on a command
REPLY_TTL = 60  # s a reply waits for the replica that asked
DONE_TTL = 3600  # s an agent remembers a command it acted on (a retry is not acted on twice)


@dataclass(frozen=True)
class Keys:
    prefix: str = "logcast"

    def agent(self, host: str) -> str:
        """Exists while the agent of `host` is alive (it expires after LOST_AFTER)."""
        return f"{self.prefix}:agent:{host}"

    def instance(self, host: str) -> str:
        """The epoch of the agent run that holds host id `host` (`cluster.redis`: no
        expiry; a run that finds a higher one there is fenced off)."""
        return f"{self.prefix}:instance:{host}"

    def epoch(self, name: str) -> str:
        """The epoch of the agent run that holds process `name` (as `instance`)."""
        return f"{self.prefix}:epoch:{name}"

    @property
    def agents(self) -> str:
        """Every host that ever ran an agent (hash host -> its description, JSON)."""
        return f"{self.prefix}:agents"

    def owner(self, name: str) -> str:
        """The host that runs process `name`."""
        return f"{self.prefix}:owner:{name}"

    def process(self, name: str) -> str:
        """What the owner publishes of `name` (hash: host, info, config, stats, cleared_upto)."""
        return f"{self.prefix}:process:{name}"

    @property
    def processes(self) -> str:
        """The names that have a published description (set)."""
        return f"{self.prefix}:described"

    def commands(self, host: str) -> str:
        """The stream of commands for the agent of `host`."""
        return f"{self.prefix}:commands:{host}"

    def reply(self, command_id: str) -> str:
        return f"{self.prefix}:reply:{command_id}"

    def done(self, command_id: str) -> str:
        return f"{self.prefix}:done:{command_id}"
