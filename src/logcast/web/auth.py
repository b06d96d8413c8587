"""Dashboard sessions: login with the token, logout, and what the page may do.

The API itself takes `Authorization: Bearer <token>`; the dashboard logs in once and
then carries a session cookie (see `security.py`).
"""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel

from logcast.web.runtime import Runtime
from logcast.web.security import COOKIE, session_value

router = APIRouter()


def _runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


class Login(BaseModel):
    token: str


@router.get("/api/session", tags=["auth"])
async def session(request: Request) -> dict[str, bool]:
    token = _runtime(request).settings.server.token
    if not token:
        return {"auth_required": False, "authenticated": True}
    cookie = request.cookies.get(COOKIE, "")
    return {
        "auth_required": True,
        "authenticated": hmac.compare_digest(cookie.encode(), session_value(token).encode()),
    }


@router.post("/api/login", tags=["auth"], status_code=204)
async def login(body: Login, request: Request) -> Response:
    token = _runtime(request).settings.server.token
    if not token:
        return Response(status_code=204)
    if not hmac.compare_digest(body.token.encode(), token.encode()):
        await asyncio.sleep(0.2)  # blunt guessing a little
        raise HTTPException(401, "wrong token")
    response = Response(status_code=204)
    response.set_cookie(COOKIE, session_value(token), httponly=True, samesite="strict", path="/")
    return response


@router.post("/api/logout", tags=["auth"], status_code=204)
async def logout() -> Response:
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/")
    return response
