"""One typed settings object, read once from an environment mapping the caller passes in.

Nothing reads `os.environ` at import time: the CLI and the head's app factory call
`load_settings(os.environ)` once, tests pass a plain dict, and the driver hands the
resulting object to Ray actors as a constructor argument.

Each setting is declared once, as a field of `Settings`: its type and default, and in the
field's metadata the environment variable it is read from and the parser that checks it
(`_env`). `load_settings` walks those fields, so a new setting is one field. A table on
the dataclass rather than pydantic-settings: that would be one more dependency for a few
dozen variables; its errors are multi-line validation reports where an operator wants one
line naming the variable; and its `BaseSettings()` reads `os.environ` when built without
arguments, where here every caller passes its environment in and tests and benchmarks build
`Settings(...)` from plain values. A frozen dataclass also pickles to Ray actors as it is.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

from core.errors import SettingsError

# The embed actors' arithmetic (`core.embedding.resolve_precision`); "auto" first: the default.
EMBED_PRECISIONS = ("auto", "float32", "bfloat16")

# A parser takes the variable's name and its value (stripped, never empty) and returns the
# setting, or raises SettingsError naming the variable.
Parser = Callable[[str, str], Any]
_ENV = "env"
_PARSE = "parse"


class Secret:
    """A string whose repr and str hide it, so it cannot leak through logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (Secret, (self._value,))


# -- parsers ---------------------------------------------------------------------------------


def _text(name: str, raw: str) -> str:
    return raw


def _secret(name: str, raw: str) -> Secret:
    return Secret(raw)


def _path(name: str, raw: str) -> Path:
    return Path(raw).expanduser()


def _integer(minimum: int = 1) -> Parser:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}, got {value}")
        return value

    return parse


def _choice(choices: tuple[str, ...]) -> Parser:
    def parse(name: str, raw: str) -> str:
        if raw not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return raw

    return parse


def _flag(name: str, raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be 1 or 0, got {raw!r}")


def _http_url(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"{name} must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


def _mongodb_uri(name: str, raw: str) -> Secret:
    if not raw.startswith(("mongodb://", "mongodb+srv://")):
        raise SettingsError(f"{name} must start with mongodb:// or mongodb+srv://")
    return Secret(raw)


def _redis_url(name: str, raw: str) -> Secret:
    if urlsplit(raw).scheme not in ("redis", "rediss"):
        raise SettingsError(f"{name} must be a redis:// or rediss:// URL")
    return Secret(raw)


def _env(name: str, parse: Parser) -> dict[str, Any]:
    """A field's metadata: read from the variable `name` by `parse`; unset or blank, the
    field keeps its default."""
    return {_ENV: name, _PARSE: parse}


def _user_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("indexer"))


# -- the settings ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting of the indexer; see the README's settings table for what each means."""

    mongodb_uri: Secret | None = field(default=None, metadata=_env("MONGODB_URI", _mongodb_uri))
    mongodb_db: str = field(default="indexer", metadata=_env("MONGODB_DB", _text))
    data_dir: Path = field(default_factory=_user_data_dir, metadata=_env("INDEXER_DATA_DIR", _path))
    nextauth_secret: Secret | None = field(default=None, metadata=_env("NEXTAUTH_SECRET", _secret))
    web_app_url: str = field(
        default="http://localhost:3000", metadata=_env("WEB_APP_URL", _http_url)
    )
    port: int = field(default=4000, metadata=_env("PORT", _integer()))
    # Empty: the head on this machine at `port` (filled in by __post_init__).
    head_url: str = field(default="", metadata=_env("HEAD_URL", _http_url))
    redis_url: Secret | None = field(default=None, metadata=_env("REDIS_URL", _redis_url))
    ray_address: str | None = field(default=None, metadata=_env("RAY_ADDRESS", _text))
    ray_jobs_address: str | None = field(default=None, metadata=_env("RAY_JOBS_ADDRESS", _http_url))
    max_local_pages: int = field(default=500, metadata=_env("INDEXER_MAX_LOCAL_PAGES", _integer()))
    embed_model: str = field(default="all-MiniLM-L6-v2", metadata=_env("EMBED_MODEL", _text))
    admin_token: Secret | None = field(default=None, metadata=_env("ADMIN_TOKEN", _secret))
    publish_token: Secret | None = field(
        default=None, metadata=_env("INDEXER_PUBLISH_TOKEN", _secret)
    )
    max_rooms_per_socket: int = field(
        default=32, metadata=_env("INDEXER_MAX_ROOMS_PER_SOCKET", _integer())
    )
    # The bound on a published event's body (413 above it): fixed, not an operator's choice.
    max_event_bytes: int = 16 * 1024
    max_document_bytes: int = field(
        default=200 * 1024**2, metadata=_env("INDEXER_MAX_DOCUMENT_BYTES", _integer())
    )
    render_dpi: int = field(default=72, metadata=_env("INDEXER_RENDER_DPI", _integer(18)))
    embed_idle_s: int = field(default=600, metadata=_env("INDEXER_EMBED_IDLE_S", _integer(0)))
    embed_precision: str = field(
        default=EMBED_PRECISIONS[0],
        metadata=_env("INDEXER_EMBED_PRECISION", _choice(EMBED_PRECISIONS)),
    )
    max_pages: int = field(default=2000, metadata=_env("INDEXER_MAX_PAGES", _integer()))
    parser_timeout_s: int = field(
        default=120, metadata=_env("INDEXER_PARSER_TIMEOUT_S", _integer())
    )
    parser_memory_mb: int = field(
        default=2048, metadata=_env("INDEXER_PARSER_MEMORY_MB", _integer(16))
    )
    parser_recycle_documents: int = field(
        default=100, metadata=_env("INDEXER_PARSER_RECYCLE_DOCUMENTS", _integer())
    )
    parser_recycle_rss_mb: int = field(
        default=1024, metadata=_env("INDEXER_PARSER_RECYCLE_RSS_MB", _integer(16))
    )
    parser_idle_s: int = field(default=600, metadata=_env("INDEXER_PARSER_IDLE_S", _integer(0)))
    warm: bool = field(default=True, metadata=_env("INDEXER_WARM", _flag))

    def __post_init__(self) -> None:
        if not self.head_url:
            object.__setattr__(self, "head_url", f"http://127.0.0.1:{self.port}")

    def require_nextauth_secret(self) -> Secret:
        """Return NEXTAUTH_SECRET or fail with a one-line error naming it."""
        if self.nextauth_secret is None:
            raise SettingsError("NEXTAUTH_SECRET is required (the NextAuth secret of the web app)")
        return self.nextauth_secret

    def effective_publish_token(self) -> Secret:
        """The bearer token that authenticates runs publishing events to a head.

        INDEXER_PUBLISH_TOKEN when set; otherwise derived from NEXTAUTH_SECRET so a head and
        the runs it starts agree without extra configuration, and the secret itself is never
        sent over the wire.
        """
        if self.publish_token is not None:
            return self.publish_token
        secret = self.require_nextauth_secret().reveal().encode()
        digest = hmac.new(secret, b"indexer publish token v1", hashlib.sha256).hexdigest()
        return Secret(digest)

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Read and validate every setting; raise SettingsError naming the first bad one.

    A variable that is unset or blank leaves its setting at the default.
    """
    values: dict[str, Any] = {}
    for setting in fields(Settings):
        name = setting.metadata.get(_ENV)
        raw = environ.get(name, "").strip() if name else ""
        if raw:
            values[setting.name] = setting.metadata[_PARSE](name, raw)
    return Settings(**values)
