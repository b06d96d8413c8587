"""Closed by default: Host, token and Origin checks as one pure ASGI middleware."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Iterable
from http.cookies import SimpleCookie
from urllib.parse import quote, urlsplit

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from logcast.web.sessions import Sessions

log = logging.getLogger(__name__)

COOKIE = "logcast_session"
SESSION_RECHECK = 2.0  # seconds between two looks at the session of a long request (a stream)
SESSIONS_SCOPE_KEY = "logcast.sessions"
PUBLIC_PATHS = frozenset(
    {"/healthz", "/api/login", "/api/logout", "/api/session", "/login.html", "/favicon.ico"}
)
PAGES = frozenset({"/", "/index.html", "/logs.html", "/config.html"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def _split_host(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.rsplit(":", 1)[0]
    return host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _with_headers(send: Send, *, static: bool = False) -> Send:
    # Static modules are revalidated (ETag) on every load, so an upgrade never mixes
    # cached old modules with new pages.
    wanted = [*SECURITY_HEADERS, (b"cache-control", b"no-cache")] if static else SECURITY_HEADERS

    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            extra = [(k, v) for k, v in wanted if k not in present]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sender


def bearer_matches(authorization: str, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time."""
    if authorization[:7].lower() != "bearer ":
        return False
    return hmac.compare_digest(authorization[7:].strip().encode(), token.encode())


def session_cookie(cookie_header: str | None) -> str | None:
    """The session id in a `Cookie` header, if there is one."""
    if not cookie_header:
        return None
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(cookie_header)
    except Exception:
        return None
    morsel = cookies.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


def sessions_of(scope: Scope) -> Sessions:
    """The session table the security middleware put in this request's scope."""
    table = scope.get(SESSIONS_SCOPE_KEY)
    if not isinstance(table, Sessions):
        raise LookupError("no session table: the app runs without SecurityMiddleware")
    return table


class HostPolicy:
    """Which `Host` headers are ours: loopback, IP literals, the configured host and
    `server.allowed_hosts`. DNS rebinding needs an attacker's *name* to resolve to our
    address; IP literals cannot be rebound, names can."""

    def __init__(self, bind_host: str, allowed: Iterable[str] = ()) -> None:
        names = {"localhost", *(_split_host(h) for h in allowed)}
        if bind_host and not _is_ip(bind_host) and bind_host not in ("0.0.0.0", "::"):
            names.add(bind_host.lower())
        self.names = frozenset(names)

    def allows(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        name = _split_host(host_header)
        return name in self.names or _is_ip(name) or name.endswith(".localhost")


class SecurityMiddleware:
    """An unknown Host gets 421. When a token is set, every path but the public ones
    needs `Authorization: Bearer <token>` or the cookie of a live session
    (`sessions.py`): pages redirect to the login page, the API answers 401 JSON. A
    state-changing request or WebSocket upgrade whose `Origin` is not this server gets
    403; requests without `Origin` (curl, scripts, the CLI) are judged by the token alone.

    It owns the session table and hands it to the auth routes in the ASGI scope
    (`SESSIONS_SCOPE_KEY`).
    """

    def __init__(
        self, app: ASGIApp, *, token: str | None, hosts: HostPolicy, sessions: Sessions | None = None
    ) -> None:
        self.app = app
        self.token = token
        self.hosts = hosts
        self.sessions = sessions if sessions is not None else Sessions()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope[SESSIONS_SCOPE_KEY] = self.sessions
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope["path"]
        host = headers.get("host")
        if not self.hosts.allows(host):
            await self._refuse(scope, receive, send, 421, "unknown Host header (DNS rebinding protection)")
            return
        origin = headers.get("origin")
        is_ws = scope["type"] == "websocket"
        if origin is not None and (is_ws or scope.get("method") in UNSAFE_METHODS):
            if not self._same_origin(origin, host or "", scope):
                await self._refuse(scope, receive, send, 403, "cross-origin request refused")
                return
        session: str | None = None
        if self.token and not self._public(path):
            allowed, session = self._authorised(headers)
            if not allowed:
                if not is_ws and scope.get("method") == "GET" and path in PAGES:
                    await self._redirect_to_login(scope, send)
                    return
                await self._refuse(scope, receive, send, 401, "token missing or wrong", auth=True)
                return
        if scope["type"] == "http":
            send = _with_headers(send, static=path.startswith("/static/"))
        if session is None:
            await self.app(scope, receive, send)
        else:
            await self._while_valid(session, self.app(scope, receive, send))

    async def _while_valid(self, session: str, call: Awaitable[None]) -> None:
        """Run a request made with a session for as long as that session is valid: a
        stream opened with it ends within `SESSION_RECHECK` seconds of a logout or of
        the session's expiry."""
        task = asyncio.ensure_future(call)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=SESSION_RECHECK)
                if done:
                    return task.result()
                if not self.sessions.valid(session):
                    log.info("session ended: closing a request made with it")
                    return
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    @staticmethod
    def _public(path: str) -> bool:
        return path in PUBLIC_PATHS or path.startswith("/static/")

    def _authorised(self, headers: dict[str, str]) -> tuple[bool, str | None]:
        """Whether the request may go on, and the session it was let in with (None for
        the token)."""
        assert self.token is not None
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            return bearer_matches(auth, self.token), None
        session_id = session_cookie(headers.get("cookie"))
        if session_id is not None and self.sessions.valid(session_id):
            return True, session_id
        return False, None

    @staticmethod
    def _same_origin(origin: str, host: str, scope: Scope) -> bool:
        parts = urlsplit(origin)
        if not parts.scheme or not parts.netloc:
            return False
        return parts.netloc.lower() == host.lower()

    async def _redirect_to_login(self, scope: Scope, send: Send) -> None:
        target = scope["path"] + (
            "?" + scope["query_string"].decode("latin-1") if scope["query_string"] else ""
        )
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [(b"location", b"/login.html?next=" + quote(target, safe="").encode())],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, detail: str, *, auth: bool = False
    ) -> None:
        body = orjson.dumps({"detail": detail})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if auth:
            headers.append((b"www-authenticate", b"Bearer"))
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            if "websocket.http.response" not in scope.get("extensions", {}):
                await send({"type": "websocket.close", "code": 1008, "reason": detail})  # the server says 403
                return
            # the upgrade refused with this status and body, as a request would be
            await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
