"""What logcast's protocol subclasses (web/wsframes.py, web/heads.py) and its direct
writes (web/direct.py) take from uvicorn, and web/wsframes.py from Starlette's WebSocket.

They extend uvicorn's own protocols, which are not a public API: if an upgrade renames
what they rely on, this fails with the name, before any stream breaks.
"""

from __future__ import annotations

import inspect

import pytest
from starlette.websockets import WebSocket
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

NEEDED = {
    WebSocket: ["self._send"],  # web/wsframes.py sends its batched-frames message through it
    WebSocketsSansIOProtocol: [
        "def handle_connect",
        "def connection_made",
        "def connection_lost",
        "async def send",
        "self.writable",
        "self.disconnected",
        "self.conn",
        "self.handshake_complete",
        "self.close_sent",
        "self.initial_response",
        "self.transport",
        "self.scope",
    ],
    HttpToolsProtocol: [
        "def data_received",
        "def on_message_begin",
        "def on_header",
        "def connection_made",
        "def connection_lost",
        "self.server_state",
        "self.client",
        "self.loop",
        "self.transport",
    ],
    RequestResponseCycle: [  # web/direct.py writes a streaming body as its `send` does
        "self.response_started",
        "self.response_complete",
        "self.chunked_encoding",
        "self.disconnected",
        "self.flow",
        "self.transport",
        'b"%x\\r\\n" % len(body), body, b"\\r\\n"',
    ],
    FlowControl: ["self.write_paused"],
    H11Protocol: [
        "def data_received",
        "def connection_made",
        "def connection_lost",
        "self.conn",
        "self.server_state",
        "self.client",
        "self.loop",
    ],
}


@pytest.mark.parametrize("protocol", list(NEEDED), ids=lambda c: c.__name__)
def test_uvicorn_still_has_what_our_protocols_extend(protocol: type) -> None:
    source = inspect.getsource(protocol)
    missing = [name for name in NEEDED[protocol] if name not in source]
    assert not missing, (
        f"uvicorn's {protocol.__name__} no longer has {missing}: see web/wsframes.py, web/heads.py,"
        " web/direct.py"
    )


def test_uvicorn_server_still_has_what_our_server_overrides() -> None:
    """web/server.py overrides these of uvicorn.Server (and reads `started`)."""
    import uvicorn

    source = inspect.getsource(uvicorn.Server)
    needed = [
        "def capture_signals",
        "def handle_exit",
        "async def serve",
        "with self.capture_signals()",
        "self.started",
    ]
    missing = [name for name in needed if name not in source]
    assert not missing, f"uvicorn {uvicorn.__version__}: uvicorn.Server lacks {missing}"
