"""Refuses state-changing requests a browser sends on another site's behalf (CSRF).

A browser attaches the session cookie to every request to the head, a form posted from
another site included. So every request that may change state (any method but GET, HEAD
and OPTIONS) must come from the web app (WEB_APP_URL) or the head's own pages, and carry
JSON or no body at all:

- `Origin`, when present, must be one of those two origins (403 otherwise). Browsers send
  it with every POST, same-origin ones included.
- Without `Origin`, `Sec-Fetch-Site` (sent by browsers since 2020) must be `same-origin`
  when present: it cannot tell the web app from another site of the same domain.
- Neither header: not a browser (curl, the CLI, runs publishing events), which
  authenticate with bearer tokens; a cookie alone does not make such a request cross-site.
- A body must be `application/json` (415 otherwise): a cross-site form can only send
  form-encoded or plain text bodies without a CORS preflight, and the preflight admits the
  web app only. A request without a body needs no Content-Type (`curl -X POST`).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CROSS_SITE_REFUSED = "Cross-site request refused"
JSON_REQUIRED = "Content-Type must be application/json"


def own_origin(scheme: str, host: str) -> str:
    """The origin a request addressed to `host` was sent to: the head's own pages' origin."""
    return f"{'https' if scheme == 'https' else 'http'}://{host}"


class CrossSiteGuardMiddleware:
    """ASGI middleware of the REST app; see the module's docstring for the rule."""

    def __init__(self, app: ASGIApp, *, web_app_url: str) -> None:
        self.app = app
        self._web_app_url = web_app_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        own = own_origin(scope["scheme"], headers.get("host", ""))
        if not _from_allowed_site(headers, (self._web_app_url, own)):
            refusal = JSONResponse({"detail": CROSS_SITE_REFUSED}, status_code=403)
        elif not _json_or_no_body(headers):
            refusal = JSONResponse({"detail": JSON_REQUIRED}, status_code=415)
        else:
            await self.app(scope, receive, send)
            return
        await refusal(scope, receive, send)


def _from_allowed_site(headers: Headers, allowed: tuple[str, ...]) -> bool:
    origins = headers.getlist("origin")
    if origins:
        return len(origins) == 1 and origins[0] in allowed
    fetch_site = headers.get("sec-fetch-site")
    return fetch_site is None or fetch_site == "same-origin"


def _json_or_no_body(headers: Headers) -> bool:
    content_type = headers.get("content-type")
    if content_type is None:
        has_body = "transfer-encoding" in headers or headers.get("content-length", "0") != "0"
        return not has_body
    return content_type.split(";", 1)[0].strip().lower() == "application/json"
