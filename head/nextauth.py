"""Decodes NextAuth (v4) and Auth.js (v5) JWT session cookies, byte-compatible with both.

Both libraries store the session as a compact JWE (`alg: dir`) whose key is derived from
NEXTAUTH_SECRET with HKDF-SHA256; they differ in the content encryption and the HKDF inputs:

    next-auth v4  next-auth.session-token  A256GCM        salt ""     info "NextAuth.js
                                                                      Generated Encryption Key"
    Auth.js v5    authjs.session-token     A256CBC-HS512  salt=name   info "Auth.js Generated
                                                                      Encryption Key (name)"

Cookies over ~4 KB are split by both libraries into `NAME.0`, `NAME.1`, ... chunks. Claim
checks mirror `jose`'s `jwtDecrypt` with the 15 s clock tolerance both libraries pass. All
functions are pure: the caller supplies cookies, the secret and the current time.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwcrypto.jwe import JWE
from jwcrypto.jwk import JWK

from core.errors import AuthenticationRequired

V5_COOKIE_NAMES = ("__Secure-authjs.session-token", "authjs.session-token")
V4_COOKIE_NAMES = ("__Secure-next-auth.session-token", "next-auth.session-token")
SESSION_COOKIE_NAMES: tuple[str, ...] = V5_COOKIE_NAMES + V4_COOKIE_NAMES
"""Session cookie names in preference order: the newest library, then the secure variant."""

CLOCK_LEEWAY_S = 15
"""Clock tolerance for `exp`/`nbf`; the value next-auth v4 and Auth.js v5 both use."""

MAX_TOKEN_CHARS = 32 * 1024
"""Longest token we try to decrypt: ~8 chunks of 4 KB, far above any real session."""

MAX_PLAINTEXT_BYTES = 64 * 1024
"""Decrypted claims larger than this are refused rather than parsed."""

V4_ENC = "A256GCM"
V5_ENC = "A256CBC-HS512"
_V4_INFO = b"NextAuth.js Generated Encryption Key"
_ALG = "dir"

_B64URL = "[A-Za-z0-9_-]"
# header . (empty for "dir") encrypted key . iv . ciphertext . tag
_COMPACT_JWE = re.compile(rf"{_B64URL}+\.{_B64URL}*\.{_B64URL}+\.{_B64URL}*\.{_B64URL}+")
_THUMBPRINT_HASHES: dict[int, hashes.HashAlgorithm] = {
    32: hashes.SHA256(),
    64: hashes.SHA512(),
}


@dataclass(frozen=True)
class SessionCookie:
    """A session cookie's value, chunks already joined; `name` has no chunk suffix.

    The name matters beyond lookup: it selects the key derivation and encryption.
    """

    name: str
    value: str


def parse_cookie_header(header: str) -> dict[str, str]:
    """Parse a `Cookie:` header the lenient way browsers' servers do; never raises.

    `http.cookies` stops at the first malformed pair, which would let one junk cookie from
    another app on the same domain hide the session cookie, so this splits by hand like the
    `cookie` npm package: first occurrence wins, surrounding quotes are dropped, and
    percent-escapes are decoded when they form valid UTF-8.
    """
    cookies: dict[str, str] = {}
    for name, value in _cookie_pairs(header):
        cookies.setdefault(name, value)
    return cookies


def session_cookie_of(header: str) -> SessionCookie | None:
    """The session cookie of a `Cookie:` header: the one parser REST and Socket.IO share.

    A header that names a session cookie, or a chunk of one, twice is refused: parsers
    disagree on which copy wins (Starlette takes the last, the `cookie` package the first),
    and a cookie set by a sibling subdomain can add a second copy the user never chose.

    Raises:
        AuthenticationRequired: `ambiguous_cookie`.
    """
    pairs = _cookie_pairs(header)
    names = [name for name, _ in pairs if _is_session_cookie_name(name)]
    if len(names) != len(set(names)):
        raise AuthenticationRequired("ambiguous_cookie")
    return read_session_cookie(parse_cookie_header(header))


def _cookie_pairs(header: str) -> list[tuple[str, str]]:
    """Every `name=value` pair of a header, in order, duplicates kept; junk pairs skipped."""
    pairs: list[tuple[str, str]] = []
    if not isinstance(header, str):
        return pairs
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if "%" in value:
            with contextlib.suppress(UnicodeDecodeError):  # keep it raw, as `cookie` does
                value = unquote(value, errors="strict")
        pairs.append((name, value))
    return pairs


def _is_session_cookie_name(name: str) -> bool:
    """A session cookie's name, whole (`NAME`) or a chunk of it (`NAME.0`, `NAME.1`, ...)."""
    base, dot, suffix = name.rpartition(".")
    return name in SESSION_COOKIE_NAMES or bool(
        dot and base in SESSION_COOKIE_NAMES and suffix.isascii() and suffix.isdigit()
    )


def read_session_cookie(cookies: Mapping[str, str]) -> SessionCookie | None:
    """Find the session cookie, whole or chunked, by the preference of SESSION_COOKIE_NAMES.

    Chunks must run `.0`, `.1`, ... without a gap; a gap means a chunk was lost (the
    browser dropped it or a proxy truncated the header), so that name counts as absent
    rather than yielding a truncated token. Empty values count as absent too (that is how
    a cleared cookie looks).
    """
    for name in SESSION_COOKIE_NAMES:
        whole = cookies.get(name)
        if whole:
            return SessionCookie(name, whole)
        joined = _join_chunks(cookies, name)
        if joined:
            return SessionCookie(name, joined)
    return None


