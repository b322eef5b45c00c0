"""head.nextauth against tokens minted by the real next-auth v4 and @auth/core packages.

The npm packages live in tests/node (exact versions in its package-lock.json); the Node
helper mints tokens with their `encode`, and decodes with their `decode` to check that the
tokens our own encoder makes are accepted by the real libraries too.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jwcrypto.jwe import JWE

from core.errors import AuthenticationRequired
from head.nextauth import (
    CLOCK_LEEWAY_S,
    MAX_TOKEN_CHARS,
    SESSION_COOKIE_NAMES,
    SessionCookie,
    decode_session_token,
    derive_key,
    encode_session_token,
    is_jwe,
    parse_cookie_header,
    read_session_cookie,
    session_cookie_of,
)

NODE_DIR = Path(__file__).parent / "node"
MINT_SCRIPT = NODE_DIR / "mint_token.mjs"
NODE_PACKAGES = ("next-auth", "@auth/core", "socket.io-client")
SECRET = "test-secret-Zq8v-not-a-real-one-4c1f"
OTHER_SECRET = "another-secret-entirely-9d2e"

V4 = "next-auth.session-token"
V4_SECURE = "__Secure-next-auth.session-token"
V5 = "authjs.session-token"
V5_SECURE = "__Secure-authjs.session-token"
V4_NAMES = (V4, V4_SECURE)
V5_NAMES = (V5, V5_SECURE)

# A fixed clock for tokens from our encoder, so boundaries are exact.
NOW = 1_800_000_000.0

Mint = Callable[..., str]


def _flavor(cookie_name: str) -> str:
    return "v5" if cookie_name in V5_NAMES else "v4"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """tests/node with its locked packages installed (`npm ci` only when missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node.js and npm are required: the tokens come from the real npm packages")
    modules = NODE_DIR / "node_modules"
    if not all((modules / name / "package.json").is_file() for name in NODE_PACKAGES):
        subprocess.run(
            [npm, "ci", "--legacy-peer-deps", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            check=True,
            timeout=600,
        )
    return modules


def _node(request: dict[str, Any]) -> str:
    result = subprocess.run(
        ["node", str(MINT_SCRIPT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def mint(node_modules: Path) -> Mint:
    """Mint a token with the real library for a cookie name (v5 salts with that name).

    Identical requests share one token for the session (each `node` start is a process start);
    the only time-sensitive one, `max_age=-10`, is requested once.
    """
    minted: dict[str, str] = {}

    def mint(
        cookie_name: str,
        claims: dict[str, Any],
        *,
        max_age: int = 3600,
        secret: str = SECRET,
    ) -> str:
        flavor = _flavor(cookie_name)
        request: dict[str, Any] = {
            "flavor": flavor,
            "secret": secret,
            "claims": claims,
            "maxAge": max_age,
        }
        if flavor == "v5":
            request["salt"] = cookie_name
        key = json.dumps(request, sort_keys=True)
        if key not in minted:
            minted[key] = _node(request)
            assert is_jwe(minted[key]), minted[key]
        return minted[key]

    return mint


@pytest.fixture(scope="session")
def js_decode(node_modules: Path) -> Callable[[str, str], dict[str, Any]]:
    """Decode with the real library's `decode`, as the web app would."""

    def js_decode(cookie_name: str, token: str) -> dict[str, Any]:
        flavor = _flavor(cookie_name)
        request: dict[str, Any] = {
            "op": "decode",
            "flavor": flavor,
            "secret": SECRET,
            "token": token,
        }
        if flavor == "v5":
            request["salt"] = cookie_name
        return json.loads(_node(request))

    return js_decode


def header_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def ours(cookie_name: str, **claims: Any) -> str:
    """A token from our encoder; defaults to a live session for `alice`."""
    full: dict[str, Any] = {"sub": "alice", "iat": NOW, "exp": NOW + 3600, "jti": "j-1"}
    full.update(claims)
    full = {k: v for k, v in full.items() if v is not ...}
    return encode_session_token(full, SECRET, cookie_name=cookie_name)


def rejected(cookie_name: str, token: str, *, secret: str = SECRET, now: float = NOW) -> str:
    """Assert the token is refused; return the reason, checked to leak nothing."""
    with pytest.raises(AuthenticationRequired) as info:
        decode_session_token(SessionCookie(cookie_name, token), secret, now=now)
    rendered = "".join(traceback.format_exception(info.value))
    for material in (token, secret, *token.split(".")):
        if len(material) < 8:  # too short to tell a leak from coincidence
            continue
        assert material not in rendered
        assert material not in info.value.reason
    return info.value.reason


def tamper(token: str, segment: int) -> str:
    """Change one character in the middle of a segment to a different base64url char."""
    parts = token.split(".")
    text = parts[segment]
    middle = len(text) // 2
    replacement = "A" if text[middle] != "A" else "B"
    parts[segment] = text[:middle] + replacement + text[middle + 1 :]
    return ".".join(parts)


# --- tokens from the real libraries ------------------------------------------------------


@pytest.mark.parametrize("cookie_name", V4_NAMES)
def test_next_auth_v4_token_decodes(mint: Mint, cookie_name: str) -> None:
    token = mint(V4, {"sub": "user-42", "name": "Ada", "email": "ada@example.test"})
    assert header_of(token) == {"alg": "dir", "enc": "A256GCM"}

    now = time.time()
    claims = decode_session_token(SessionCookie(cookie_name, token), SECRET, now=now)

    assert claims["sub"] == "user-42"
    assert claims["name"] == "Ada"
    assert claims["exp"] == claims["iat"] + 3600
    assert abs(claims["iat"] - now) < 60
    assert claims["jti"]


@pytest.mark.parametrize("cookie_name", V5_NAMES)
def test_auth_core_v5_token_decodes(mint: Mint, cookie_name: str) -> None:
    token = mint(cookie_name, {"sub": "user-7", "picture": None})
    header = header_of(token)
    assert (header["alg"], header["enc"]) == ("dir", "A256CBC-HS512")
    assert header["kid"]

    claims = decode_session_token(SessionCookie(cookie_name, token), SECRET, now=time.time())

    assert claims["sub"] == "user-7"
    assert claims["picture"] is None
    assert claims["exp"] == claims["iat"] + 3600


def test_v5_key_is_bound_to_the_cookie_name(mint: Mint) -> None:
    """Auth.js salts with the cookie name: a `__Secure-` token is not valid without it."""
    token = mint(V5_SECURE, {"sub": "user-7"})
    assert rejected(V5, token, now=time.time()) == "invalid_token"


@pytest.mark.parametrize("cookie_name", SESSION_COOKIE_NAMES)
def test_our_encoder_round_trips(cookie_name: str) -> None:
    token = ours(cookie_name, name="Ada", roles=["admin"])
    claims = decode_session_token(SessionCookie(cookie_name, token), SECRET, now=NOW)
    assert claims == {
        "sub": "alice",
        "iat": NOW,
        "exp": NOW + 3600,
        "jti": "j-1",
        "name": "Ada",
        "roles": ["admin"],
    }


@pytest.mark.parametrize("cookie_name", SESSION_COOKIE_NAMES)
def test_our_header_matches_the_real_library(mint: Mint, cookie_name: str) -> None:
    """Same alg/enc and, for Auth.js, the same `kid` (a thumbprint of the derived key)."""
    assert header_of(ours(cookie_name)) == header_of(mint(cookie_name, {"sub": "x"}))


@pytest.mark.parametrize("cookie_name", SESSION_COOKIE_NAMES)
def test_real_library_accepts_our_tokens(js_decode: Callable[..., Any], cookie_name: str) -> None:
    now = int(time.time())
    token = encode_session_token(
        {"sub": "alice", "iat": now, "exp": now + 600, "jti": "j-2"},
        SECRET,
        cookie_name=cookie_name,
    )
    assert js_decode(cookie_name, token) == {
        "sub": "alice",
        "iat": now,
        "exp": now + 600,
        "jti": "j-2",
    }


@pytest.mark.parametrize("cookie_name", SESSION_COOKIE_NAMES)
def test_npm_and_our_tokens_get_the_same_verdicts(mint: Mint, cookie_name: str) -> None:
    now = time.time()
    live = {"sub": "bob"}
    for token in (mint(cookie_name, live), ours(cookie_name, sub="bob", exp=now + 3600)):
        cookie = SessionCookie(cookie_name, token)
        assert decode_session_token(cookie, SECRET, now=now)["sub"] == "bob"
        assert rejected(cookie_name, token, secret=OTHER_SECRET, now=now) == "invalid_token"
        assert rejected(cookie_name, tamper(token, 3), now=now) == "invalid_token"
    for token in (mint(cookie_name, live, max_age=-60), ours(cookie_name, exp=now - 60)):
        assert rejected(cookie_name, token, now=now) == "expired"
    for token in (mint(cookie_name, {}), ours(cookie_name, sub=..., exp=now + 60)):
        assert rejected(cookie_name, token, now=now) == "missing_sub"


# --- failures ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "0b6a3c1e-2f4d-4c5b-9a8e-7d6c5b4a3f2e",
        "a.b.c.d.e",
        "....",
        "e30..aaaa.bbbb.cccc",  # header is `{}`
        "bm90IGpzb24..aaaa.bbbb.cccc",  # header is not JSON
        "W10..aaaa.bbbb.cccc",  # header is a JSON array
        "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..!!!!.bbbb.cccc",
        "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..aaaa.bbbb.cccc",
        "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0.a2V5.aaaa.bbbb.cccc",  # dir has no key
    ],
)
def test_garbage_is_refused(value: str) -> None:
    assert rejected(V4, value) in {"invalid_token", "wrong_algorithm"}


def test_wrong_secret_is_refused(mint: Mint) -> None:
    for name in (V4, V5):
        token = mint(name, {"sub": "user-1"})
        assert rejected(name, token, secret=OTHER_SECRET, now=time.time()) == "invalid_token"


@pytest.mark.parametrize("segment", [0, 2, 3, 4], ids=["header", "iv", "ciphertext", "tag"])
@pytest.mark.parametrize("cookie_name", [V4, V5])
def test_tampered_token_is_refused(mint: Mint, cookie_name: str, segment: int) -> None:
    token = mint(cookie_name, {"sub": "user-1"})
    now = time.time()
    assert decode_session_token(SessionCookie(cookie_name, token), SECRET, now=now)
    # A flipped header byte may corrupt `enc` itself, which is refused before decryption.
    allowed = {"invalid_token", "wrong_algorithm"} if segment == 0 else {"invalid_token"}
    assert rejected(cookie_name, tamper(token, segment), now=now) in allowed


def test_header_cannot_be_swapped(mint: Mint) -> None:
    """The protected header is authenticated: rewriting it (same alg/enc) breaks the tag."""
    token = mint(V4, {"sub": "user-1"})
    header = base64.urlsafe_b64encode(b'{"enc":"A256GCM","alg":"dir"}').rstrip(b"=").decode()
    assert rejected(V4, ".".join([header, *token.split(".")[1:]]), now=time.time()) == (
        "invalid_token"
    )


def test_expired_npm_token_is_refused(mint: Mint) -> None:
    token = mint(V5, {"sub": "user-1"}, max_age=-(CLOCK_LEEWAY_S + 30))
    assert rejected(V5, token, now=time.time()) == "expired"


def test_npm_token_expired_within_leeway_is_accepted(mint: Mint) -> None:
    token = mint(V4, {"sub": "user-1"}, max_age=-10)
    now = time.time()
    claims = decode_session_token(SessionCookie(V4, token), SECRET, now=now)
    assert claims["exp"] < now


@pytest.mark.parametrize(
    ("exp", "accepted"),
    [
        (NOW - 10, True),
        (NOW - CLOCK_LEEWAY_S + 1, True),
        (NOW - CLOCK_LEEWAY_S + 0.5, True),  # jose compares against whole seconds
        (NOW - CLOCK_LEEWAY_S, False),  # jose: exp <= now - tolerance is expired
        (NOW - CLOCK_LEEWAY_S - 1, False),
        (NOW - 3600, False),
    ],
)
@pytest.mark.parametrize("cookie_name", [V4, V5])
def test_expiry_leeway(cookie_name: str, exp: float, accepted: bool) -> None:
    token = ours(cookie_name, exp=exp)
    if accepted:
        decode_session_token(SessionCookie(cookie_name, token), SECRET, now=NOW + 0.9)
    else:
        assert rejected(cookie_name, token, now=NOW + 0.9) == "expired"


@pytest.mark.parametrize(
    ("nbf", "accepted"),
    [(NOW, True), (NOW + CLOCK_LEEWAY_S, True), (NOW + CLOCK_LEEWAY_S + 1, False)],
)
def test_not_before_leeway(nbf: float, accepted: bool) -> None:
    token = ours(V5, nbf=nbf)
    if accepted:
        assert decode_session_token(SessionCookie(V5, token), SECRET, now=NOW)["nbf"] == nbf
    else:
        assert rejected(V5, token) == "not_yet_valid"


@pytest.mark.parametrize("sub", [..., "", None, 42, ["alice"], {"id": "alice"}])
def test_sub_must_be_a_non_empty_string(sub: Any) -> None:
    assert rejected(V4, ours(V4, sub=sub)) == "missing_sub"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": ...}, "missing_exp"),
        ({"exp": "1900000000"}, "invalid_claims"),
        ({"exp": True}, "invalid_claims"),
        ({"exp": None}, "invalid_claims"),
        ({"nbf": "0"}, "invalid_claims"),
        ({"iat": [1]}, "invalid_claims"),
    ],
)
def test_malformed_time_claims_are_refused(claims: dict[str, Any], reason: str) -> None:
    assert rejected(V5, ours(V5, **claims)) == reason


def test_claims_must_be_a_json_object() -> None:
    token = encode_session_token({"sub": "x"}, SECRET, cookie_name=V4)
    _, key = derive_key(SECRET, V4)
    jwe = JWE(b'["not", "an", "object"]', protected=header_of(token))
    jwe.add_recipient(_oct_jwk(key))
    assert rejected(V4, jwe.serialize(compact=True)) == "invalid_token"


def test_compressed_token_is_refused() -> None:
    """`zip: DEF` is never produced by NextAuth and would let a small token inflate hugely."""
    _, key = derive_key(SECRET, V4)
    plaintext = json.dumps({"sub": "alice", "exp": NOW + 60}).encode()
    jwe = JWE(plaintext, protected={"alg": "dir", "enc": "A256GCM", "zip": "DEF"})
    jwe.add_recipient(_oct_jwk(key))
    assert rejected(V4, jwe.serialize(compact=True)) == "invalid_token"


def _oct_jwk(key: bytes) -> Any:
    from jwcrypto.jwk import JWK

    return JWK(kty="oct", k=base64.urlsafe_b64encode(key).rstrip(b"=").decode())


def test_v5_token_under_a_v4_name_is_refused(mint: Mint) -> None:
    token = mint(V5, {"sub": "user-1"})
    for name in V4_NAMES:
        assert rejected(name, token, now=time.time()) == "wrong_algorithm"


def test_v4_token_under_a_v5_name_is_refused(mint: Mint) -> None:
    token = mint(V4, {"sub": "user-1"})
    for name in V5_NAMES:
        assert rejected(name, token, now=time.time()) == "wrong_algorithm"


@pytest.mark.parametrize(
    "value",
    [
        "x" * 65536,
        ".".join(["A" * 13107] * 5),  # JWE-shaped, 64 KB
        # JWE-shaped with a valid header, just under the size cap: reaches decryption.
        "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..AAAAAAAAAAAAAAAA."
        + "A" * (MAX_TOKEN_CHARS - 100)
        + ".AAAAAAAAAAAAAAAAAAAAAA",
    ],
    ids=["junk", "jwe-shaped", "under-cap"],
)
def test_huge_cookie_is_refused_quickly(value: str) -> None:
    header = f"theme=dark; {V4}={value}; other=1"
    started = time.perf_counter()
    cookie = read_session_cookie(parse_cookie_header(header))
    assert cookie == SessionCookie(V4, value)
    assert rejected(cookie.name, cookie.value) == "invalid_token"
    assert time.perf_counter() - started < 0.5


def test_size_cap_applies_to_authentic_tokens_too() -> None:
    """Anything longer than MAX_TOKEN_CHARS is refused unread (Node's default header
    limit is 16 KB, so no real session cookie is that long)."""
    small = ours(V5, blob="")
    padding = "p" * ((MAX_TOKEN_CHARS - len(small)) * 3 // 4 - 64)
    under = ours(V5, blob=padding)
    assert MAX_TOKEN_CHARS - 200 < len(under) <= MAX_TOKEN_CHARS
    assert decode_session_token(SessionCookie(V5, under), SECRET, now=NOW)["blob"] == padding
    over = ours(V5, blob=padding + "p" * 200)
    assert len(over) > MAX_TOKEN_CHARS
    assert rejected(V5, over) == "invalid_token"


def test_dir_token_with_an_encrypted_key_is_refused() -> None:
    """With `alg: dir` the key segment must be empty, as jose insists."""
    parts = ours(V4).split(".")
    parts[1] = base64.urlsafe_b64encode(b"k" * 32).rstrip(b"=").decode()
    assert rejected(V4, ".".join(parts)) == "invalid_token"


def test_secret_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match="secret"):
        derive_key("", V4)
    with pytest.raises(ValueError, match="secret"):
        encode_session_token({"sub": "x"}, "", cookie_name=V5)


def test_unknown_cookie_name_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="cookie name"):
        derive_key(SECRET, "session")


