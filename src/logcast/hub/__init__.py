"""Sequence numbers, the memory tail, fan-out to subscribers, the store writer."""

from logcast.hub.hub import Entry, Gap, Hub, LiveBatch, ProcessLog, Subscription, tune_runtime

__all__ = ["Entry", "Gap", "Hub", "LiveBatch", "ProcessLog", "Subscription", "tune_runtime"]