def _join_chunks(cookies: Mapping[str, str], name: str) -> str | None:
    prefix = f"{name}."
    chunks: dict[int, str] = {}
    for key, value in cookies.items():
        if not key.startswith(prefix):
            continue
        suffix = key[len(prefix) :]
        # Canonical decimal only, so "NAME.01" cannot shadow "NAME.1".
        if suffix.isascii() and suffix.isdigit() and str(int(suffix)) == suffix:
            chunks[int(suffix)] = value
    if not chunks or sorted(chunks) != list(range(len(chunks))):
        return None
    return "".join(chunks[index] for index in range(len(chunks)))


def is_jwe(value: str) -> bool:
    """Tell a JWT session (compact JWE, five base64url segments) from a database token.

    The `database` session strategy stores an opaque random token in the same cookie.
    """
    return isinstance(value, str) and _COMPACT_JWE.fullmatch(value) is not None


def derive_key(secret: str, cookie_name: str) -> tuple[str, bytes]:
    """Return `(enc, key)` for a cookie name, derived from the secret exactly as the JS does.

    Auth.js salts with the cookie name, so `__Secure-` and plain cookies have different keys.

    Raises:
        ValueError: an empty secret (tokens would be forgeable) or an unknown cookie name.
    """
    if not secret:
        raise ValueError("the NextAuth secret must not be empty")
    if cookie_name in V4_COOKIE_NAMES:
        enc, salt, info, length = V4_ENC, b"", _V4_INFO, 32
    elif cookie_name in V5_COOKIE_NAMES:
        salt = cookie_name.encode()
        enc, info, length = V5_ENC, b"Auth.js Generated Encryption Key (" + salt + b")", 64
    else:
        raise ValueError(f"not a NextAuth session cookie name: {cookie_name!r}")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info)
    return enc, hkdf.derive(secret.encode("utf-8"))


def _jwk(key: bytes) -> JWK:
    return JWK(kty="oct", k=base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii"))


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _json_object(data: bytes) -> dict[str, Any] | None:
    """Strict JSON (no NaN/Infinity, which JS cannot emit) that must be an object."""
    try:
        parsed = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """A NumericDate claim as a number; None if absent. Like jose, refuse non-numbers."""
    value = claims.get(name)
    if value is None and name not in claims:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AuthenticationRequired("invalid_claims")
    return float(value)


def decode_session_token(cookie: SessionCookie, secret: str, *, now: float) -> dict[str, Any]:
    """Decrypt and validate a session token; return its claims.

    The header must carry exactly the algorithms that belong to the cookie's name, so a
    token cannot be replayed under another library's cookie. Expiry follows `jose`:
    rejected once `exp <= now - CLOCK_LEEWAY_S` (with `now` in whole seconds), and a token
    without `exp` is refused, since neither library ever issues one.

    Raises:
        AuthenticationRequired: with a reason such as `invalid_token`, `wrong_algorithm`,
            `expired`, `not_yet_valid`, `invalid_claims` or `missing_sub`; the reason
            never contains token material or the secret.
        ValueError: an empty secret or a cookie name that is not a session cookie.
    """
    enc, key = derive_key(secret, cookie.name)
    token = cookie.value
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not is_jwe(token):
        raise AuthenticationRequired("invalid_token")

    header_segment, encrypted_key, _, _, _ = token.split(".")
    try:
        header = _json_object(_b64url_decode(header_segment))
    except (binascii.Error, ValueError):
        header = None
    if header is None or encrypted_key:
        raise AuthenticationRequired("invalid_token")
    if header.get("alg") != _ALG or header.get("enc") != enc:
        raise AuthenticationRequired("wrong_algorithm")
    if "zip" in header or "crit" in header:
        raise AuthenticationRequired("invalid_token")

    jwe = JWE(algs=[_ALG, enc])
    try:
        jwe.deserialize(token)
        jwe.decrypt(_jwk(key), max_plaintext=MAX_PLAINTEXT_BYTES)
        plaintext = jwe.payload
    except Exception:
        # `from None`: jwcrypto's messages may quote the token.
        raise AuthenticationRequired("invalid_token") from None
    claims = _json_object(plaintext)
    if claims is None:
        raise AuthenticationRequired("invalid_token")

    now_s = math.floor(now)
    _numeric_date(claims, "iat")
    exp = _numeric_date(claims, "exp")
    nbf = _numeric_date(claims, "nbf")
    if exp is None:
        raise AuthenticationRequired("missing_exp")
    if exp <= now_s - CLOCK_LEEWAY_S:
        raise AuthenticationRequired("expired")
    if nbf is not None and nbf > now_s + CLOCK_LEEWAY_S:
        raise AuthenticationRequired("not_yet_valid")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise AuthenticationRequired("missing_sub")
    return claims


def encode_session_token(
    claims: Mapping[str, Any], secret: str, *, cookie_name: str = "next-auth.session-token"
) -> str:
    """Encrypt claims into the token next-auth v4 / Auth.js v5 would set under `cookie_name`.

    Used by the demo and the tests to stand in for the web app. Claims are encrypted as
    given: unlike the JS `encode`, this does not add `iat`/`exp`/`jti`, so callers choose
    them. For Auth.js names the header carries `kid`, the key's RFC 7638 thumbprint (SHA-512
    for its 64-byte key), because Auth.js's `decode` refuses a `kid` that does not match.
    """
    enc, key = derive_key(secret, cookie_name)
    jwk = _jwk(key)
    header: dict[str, str] = {"alg": _ALG, "enc": enc}
    if cookie_name in V5_COOKIE_NAMES:
        header["kid"] = jwk.thumbprint(_THUMBPRINT_HASHES[len(key)])
    payload = json.dumps(dict(claims), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    jwe = JWE(payload.encode("utf-8"), protected=json.dumps(header, separators=(",", ":")))
    jwe.add_recipient(jwk)
    return jwe.serialize(compact=True)