def test_derived_keys() -> None:
    assert derive_key(SECRET, V4) == derive_key(SECRET, V4_SECURE)
    enc4, key4 = derive_key(SECRET, V4)
    enc5, key5 = derive_key(SECRET, V5)
    assert (enc4, len(key4)) == ("A256GCM", 32)
    assert (enc5, len(key5)) == ("A256CBC-HS512", 64)
    assert derive_key(SECRET, V5_SECURE)[1] != key5
    assert derive_key(OTHER_SECRET, V4)[1] != key4


# --- cookies -----------------------------------------------------------------------------


def test_chunks_join_in_numeric_order(mint: Mint) -> None:
    token = mint(V5_SECURE, {"sub": "user-9", "blob": "z" * 3000})
    size = len(token) // 3 + 1
    chunks = [token[i : i + size] for i in range(0, len(token), size)]
    assert len(chunks) == 3
    cookies = {
        "theme": "dark",
        f"{V5_SECURE}.2": chunks[2],
        f"{V5_SECURE}.0": chunks[0],
        "csrf": "abc",
        f"{V5_SECURE}.1": chunks[1],
    }

    cookie = read_session_cookie(cookies)

    assert cookie == SessionCookie(V5_SECURE, token)
    claims = decode_session_token(cookie, SECRET, now=time.time())
    assert claims["sub"] == "user-9"


