"""The naive baseline page's own server: logcast sends no CORS headers, so the page's files
and logcast's `/api/…` come from one origin, the API relayed as a raw byte copy (same events,
one extra loopback hop) that the benchmark can cut when a measurement ends."""

from __future__ import annotations

import contextlib
import functools
import http.server
import socket
import threading
from pathlib import Path
from typing import Any, ClassVar

NAIVE_PAGE_DIR = Path(__file__).resolve().parents[1] / "pages" / "naive"


class NaiveHandler(http.server.SimpleHTTPRequestHandler):
    """Static files from `bench/pages/naive`; `/api/…` relayed to logcast as raw bytes. `cut()` ends
    every relayed stream and answers 204 from then on (an EventSource does not retry a 204),
    so a page that fell behind stops getting more; `resume()` relays again."""

    upstream_port = 0
    refuse = False
    upstreams: ClassVar[set[socket.socket]] = set()
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @classmethod
    def cut(cls) -> None:
        with cls.lock:
            cls.refuse = True
            for up in cls.upstreams:
                with contextlib.suppress(OSError):
                    up.shutdown(socket.SHUT_RDWR)

    @classmethod
    def resume(cls) -> None:
        with cls.lock:
            cls.refuse = False

    def do_GET(self) -> None:
        if not self.path.startswith("/api/"):
            super().do_GET()
            return
        self.close_connection = True
        if self.refuse:
            self.send_response(204)
            self.end_headers()
            return
        head = (
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.upstream_port}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n"
        )
        last_id = self.headers.get("Last-Event-ID")
        if last_id:
            head += f"Last-Event-ID: {last_id}\r\n"
        try:
            with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10) as up:
                with self.lock:
                    self.upstreams.add(up)
                try:
                    up.sendall((head + "\r\n").encode())
                    up.settimeout(60)  # logcast pings every 15 s
                    while True:
                        data = up.recv(1 << 16)
                        if not data:
                            break
                        self.wfile.write(data)
                finally:
                    with self.lock:
                        self.upstreams.discard(up)
        except OSError:
            pass  # the page went away, the stream was cut or the server stopped: drop both ends


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a page that went away mid-response: nothing to report


def start_naive_server(upstream_port: int) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve the naive page (naive.html, naive.css, naive.js) and relay `/api/…` to logcast on
    `upstream_port`, from a thread; (the server, its base URL)."""
    handler = functools.partial(NaiveHandler, directory=str(NAIVE_PAGE_DIR))
    NaiveHandler.upstream_port = upstream_port
    httpd = QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, name="naive-http", daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
