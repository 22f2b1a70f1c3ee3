"""Who may use the service: an optional access token, and where it may listen without one.

With a token every path but /healthz needs it, as ``Authorization: Bearer TOKEN`` (API clients)
or as the cookie that opening ``/?token=TOKEN`` sets (a browser: the page's own requests and
images then carry it). Tokens are compared as SHA-256 digests with ``hmac.compare_digest``, in
time that depends on neither the token nor its length. Without a token the service listens on
loopback only, unless told ``--allow-public``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from matchrcnn.utils.errors import UsageError

TOKEN_ENV = "MATCHRCNN_SERVE_TOKEN"
COOKIE = "matchrcnn_token"
OPEN_PATHS = frozenset({"/healthz"})
MIN_TOKEN_LENGTH = 16
TOKEN_PATTERN = re.compile(rf"[A-Za-z0-9._~-]{{{MIN_TOKEN_LENGTH},}}")


class AccessError(UsageError):
    """A setting that would expose the service; the message says what to do instead."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or "localhost") is reachable from this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None, allow_public: bool) -> None:
    """Refuse to listen beyond loopback without a token, unless ``allow_public``."""
    if token is not None and not TOKEN_PATTERN.fullmatch(token):
        raise AccessError(
            f"the access token must be at least {MIN_TOKEN_LENGTH} characters of A-Z, a-z, 0-9 "
            f"and . _ ~ - (it travels in a URL and a cookie unescaped); make one with: python -c "
            f"'import secrets; print(secrets.token_urlsafe(32))'")
    if token is None and not allow_public and not is_loopback(host):
        raise AccessError(
            f"refusing to listen on {host} without an access token: anyone who can reach it "
            f"could use the service. Give --token (or set ${TOKEN_ENV}), or --allow-public to "
            f"serve it openly, or listen on 127.0.0.1")


def same_token(given: str, token: str) -> bool:
    """Constant-time comparison (of digests, so the length leaks nothing either)."""
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                               hashlib.sha256(token.encode()).digest())


def presented_token(scope: Scope) -> str | None:
    """The token a request carries: bearer header first, then the page's cookie."""
    headers = Headers(scope=scope)
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


class TokenMiddleware:
    """Every request but OPEN_PATHS needs the token; ``/?token=TOKEN`` (right) sets the
    cookie and redirects to ``/``, so that the token leaves the address bar."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        if scope["path"] == "/":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            if "token" in query:
                if same_token(query["token"][0], self.token):
                    return await _redirect_with_cookie(send, self.token)
                return await _refuse(send)
        given = presented_token(scope)
        if given is None or not same_token(given, self.token):
            return await _refuse(send)
        return await self.app(scope, receive, send)


async def _redirect_with_cookie(send: Send, token: str) -> None:
    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", b"/"), (b"set-cookie", cookie.encode()),
                            (b"content-length", b"0"), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": b""})


async def _refuse(send: Send) -> None:
    body = json.dumps({"detail": "this service needs its access token: send "
                                 "'Authorization: Bearer TOKEN', or open /?token=TOKEN in a "
                                 "browser"}).encode()
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b'Bearer realm="matchrcnn"')]})
    await send({"type": "http.response.body", "body": body})
