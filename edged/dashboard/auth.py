"""The dashboard's door: read-only (GET and HEAD only), and, when a token or a user is configured, nothing without
them.

A token is accepted as `Authorization: Bearer <token>`, as the cookie this sets, or as `?token=<token>` (a browser
opens the dashboard once with it: the answer sets a cookie, so the page's own requests and its EventSource, which
cannot send headers, carry it). The cookie lasts EDGED_DASHBOARD__COOKIE_DAYS and every request that carries it
renews it, so a wall screen that shows the dashboard stays logged in across browser restarts; without a Max-Age it
would be a session cookie, gone with the browser. The cookie holds an HMAC of the token, not the token (a cookie
jar or a proxy log that leaks it gives no `Authorization` header and no `?token=` link; changing the token ends
it); it is HttpOnly, SameSite=Strict, and Secure when the page was asked for over https (by the client, or by a
proxy that says so in X-Forwarded-Proto or Forwarded). HTTP basic auth is the browser's own login prompt. Secrets
are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import html
from http.cookies import SimpleCookie
from urllib.parse import quote

from starlette.datastructures import QueryParams
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edged.settings import DashboardSettings

COOKIE = "edged_dashboard_token"


# The 401 page for browsers: fixed text (nothing from the request in it), saying how to log in.
_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><title>log in · edged dashboard</title></head>
<body style="font: 16px/1.5 system-ui, sans-serif; max-width: 40em; margin: 2em auto; padding: 0 1em">
<h1>edged dashboard: log in</h1>
{refused}<p>This dashboard needs credentials. Log in with</p>
<ul>{ways}</ul>
<p>Ask whoever runs the dashboard for them (<code>edged dashboard --help</code> tells how they are set).</p>
</body></html>
"""


# Said first when the request carried ?token= and it was not the token (the token itself is never repeated: it may
# be a near miss of the real one, and the page may end up in a screenshot or a proxy's cache).
REFUSED_LINK = ("the token in the link (?token=) was refused: it is not this dashboard's token (EDGED_DASHBOARD__TOKEN); "
                "check the link, or ask for the current one")


def login_ways(token: bool, user: bool) -> list[str]:
    """How a client logs in, in words, for what is configured."""
    ways = []
    if token:
        ways += ["a browser: open /?token=<the token> once (EDGED_DASHBOARD__TOKEN); a cookie keeps you logged in",
                 "a program (Prometheus, curl): the header Authorization: Bearer <the token>"]
    if user:
        ways += ["the user name and password (EDGED_DASHBOARD__USERNAME and EDGED_DASHBOARD__PASSWORD): the "
                 "browser asks for them, a program sends HTTP basic auth"]
    return ways


def cookie_value(token: bytes) -> bytes:
    """What the cookie holds for `token`: an HMAC-SHA256 keyed with it, in hex (the same across restarts)."""
    return hmac.new(token, b"edged dashboard cookie v1", "sha256").hexdigest().encode()


def set_cookie(value: bytes, max_age: int, secure: bool) -> bytes:
    """The Set-Cookie header's value for the login cookie."""
    cookie: SimpleCookie = SimpleCookie()
    cookie[COOKIE] = value.decode()
    cookie[COOKIE].update({"max-age": max_age, "path": "/", "httponly": True, "samesite": "strict", "secure": secure})
    return cookie.output(header="").strip().encode("latin-1")


def over_https(scope: Scope, headers: dict[str, bytes]) -> bool:
    """Whether the client asked over https: directly, or through a proxy that says so. A client that lies gets only
    a cookie its plain http requests do not send back."""
    if scope.get("scheme") == "https":
        return True
    forwarded_proto = headers.get("x-forwarded-proto", b"").decode("latin-1").split(",")[0].strip().lower()
    forwarded = headers.get("forwarded", b"").decode("latin-1").split(",")[0].lower().replace(" ", "")
    return forwarded_proto == "https" or "proto=https" in forwarded.split(";")