def test_ten_chunks_sort_numerically_not_lexically() -> None:
    parts = [f"p{i}-" for i in range(11)]
    cookies = {f"{V4}.{i}": part for i, part in reversed(list(enumerate(parts)))}
    assert read_session_cookie(cookies) == SessionCookie(V4, "".join(parts))


@pytest.mark.parametrize(
    "suffixes",
    [("0", "2"), ("1", "2"), ("0", "1", "3"), ("00", "1"), ("x0",), ("1",)],
)
def test_chunks_with_a_gap_are_absent(suffixes: tuple[str, ...]) -> None:
    cookies = {f"{V4}.{s}": f"chunk{s}" for s in suffixes}
    cookies["unrelated"] = "1"
    assert read_session_cookie(cookies) is None


def test_gap_falls_back_to_the_next_name() -> None:
    cookies = {f"{V5}.0": "a", f"{V5}.2": "c", V4: "whole"}
    assert read_session_cookie(cookies) == SessionCookie(V4, "whole")


def test_preference_order() -> None:
    order = (V5_SECURE, V5, V4_SECURE, V4)
    assert order == SESSION_COOKIE_NAMES
    cookies = {name: f"value-of-{name}" for name in reversed(order)}
    for expected in order:
        assert read_session_cookie(cookies) == SessionCookie(expected, f"value-of-{expected}")
        del cookies[expected]
    assert read_session_cookie(cookies) is None


