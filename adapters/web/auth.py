"""Admin login for the web pages: one configured password, sessions in signed cookies.

The session cookie holds ``{"admin": true, "csrf": <token>}`` signed with itsdangerous
(``SUPPORTBOT_SESSION_SECRET``, or a random secret per process: sessions then end when the
server restarts). The password is compared in constant time. Requests that change something
on the admin side must also send the session's CSRF token in ``X-CSRF-Token``. With no
``SUPPORTBOT_ADMIN_PASSWORD`` there are no admin pages at all.

Visitors of the chat page get a signed random visitor id (``sb_visitor``): it is the user a
vote is recorded for, so one browser has one vote per answer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from fastapi import HTTPException, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from adapters.settings import Settings

SESSION_COOKIE = "sb_session"
VISITOR_COOKIE = "sb_visitor"
SESSION_MAX_AGE_S = 12 * 3600
VISITOR_MAX_AGE_S = 365 * 24 * 3600


@dataclass(frozen=True)
class Session:
    """A signed-in admin's session."""

    csrf: str


class LoginThrottle:
    """At most ``attempts`` failed logins per client address in ``window_s`` seconds."""

    def __init__(self, attempts: int = 10, window_s: float = 300.0) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, client: str) -> bool:
        """Whether ``client`` has used up its failed attempts."""
        now = time.monotonic()
        with self._lock:
            recent = self._failures.get(client)
            while recent and now - recent[0] > self.window_s:
                recent.popleft()
            return bool(recent) and len(recent) >= self.attempts  # type: ignore[arg-type]

    def failed(self, client: str) -> None:
        """Record a failed attempt."""
        with self._lock:
            if len(self._failures) > 10_000:  # bound the memory an attacker can make us use
                self._failures.clear()
            self._failures.setdefault(client, deque()).append(time.monotonic())


class WebAuth:
    """Password check, signed session and visitor cookies, and the guards used by the routes."""

    def __init__(self, settings: Settings) -> None:
        password = settings.admin_password.get_secret_value() if settings.admin_password else ""
        self._password_digest = hashlib.sha256(password.encode()).digest() if password else None
        secret = settings.session_secret.get_secret_value() if settings.session_secret else ""
        self.persistent_secret = bool(secret)
        key = secret or secrets.token_urlsafe(32)
        self._signer = URLSafeTimedSerializer(key, salt="supportbot-session")
        self._visitor_signer = URLSafeTimedSerializer(key, salt="supportbot-visitor")
        self.throttle = LoginThrottle()

    @property
    def enabled(self) -> bool:
        """Whether admin pages exist (an admin password is configured)."""
        return self._password_digest is not None

    def check_password(self, candidate: str) -> bool:
        """Constant-time comparison with the configured password (always False when none is set)."""
        digest = hashlib.sha256(candidate.encode()).digest()
        expected = self._password_digest or secrets.token_bytes(32)
        return hmac.compare_digest(digest, expected) and self._password_digest is not None

    # --- sessions --------------------------------------------------------------------------------
    def session(self, request: Request) -> Session | None:
        """The admin session of this request, if it carries a valid one."""
        if not self.enabled:
            return None
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        try:
            data = self._signer.loads(raw, max_age=SESSION_MAX_AGE_S)
        except BadSignature:  # also covers SignatureExpired
            return None
        if (
            not isinstance(data, dict)
            or data.get("admin") is not True
            or not isinstance(data.get("csrf"), str)
        ):
            return None
        return Session(csrf=data["csrf"])

    def start_session(self, request: Request, response: Response) -> Session:
        """Sign the admin in: set a fresh session cookie on ``response``."""
        session = Session(csrf=secrets.token_urlsafe(24))
        _set_cookie(
            request,
            response,
            SESSION_COOKIE,
            self._signer.dumps({"admin": True, "csrf": session.csrf}),
            SESSION_MAX_AGE_S,
        )
        return session

    @staticmethod
    def end_session(response: Response) -> None:
        """Sign out: drop the session cookie."""
        response.delete_cookie(SESSION_COOKIE, path="/")

    # --- guards ----------------------------------------------------------------------------------
    def require_admin(self, request: Request) -> Session:
        """The admin session, or 404 when there are no admin pages, 401 when not signed in."""
        if not self.enabled:
            raise HTTPException(404, "no admin pages: SUPPORTBOT_ADMIN_PASSWORD is not set")
        session = self.session(request)
        if session is None:
            raise HTTPException(401, "sign in first")
        return session

    def require_admin_csrf(self, request: Request) -> Session:
        """``require_admin`` plus the session's CSRF token in ``X-CSRF-Token`` (for changes)."""
        session = self.require_admin(request)
        sent = request.headers.get("x-csrf-token", "")
        if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise HTTPException(403, "missing or wrong CSRF token")
        return session

    # --- visitors --------------------------------------------------------------------------------
    def visitor(self, request: Request) -> str | None:
        """The visitor id from the signed visitor cookie, if valid."""
        raw = request.cookies.get(VISITOR_COOKIE)
        if not raw:
            return None
        try:
            value = self._visitor_signer.loads(raw, max_age=VISITOR_MAX_AGE_S)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None

    def ensure_visitor(self, request: Request, response: Response) -> str:
        """The visitor id, setting a new signed visitor cookie on ``response`` when there is none."""
        existing = self.visitor(request)
        if existing:
            return existing
        visitor = secrets.token_hex(12)
        _set_cookie(request, response, VISITOR_COOKIE, self._visitor_signer.dumps(visitor), VISITOR_MAX_AGE_S)
        return visitor


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    """A signed cookie for the whole site: not readable by scripts, not sent with
    requests from other sites except top-level links (SameSite=Lax), Secure over HTTPS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
