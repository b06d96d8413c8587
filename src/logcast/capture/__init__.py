"""Bytes → records: line framing, level detection, pipe readers."""

from logcast.capture.framing import Framed, LineFramer
from logcast.capture.levels import detect_level, detect_levels
from logcast.capture.reader import PipeReader

__all__ = ["Framed", "LineFramer", "PipeReader", "detect_level", "detect_levels"]
