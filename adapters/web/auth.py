"""Admin login for the web pages: one configured password, sessions in signed cookies.

The session cookie holds ``{"admin": true, "sid": <id>, "csrf": <token>}`` signed with
itsdangerous (``SUPPORTBOT_SESSION_SECRET``, or a random secret per process: sessions then end
when the server restarts). Signing out revokes the session on the server (its id is kept in the
``revoked_sessions`` table until the cookie would have expired), so a copied cookie stops
working too. The password is compared in constant time and must be at least 12 characters
(``ConfigError`` when the server starts otherwise). Requests that change something on the
admin side must also send the session's CSRF token in ``X-CSRF-Token``. With no
``SUPPORTBOT_ADMIN_PASSWORD`` there are no admin pages at all. Cookies are ``Secure`` as
``Settings.secure_cookies`` says (``SUPPORTBOT_COOKIE_SECURE``, or an https
``SUPPORTBOT_PUBLIC_URL``), else when the request itself came over https.

Visitors of the chat page get a signed random visitor id (``sb_visitor``): it is the user a
vote is recorded for, so one browser has one vote per answer.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from fastapi import HTTPException, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from adapters.db import Database, SqlStore
from adapters.settings import Settings
from bot.errors import ConfigError

log = logging.getLogger(__name__)

SESSION_COOKIE = "sb_session"
VISITOR_COOKIE = "sb_visitor"
SESSION_MAX_AGE_S = 12 * 3600
VISITOR_MAX_AGE_S = 365 * 24 * 3600
MIN_ADMIN_PASSWORD = 12


@dataclass(frozen=True)
class Session:
    """A signed-in admin's session."""

    csrf: str
    sid: str = ""


def check_admin_password(settings: Settings) -> None:
    """ConfigError when an admin password is set but shorter than ``MIN_ADMIN_PASSWORD``
    (never naming the password); an empty or missing one just means no admin pages."""
    password = settings.admin_password.get_secret_value() if settings.admin_password else ""
    if 0 < len(password) < MIN_ADMIN_PASSWORD:
        raise ConfigError(
            f"SUPPORTBOT_ADMIN_PASSWORD is too short: use at least {MIN_ADMIN_PASSWORD} characters "
            "(or leave it unset to switch the admin pages off)"
        )


class SessionRevocations:
    """Session ids ended by signing out, in the database (shared by every web process, kept
    across restarts) until the cookie would have expired anyway. The engine is made on first use.

    When the database cannot be asked, a session counts as revoked (fail closed).
    """

    def __init__(self, db: str | Database) -> None:
        self._store = SqlStore(db)  # the engine is made (and migrated) on first use
        self._local: set[str] = set()  # revoked by this process: no database round trip needed

    def _engine(self) -> sa.Engine:
        return self._store.engine

    def revoke(self, sid: str) -> None:
        """End session ``sid`` everywhere (idempotent)."""
        from adapters.db import revoked_sessions

        self._local.add(sid)
        now = datetime.now(UTC)
        try:
            with self._engine().begin() as conn:
                conn.execute(sa.delete(revoked_sessions).where(revoked_sessions.c.expires_at < now))
                exists = conn.execute(
                    sa.select(revoked_sessions.c.session_id).where(revoked_sessions.c.session_id == sid)
                ).first()
                if exists is None:
                    conn.execute(
                        sa.insert(revoked_sessions).values(
                            session_id=sid, expires_at=now + timedelta(seconds=SESSION_MAX_AGE_S)
                        )
                    )
        except Exception as exc:  # noqa: BLE001 - the local record still ends it in this process
            log.warning("could not record the sign-out in the database (%s)", type(exc).__name__)

    def revoked(self, sid: str) -> bool:
        """Whether ``sid`` was signed out (True too when the database can't say)."""
        from adapters.db import revoked_sessions

        if sid in self._local:
            return True
        try:
            with self._engine().connect() as conn:
                row = conn.execute(
                    sa.select(revoked_sessions.c.session_id).where(revoked_sessions.c.session_id == sid)
                ).first()
        except Exception as exc:  # noqa: BLE001 - fail closed
            log.warning("could not check the session against sign-outs (%s)", type(exc).__name__)
            return True
        return row is not None


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

    def __init__(self, settings: Settings, revocations: SessionRevocations | None = None) -> None:
        check_admin_password(settings)
        password = settings.admin_password.get_secret_value() if settings.admin_password else ""
        self._secure = settings.secure_cookies
        self.revocations = revocations or SessionRevocations(settings.sqlalchemy_url)
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
            or not isinstance(data.get("sid"), str)
        ):
            return None
        if self.revocations.revoked(data["sid"]):
            return None
        return Session(csrf=data["csrf"], sid=data["sid"])

    def start_session(self, request: Request, response: Response) -> Session:
        """Sign the admin in: set a fresh session cookie on ``response``."""
        session = Session(csrf=secrets.token_urlsafe(24), sid=secrets.token_urlsafe(18))
        _set_cookie(
            request,
            response,
            SESSION_COOKIE,
            self._signer.dumps({"admin": True, "sid": session.sid, "csrf": session.csrf}),
            SESSION_MAX_AGE_S,
            self._secure,
        )
        return session

    def end_session(self, request: Request, response: Response) -> None:
        """Sign out: revoke the request's session on the server and drop the cookie."""
        session = self.session(request)
        if session is not None:
            self.revocations.revoke(session.sid)
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
        _set_cookie(
            request, response, VISITOR_COOKIE, self._visitor_signer.dumps(visitor), VISITOR_MAX_AGE_S, self._secure
        )
        return visitor


def _set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int, secure: bool | None
) -> None:
    """A signed cookie for the whole site: not readable by scripts, not sent with requests from
    other sites except top-level links (SameSite=Lax), Secure as configured (``secure``; when
    the settings don't say, over HTTPS as this server sees the request)."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=secure if secure is not None else request.url.scheme == "https",
        path="/",
    )
