"""FastAPI dependencies: the head's state, the signed-in user, bearer checks."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from core.errors import AuthError
from core.settings import Secret
from head.session_auth import SessionIdentity
from head.state import HeadState


async def get_state(request: Request) -> HeadState:
    """The head's state. A coroutine, as every dependency here: FastAPI runs a plain
    function dependency in its thread pool, a thread hop on every request."""
    state: HeadState = request.app.state.head
    return state


State = Annotated[HeadState, Depends(get_state)]


async def get_identity(request: Request, state: State) -> SessionIdentity:
    """The session of the request's NextAuth cookie; 401 with the spec's message otherwise."""
    # The header as python-engineio hands it to the socket's connect handler (several
    # `Cookie` lines joined by a comma), so a browser has one identity on both paths.
    cookie_header = ",".join(request.headers.getlist("cookie"))
    try:
        return await state.authenticator.authenticate(cookie_header)
    except AuthError as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, exc.message) from None


Identity = Annotated[SessionIdentity, Depends(get_identity)]


def check_bearer(request: Request, expected: Secret | None) -> None:
    """Constant-time bearer check: 401 without a token, 403 with a wrong one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Bearer token required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if expected is None or not hmac.compare_digest(token.encode(), expected.reveal().encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Invalid token")