def test_whole_cookie_wins_over_chunks_and_empty_is_absent() -> None:
    assert read_session_cookie({V4: "whole", f"{V4}.0": "chunk"}) == SessionCookie(V4, "whole")
    assert read_session_cookie({V4: "", f"{V4}.0": "chunk"}) == SessionCookie(V4, "chunk")
    assert read_session_cookie({V4: ""}) is None


def test_unrelated_cookies_are_ignored() -> None:
    cookies = {
        "session-token": "x",
        "next-auth.csrf-token": "y",
        "next-auth.session-token-old": "z",
        "authjs.session-token.extra": "w",
        f"x{V4}": "v",
    }
    assert read_session_cookie(cookies) is None


def test_parse_cookie_header() -> None:
    header = (
        ' theme = dark ;junk; =nameless; a=b=c; quoted="q v"; pct=a%20b; bad=%E0%A4%A;'
        f" {V4}=tok.en; theme=light; empty="
    )
    assert parse_cookie_header(header) == {
        "theme": "dark",
        "a": "b=c",
        "quoted": "q v",
        "pct": "a b",
        "bad": "%E0%A4%A",
        V4: "tok.en",
        "empty": "",
    }


@pytest.mark.parametrize(
    "header",
    ["", ";;;", "=", "==;=", '"', "\x00\xff\ud800", "a=%ff%fe", 'a="', "🍪=🍪", "x" * 100_000],
)
def test_parse_cookie_header_tolerates_junk(header: str) -> None:
    assert isinstance(parse_cookie_header(header), dict)


