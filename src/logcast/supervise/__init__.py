"""Spawning, states, restart policy, readiness, dependencies and stopping of child processes."""

from logcast.supervise.exits import LastExit, RunHistory
from logcast.supervise.process import ManagedProcess
from logcast.supervise.supervisor import Supervisor

__all__ = ["LastExit", "ManagedProcess", "RunHistory", "Supervisor"]
