"""One typed settings object, read once from an environment mapping the caller passes in.

Nothing reads `os.environ` at import time: the CLI and the head's app factory call
`load_settings(os.environ)` once, tests pass a plain dict, and the driver hands the
resulting object to Ray actors as a constructor argument.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

from core.errors import SettingsError

DEFAULT_PORT = 4000
DEFAULT_DB_NAME = "indexer"
DEFAULT_WEB_APP_URL = "http://localhost:3000"
DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"
# The embed actors' arithmetic (`core.embedding.resolve_precision`); "auto" first: the default.
EMBED_PRECISIONS = ("auto", "float32", "bfloat16")


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


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting of the indexer; see the README's settings table."""

    mongodb_uri: Secret | None = None
    mongodb_db: str = DEFAULT_DB_NAME
    data_dir: Path = field(default_factory=lambda: Path(platformdirs.user_data_dir("indexer")))
    nextauth_secret: Secret | None = None
    web_app_url: str = DEFAULT_WEB_APP_URL
    port: int = DEFAULT_PORT
    head_url: str = f"http://127.0.0.1:{DEFAULT_PORT}"
    redis_url: Secret | None = None
    ray_address: str | None = None
    ray_jobs_address: str | None = None
    max_local_pages: int = 500
    embed_model: str = DEFAULT_EMBED_MODEL
    admin_token: Secret | None = None
    publish_token: Secret | None = None
    max_rooms_per_socket: int = 32
    max_event_bytes: int = 16 * 1024
    max_document_bytes: int = 200 * 1024 * 1024
    render_dpi: int = 72
    embed_idle_s: int = 600
    embed_precision: str = "auto"
    max_pages: int = 2000
    parser_timeout_s: int = 120
    parser_memory_mb: int = 2048
    parser_recycle_documents: int = 100
    parser_recycle_rss_mb: int = 1024
    parser_idle_s: int = 600
    warm: bool = True

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


def _secret(environ: Mapping[str, str], name: str) -> Secret | None:
    value = environ.get(name, "").strip()
    return Secret(value) if value else None


def _int(environ: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (the first when unset)."""
    value = environ.get(name, "").strip() or choices[0]
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be 1 or 0, got {raw!r}")


def _url(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name, "").strip() or default
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"{name} must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


def _optional_url(environ: Mapping[str, str], name: str) -> str | None:
    return _url(environ, name, "") if environ.get(name, "").strip() else None


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Read and validate every setting; raise SettingsError naming the first bad one."""
    port = _int(environ, "PORT", DEFAULT_PORT)
    data_dir = environ.get("INDEXER_DATA_DIR", "").strip()
    redis_url = _secret(environ, "REDIS_URL")
    if redis_url is not None and urlsplit(redis_url.reveal()).scheme not in ("redis", "rediss"):
        raise SettingsError("REDIS_URL must be a redis:// or rediss:// URL")
    mongodb_uri = _secret(environ, "MONGODB_URI")
    if mongodb_uri is not None and not mongodb_uri.reveal().startswith(
        ("mongodb://", "mongodb+srv://")
    ):
        raise SettingsError("MONGODB_URI must start with mongodb:// or mongodb+srv://")
    defaults = Settings()
    return Settings(
        mongodb_uri=mongodb_uri,
        mongodb_db=environ.get("MONGODB_DB", "").strip() or DEFAULT_DB_NAME,
        data_dir=Path(data_dir).expanduser() if data_dir else defaults.data_dir,
        nextauth_secret=_secret(environ, "NEXTAUTH_SECRET"),
        web_app_url=_url(environ, "WEB_APP_URL", DEFAULT_WEB_APP_URL),
        port=port,
        head_url=_url(environ, "HEAD_URL", f"http://127.0.0.1:{port}"),
        redis_url=redis_url,
        ray_address=environ.get("RAY_ADDRESS", "").strip() or None,
        ray_jobs_address=(
            _url(environ, "RAY_JOBS_ADDRESS", "http://x")
            if environ.get("RAY_JOBS_ADDRESS")
            else None
        ),
        max_local_pages=_int(environ, "INDEXER_MAX_LOCAL_PAGES", 500),
        embed_model=environ.get("EMBED_MODEL", "").strip() or DEFAULT_EMBED_MODEL,
        admin_token=_secret(environ, "ADMIN_TOKEN"),
        publish_token=_secret(environ, "INDEXER_PUBLISH_TOKEN"),
        max_rooms_per_socket=_int(environ, "INDEXER_MAX_ROOMS_PER_SOCKET", 32),
        max_document_bytes=_int(environ, "INDEXER_MAX_DOCUMENT_BYTES", 200 * 1024 * 1024),
        render_dpi=_int(environ, "INDEXER_RENDER_DPI", 72, minimum=18),
        embed_idle_s=_int(environ, "INDEXER_EMBED_IDLE_S", 600, minimum=0),
        embed_precision=_choice(environ, "INDEXER_EMBED_PRECISION", EMBED_PRECISIONS),
        max_pages=_int(environ, "INDEXER_MAX_PAGES", 2000),
        parser_timeout_s=_int(environ, "INDEXER_PARSER_TIMEOUT_S", 120),
        parser_memory_mb=_int(environ, "INDEXER_PARSER_MEMORY_MB", 2048, minimum=16),
        parser_recycle_documents=_int(environ, "INDEXER_PARSER_RECYCLE_DOCUMENTS", 100),
        parser_recycle_rss_mb=_int(environ, "INDEXER_PARSER_RECYCLE_RSS_MB", 1024, minimum=16),
        parser_idle_s=_int(environ, "INDEXER_PARSER_IDLE_S", 600, minimum=0),
        warm=_bool(environ, "INDEXER_WARM", True),
    )
