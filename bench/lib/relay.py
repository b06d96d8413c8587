"""The floor of a server between a child and its followers: a minimal relay.

One process on uvloop starts the child once `--followers` connections are in, reads its
pipe when the loop says it is readable, and writes each read at once to every follower
(which of them goes first turns with each read): as SSE events (`"type":"realtime"`, one
JSON object a line, the shape the benchmark's SSE client parses), as WebSocket text
frames (one a line), or as the raw lines (`GET /raw`, no HTTP answer: for a process
that copies them to its stdout, the floor of `logcast tail`). Nothing is numbered, kept,
filtered or levelled, no thread hands anything on, nothing is batched but what one read
brings, and a follower that stops reading is not looked after: what this measures is the
machine (the pipe, the wakes, the loopback writes), not a product.

    python bench/lib/relay.py --port-file F --followers 3 -- child argv...

With `--followers 0` the child starts on `POST /start` instead; `GET /healthz` and
`GET /stats` (`{"subscribers": N}`) answer as the benchmarks' servers do
(`bench/lib/servers.start_relay`), and the relay runs until its process group is stopped.
Otherwise it ends once the child has ended and every follower's connection has closed
(after what was written to it went out).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


class Follower(asyncio.Protocol):
    """One connection: its request says what it gets (SSE, WebSocket or raw lines)."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.head = b""
        self.kind = ""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.kind:
            return  # pongs and the like
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        assert self.transport is not None
        lines = self.head[:end].split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines[1:] if b": " in line)
        if b"websocket" in headers.get(b"upgrade", b""):
            key = next(
                line.split(b": ", 1)[1] for line in lines[1:] if line.lower().startswith(b"sec-websocket-key")
            )
            accept = base64.b64encode(hashlib.sha1(key.strip() + WS_GUID).digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
                b"sec-websocket-accept: %s\r\n\r\n" % accept
            )
            self.kind = "ws"
        elif lines[0].startswith(b"GET /raw "):
            self.kind = "raw"
        elif lines[0].startswith((b"GET /healthz ", b"GET /stats ", b"POST /start ")):
            self.kind = "control"  # what may still come on this connection is ignored
            self.control(lines[0])
            return
        else:
            self.transport.write(SSE_HEAD)
            self.kind = "sse"
        self.relay.join(self)

    def control(self, request_line: bytes) -> None:
        """A benchmark's question (`/healthz`, `/stats`) or its start (`POST /start`): one
        JSON answer, then the connection closes."""
        assert self.transport is not None
        if request_line.startswith(b"POST /start ") and self.relay.child is None:
            self.relay.start()
        body = orjson.dumps({"subscribers": len(self.relay.followers)})
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (len(body), body)
        )
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.leave(self)


class Relay:
    def __init__(self, command: list[str], followers: int) -> None:
        self.command = command
        self.wanted = followers
        self.followers: list[Follower] = []
        self.child: subprocess.Popen[bytes] | None = None
        self.rest = b""
        self.seq = 0
        self.turn = 0  # the follower served first for the next read
        self.ended = False  # the child ended and every follower was closed
        self.done = asyncio.get_running_loop().create_future()

    def join(self, follower: Follower) -> None:
        self.followers.append(follower)
        if self.wanted and len(self.followers) == self.wanted and self.child is None:
            self.start()

    def leave(self, follower: Follower) -> None:
        if follower in self.followers:
            self.followers.remove(follower)
        self._maybe_done()

    def _maybe_done(self) -> None:
        """The relay's own end (not under `--followers 0`): the child ended and the last
        follower's connection closed, so nothing written to them is left behind."""
        if self.wanted and self.ended and not self.followers and not self.done.done():
            self.done.set_result(None)

    def start(self) -> None:
        self.child = subprocess.Popen(self.command, stdout=subprocess.PIPE)  # in the relay's group
        assert self.child.stdout is not None
        fd = self.child.stdout.fileno()
        os.set_blocking(fd, False)
        asyncio.get_running_loop().add_reader(fd, self.readable, fd)

    def readable(self, fd: int) -> None:
        try:
            data = os.read(fd, 1 << 20)
        except BlockingIOError:
            return
        if not data:
            asyncio.get_running_loop().remove_reader(fd)
            self.end()
            return
        stamp = time.time()
        data = self.rest + data if self.rest else data
        cut = data.rfind(b"\n") + 1
        self.rest = data[cut:]
        if not cut:
            return
        lines = data[: cut - 1].split(b"\n")
        sse = ws = raw = b""
        followers = self.followers
        self.turn = turn = (self.turn + 1) % max(1, len(followers))
        for follower in followers[turn:] + followers[:turn]:
            if follower.kind == "sse":
                sse = sse or self.sse(lines, stamp)
                follower.transport.write(sse)  # type: ignore[union-attr]
            elif follower.kind == "ws":
                ws = ws or b"".join(_text_frame(line) for line in lines)
                follower.transport.write(ws)  # type: ignore[union-attr]
            else:
                raw = raw or data[:cut]
                follower.transport.write(raw)  # type: ignore[union-attr]
        self.seq += len(lines)

    def sse(self, lines: list[bytes], stamp: float) -> bytes:
        body = b"".join(
            b"id: %d\ndata: %s\n\n"
            % (
                seq,
                orjson.dumps(
                    {
                        "type": "realtime",
                        "seq": seq,
                        "timestamp": stamp,
                        "message": line.decode(errors="replace"),
                    }
                ),
            )
            for seq, line in enumerate(lines, self.seq)
        )
        return b"%x\r\n%s\r\n" % (len(body), body)

    def end(self) -> None:
        for follower in list(self.followers):
            if follower.kind == "sse":
                follower.transport.write(b"0\r\n\r\n")  # type: ignore[union-attr]
            follower.transport.close()  # type: ignore[union-attr]
        if self.child is not None:
            self.child.wait()
        self.ended = True
        self._maybe_done()


def _text_frame(payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + payload


async def serve(port_file: Path, followers: int, command: list[str]) -> None:
    relay = Relay(command, followers)
    server = await asyncio.get_running_loop().create_server(lambda: Follower(relay), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    port_file.with_suffix(".tmp").write_text(str(port))
    port_file.with_suffix(".tmp").rename(port_file)
    async with server:
        await relay.done


def copy_raw(port: int) -> None:
    """The floor of a terminal follower: a process that copies the relay's raw lines to stdout."""
    import socket

    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /raw HTTP/1.1\r\n\r\n")
        while data := sock.recv(1 << 16):
            view = memoryview(data)
            while view:
                view = view[os.write(1, view) :]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port-file", type=Path, help="where the relay writes its port once it listens")
    parser.add_argument(
        "--followers",
        type=int,
        default=3,
        help="connections to wait for before the child starts (0: until POST /start)",
    )
    parser.add_argument("--copy", type=int, metavar="PORT", help="be the raw follower of the relay on PORT")
    parser.add_argument("command", nargs="*", help="the child's argv, after --")
    args = parser.parse_args()
    if args.copy:
        copy_raw(args.copy)
        return
    import uvloop

    uvloop.run(serve(args.port_file, args.followers, args.command))


if __name__ == "__main__":
    sys.exit(main())
