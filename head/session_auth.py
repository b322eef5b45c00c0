"""Turns a browser's cookies into a user id, the way NextAuth's `getToken` would.

JWT sessions (next-auth v4 and Auth.js v5) are decrypted locally; any other cookie value is
a database session token, looked up in the `sessions` collection that the NextAuth MongoDB
adapter writes. Every failure is an AuthError whose `message` is the spec's exact text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from core.db import Document
from core.errors import AuthenticationFailed, AuthenticationRequired
from core.settings import Secret
from head.nextauth import decode_session_token, is_jwe, session_cookie_of

# Database session tokens are UUIDs or random hex; anything far longer is not one of ours.
MAX_DATABASE_TOKEN_CHARS = 256


@dataclass(frozen=True)
class SessionIdentity:
    """Who a connection belongs to, and until when (epoch seconds, None if unknown).

    `database_session` is the `_id` of the `sessions` row of a database session (None for a
    JWT), so the row can be looked up again without keeping the token itself.
    """

    user_id: str
    expires_at: float | None
    database_session: ObjectId | str | None = None


class SessionAuthenticator:
    """Validates NextAuth sessions against one secret and one `sessions` collection."""

    def __init__(self, secret: Secret, sessions: AsyncCollection[Document]) -> None:
        self._secret = secret
        self._sessions = sessions

    async def authenticate(self, cookie_header: str) -> SessionIdentity:
        """Return the identity of a request's `Cookie:` header (REST and Socket.IO alike).

        Raises:
            AuthenticationRequired: no cookie, two copies of it, bad or expired token, no
                `sub`.
            AuthenticationFailed: the session store could not be read.
        """
        cookie = session_cookie_of(cookie_header)
        if cookie is None:
            raise AuthenticationRequired("no_cookie")
        if is_jwe(cookie.value):
            claims = decode_session_token(cookie, self._secret.reveal(), now=time.time())
            exp = claims.get("exp")
            return SessionIdentity(str(claims["sub"]), float(exp) if _is_number(exp) else None)
        return await self._database_session(cookie.value)

    async def _database_session(self, token: str) -> SessionIdentity:
        if not token or len(token) > MAX_DATABASE_TOKEN_CHARS:
            raise AuthenticationRequired("invalid_token")
        try:
            record = await self._sessions.find_one(
                {"sessionToken": token}, {"userId": 1, "expires": 1}
            )
        except PyMongoError as exc:
            raise AuthenticationFailed("session_store_unavailable") from exc
        if record is None or record.get("userId") is None:
            raise AuthenticationRequired("unknown_session")
        if not database_session_live(record, time.time()):
            raise AuthenticationRequired("expired")
        row_id = record.get("_id")
        return SessionIdentity(
            str(record["userId"]),
            database_session_expires_at(record),
            row_id if isinstance(row_id, ObjectId | str) else None,
        )


def database_session_expires_at(record: Document) -> float | None:
    """A `sessions` row's `expires` in epoch seconds; None when it has none."""
    expires = record.get("expires")
    return expires.timestamp() if isinstance(expires, datetime) else None


def database_session_live(record: Document | None, now: float) -> bool:
    """Whether a `sessions` row still signs its user in: it exists, names a user, and its
    `expires` (which the web app moves forward as the user is active) is not past."""
    if record is None or record.get("userId") is None:
        return False
    expires_at = database_session_expires_at(record)
    return expires_at is None or expires_at > now


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
