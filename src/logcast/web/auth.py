"""Dashboard login and logout: the token buys a session cookie, so the page never keeps
the token (the API itself takes `Authorization: Bearer <token>`).
"""

from __future__ import annotations

import asyncio
import hmac
import math

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel

from logcast.engine import Engine
from logcast.web.security import COOKIE, bearer_matches, session_cookie, sessions_of

router = APIRouter()


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


class Login(BaseModel):
    token: str


@router.get("/api/session", tags=["auth"])
async def session(request: Request) -> dict[str, bool]:
    token = _engine(request).settings.server.token
    if not token:
        return {"auth_required": False, "authenticated": True}
    session_id = session_cookie(request.headers.get("cookie"))
    authenticated = bearer_matches(request.headers.get("authorization", ""), token) or (
        session_id is not None and sessions_of(request.scope).valid(session_id)
    )
    return {"auth_required": True, "authenticated": authenticated}


@router.post("/api/login", tags=["auth"], status_code=204)
async def login(body: Login, request: Request) -> Response:
    server = _engine(request).settings.server
    if not server.token:
        return Response(status_code=204)
    # a lone surrogate (JSON may carry one) cannot be UTF-8: kept as is, it matches nothing
    if not hmac.compare_digest(body.token.encode("utf-8", "surrogatepass"), server.token.encode()):
        await asyncio.sleep(0.2)  # blunt guessing a little
        raise HTTPException(401, "wrong token")
    sessions = sessions_of(request.scope)
    # End the session the request still carried: an id planted before the login is worth
    # nothing after it.
    previous = session_cookie(request.headers.get("cookie"))
    if previous is not None:
        sessions.end(previous)
    response = Response(status_code=204)
    response.set_cookie(
        COOKIE,
        sessions.create(server.session_ttl),
        max_age=max(1, math.ceil(server.session_ttl)),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/api/logout", tags=["auth"], status_code=204)
async def logout(request: Request) -> Response:
    """End the session on the server too, so that a copy of the cookie stops working."""
    session_id = session_cookie(request.headers.get("cookie"))
    if session_id is not None:
        sessions_of(request.scope).end(session_id)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
