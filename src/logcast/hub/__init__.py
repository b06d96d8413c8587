"""Sequence numbers, the memory tail, fan-out to subscribers, the store writer."""

from logcast.hub.hub import Hub
from logcast.hub.journal import Journal
from logcast.hub.mirror import MirrorHub
from logcast.hub.subscription import LiveBatch, Subscription
from logcast.types import Entry, Gap

__all__ = ["Entry", "Gap", "Hub", "Journal", "LiveBatch", "MirrorHub", "Subscription"]