@settings(database=None)  # leave no .hypothesis/ folder behind
@given(st.text())
def test_parse_cookie_header_never_raises(header: str) -> None:
    parsed = parse_cookie_header(header)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.items())


def test_junk_before_the_session_cookie_does_not_hide_it() -> None:
    """http.cookies would stop at the malformed pair; the session must still be found."""
    header = f'bad"cookie=1; x=[y]; {V4}=the-token'
    assert read_session_cookie(parse_cookie_header(header)) == SessionCookie(V4, "the-token")


@pytest.mark.parametrize(
    "header",
    [
        f"{V4}=first; {V4}=second",
        f"{V4}=same; x=1; {V4}=same",
        f"{V4}=; {V4}=token",
        f"{V5_SECURE}.0=a; {V5_SECURE}.1=b; {V5_SECURE}.0=c",
        f"{V4}=whole; {V4}.1=a; {V4}.1=b",
    ],
)
def test_a_session_cookie_given_twice_is_refused(header: str) -> None:
    with pytest.raises(AuthenticationRequired) as refused:
        session_cookie_of(header)
    assert refused.value.reason == "ambiguous_cookie"


def test_other_cookies_given_twice_do_not_matter() -> None:
    header = f"theme=dark; theme=light; {V4}.x=1; {V4}.x=2; {V4}=the-token"
    assert session_cookie_of(header) == SessionCookie(V4, "the-token")
    assert session_cookie_of(f"{V4}.0=a; {V4}.1=b") == SessionCookie(V4, "ab")


def test_is_jwe(mint: Mint) -> None:
    assert is_jwe(mint(V4, {"sub": "a"}))
    assert is_jwe(ours(V5))
    for value in (
        "",
        "0b6a3c1e-2f4d-4c5b-9a8e-7d6c5b4a3f2e",
        "a.b.c.d",
        "a.b.c.d.e.f",
        "a.b.c.d.e=",
        "a+b..c.d.e",
        ".b.c.d.e",
        "a b..c.d.e",
    ):
        assert not is_jwe(value), value
