"""Wire encodings of stream events, shared by SSE and WebSocket.

A record's `log` object is serialised once (orjson) and cached in the ring by the hub;
every subscriber splices those same bytes into its event envelope. The envelope is a
few constant bytes, so building an event costs a concatenation, not a serialisation.
"""

from __future__ import annotations

from typing import Any

import orjson

from logcast.hub import Entry, Gap, Hub, ProcessLog
from logcast.types import EventType, LogRecord, Stream


def encode_log(record: LogRecord) -> bytes:
    return orjson.dumps(record.as_dict())


_PREFIX = {kind: b'{"type":"' + kind.value.encode() + b'","log":' for kind in EventType}


def event_json(kind: EventType, payload: LogRecord | Gap | int, log_json: bytes | None = None) -> bytes:
    """The JSON of one event, exactly as SPEC.md writes it."""
    if isinstance(payload, LogRecord):
        return _PREFIX[kind] + (log_json or encode_log(payload)) + b"}"
    if isinstance(payload, Gap):
        return orjson.dumps(
            {
                "type": "gap",
                "from": payload.start,
                "to": payload.end,
                "count": payload.count,
                "reason": payload.reason,
                "process": payload.process,
            }
        )
    return orjson.dumps({"type": kind.value, "seq": payload})


def message_json(kind: EventType, message: str, **extra: Any) -> bytes:
    return orjson.dumps({"type": kind.value, "message": message, **extra})


def entry_id(payload: LogRecord | Gap | int) -> int:
    if isinstance(payload, LogRecord):
        return payload.seq
    if isinstance(payload, Gap):
        return payload.end
    return payload


def encode_entries(hub: Hub, plog: ProcessLog, entries: list[Entry]) -> list[tuple[EventType, Any, bytes]]:
    """(type, payload, event JSON) for each entry, with record encodings shared via the ring."""
    records = [p for _, p in entries if isinstance(p, LogRecord)]
    encoded = iter(hub.encode_logs(plog, records, encode_log)) if records else iter(())
    out: list[tuple[EventType, Any, bytes]] = []
    for kind, payload in entries:
        if isinstance(payload, LogRecord):
            out.append((kind, payload, event_json(kind, payload, next(encoded))))
        else:
            out.append((kind, payload, event_json(kind, payload)))
    return out


def sse_frames(items: list[tuple[EventType, Any, bytes]]) -> bytes:
    """One SSE message per event: `id: <seq>` then `data: <json>`."""
    parts: list[bytes] = []
    for _, payload, data in items:
        parts.append(b"id: %d\ndata: %s\n\n" % (entry_id(payload), data))
    return b"".join(parts)


def text_line(kind: EventType, payload: LogRecord | Gap | int) -> str | None:
    """The seed's text frame: the bare line; status and gaps as bracketed notes."""
    if isinstance(payload, LogRecord):
        if payload.stream is Stream.SYSTEM:
            return f"[logcast] {payload.process}: {payload.message}"
        return payload.message
    if isinstance(payload, Gap):
        return f"[logcast] {payload.process}: {payload.count} lines missed ({payload.start}-{payload.end}, {payload.reason})"
    return None
