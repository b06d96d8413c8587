"""logcast: run processes and watch their logs live."""

from logcast.types import EventType, Level, LogRecord, ProcessState, Stream

__version__ = "0.1.0"

__all__ = ["EventType", "Level", "LogRecord", "ProcessState", "Stream", "__version__"]