class Guard:
    """ASGI middleware: 405 for anything but GET and HEAD, 401 without the configured credentials."""

    def __init__(self, app: ASGIApp, settings: DashboardSettings) -> None:
        self.app = app
        self.token = settings.token.get_secret_value().encode() if settings.token else None
        self.cookie = cookie_value(self.token) if self.token else None
        self.max_age = round(settings.cookie_days * 86_400)
        self.user = None
        if settings.username is not None and settings.password is not None:
            self.user = (settings.username.encode(), settings.password.get_secret_value().encode())
        ways = login_ways(self.token is not None, self.user is not None)
        self.how_text = "unauthorised: log in with " + "; or ".join(ways) + "\n"
        items = "".join(f"<li>{html.escape(way)}</li>" for way in ways)
        self.how_html = _LOGIN_PAGE.format(refused="", ways=items)
        self.refused_text = f"unauthorised: {REFUSED_LINK}. Log in with " + "; or ".join(ways) + "\n"
        self.refused_html = _LOGIN_PAGE.format(refused=f'<p id="refused"><strong>{html.escape(REFUSED_LINK)}.</strong></p>\n',
                                               ways=items)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response = self._refusal(scope)
        if response is not None:
            await response(scope, receive, send)
        elif self.cookie is not None and self._has_cookie(scope):
            renewed = set_cookie(self.cookie, self.max_age, over_https(scope, headers_of(scope)))

            async def renewing(message: Message) -> None:  # the cookie's Max-Age starts again
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", renewed)]}
                await send(message)

            await self.app(scope, receive, renewing)
        else:
            await self.app(scope, receive, send)

    def _has_cookie(self, scope: Scope) -> bool:
        cookies = SimpleCookie(headers_of(scope).get("cookie", b"").decode("latin-1"))
        return COOKIE in cookies and hmac.compare_digest(cookies[COOKIE].value.encode(), self.cookie)

    def _refusal(self, scope: Scope) -> Response | None:
        if scope["method"] not in ("GET", "HEAD"):
            return PlainTextResponse("read-only: the dashboard sends nothing to kiosks\n", 405, {"Allow": "GET, HEAD"})
        if self.token is None and self.user is None:
            return None
        headers = headers_of(scope)
        scheme, _, credentials = headers.get("authorization", b"").decode("latin-1").partition(" ")
        query = QueryParams(scope.get("query_string", b"").decode("latin-1"))
        if self.token is not None:
            if scheme.lower() == "bearer" and hmac.compare_digest(credentials.encode(), self.token):
                return None
            if self._has_cookie(scope):
                return None
            link = query.get("token")
            if link is not None and hmac.compare_digest(link.encode(), self.token):
                # Into a cookie, and the token out of the address bar (and the browser's history).
                rest = str(QueryParams([(k, v) for k, v in query.multi_items() if k != "token"]))
                response = RedirectResponse(quote(scope["path"]) + (f"?{rest}" if rest else ""), 303)
                response.raw_headers.append((b"set-cookie", set_cookie(self.cookie, self.max_age,
                                                                       over_https(scope, headers))))
                return response
        if self.user is not None and scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(credentials, validate=True).partition(b":")
            except (binascii.Error, ValueError):
                user, password = b"", b""
            # Both compared, always: how long the check takes says nothing about which one was wrong.
            if hmac.compare_digest(user, self.user[0]) & hmac.compare_digest(password, self.user[1]):
                return None
        challenge = 'Basic realm="edged dashboard", charset="UTF-8"' if self.user else 'Bearer realm="edged dashboard"'
        headers = {"WWW-Authenticate": challenge, "Cache-Control": "no-store"}
        refused = self.token is not None and "token" in query
        if b"text/html" in headers_of(scope).get("accept", b""):  # a browser
            return HTMLResponse(self.refused_html if refused else self.how_html, 401, headers)
        return PlainTextResponse(self.refused_text if refused else self.how_text, 401, headers)


def headers_of(scope: Scope) -> dict[str, bytes]:
    return {k.decode("latin-1").lower(): v for k, v in scope["headers"]}
